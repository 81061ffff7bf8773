"""A real Airflow 3.3 on loopback, for the e2e tests, the chaos soak and ``make cluster``.

``Cluster`` (a context manager) starts, from a throwaway run directory, the Oxen API emulator
and Airflow's api-server, scheduler, dag-processor and triggerer(s): with the LocalExecutor on
SQLite (the e2e tests), or production-shaped with the CeleryExecutor, Celery workers, Redis as
the broker and PostgreSQL as the metadata database (the soak, ``make cluster``).

Every process runs in its own session. Airflow's task processes leave their parent's process
*group* but not its *session*, so stopping a component signals every process of its session
(:func:`session_pids`). On exit, also after an error or Ctrl-C, everything started is stopped
(SIGTERM, SIGKILL after a grace period) and what would still be left is recorded in ``strays``.

A :class:`Watcher` thread samples task instances and triggers a few times a second, so a
test can assert a task *went through* ``deferred`` long after it left that state.

The CeleryExecutor cluster installs ``postgresql`` and ``redis-server`` with apt-get first when
they are absent (:func:`ensure_prerequisites`). PostgreSQL is a cluster of its own on a free
port, run as ``nobody`` when started as root (it refuses root).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from tests.fixtures import API_KEY, connection_json

REPO = Path(__file__).resolve().parents[1]
# The services, stopped after Airflow, with their first signal (SIGINT: PostgreSQL's "fast" shutdown).
SERVICES = {"emulator": signal.SIGTERM, "redis": signal.SIGTERM, "postgres": signal.SIGINT}
STARTUP_TIMEOUT = 420.0  # seconds, for each step of the start-up
# oxen_default's retries on a CeleryExecutor cluster, under load or chaos (the LocalExecutor one of
# the e2e tests keeps tests.fixtures' fast ones).
PATIENT_RETRIES = {"max_retries": 6, "backoff_base": 0.2, "backoff_max": 2.0}
T = TypeVar("T")
AIRFLOW = [sys.executable, "-m", "airflow"]  # this interpreter's Airflow CLI


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- prerequisites ------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``postgres``."""
    found = [
        (float(initdb.parents[1].name), initdb.parent)
        for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if initdb.parents[1].name.replace(".", "").isdigit() and (initdb.parent / "postgres").exists()
    ]
    return max(found)[1] if found else None


def ensure_prerequisites() -> None:
    """Install PostgreSQL and Redis with apt-get when they are absent (their services are not started)."""
    packages = [
        name
        for name, found in (
            ("postgresql", postgres_bin_dir()),
            ("redis-server", shutil.which("redis-server")),
        )
        if not found
    ]
    if packages:
        if os.geteuid() != 0:
            raise RuntimeError(f"missing {', '.join(packages)}: sudo apt-get install {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        policy = Path("/usr/sbin/policy-rc.d")
        added_policy = not policy.exists()
        if added_policy:  # Debian's invoke-rc.d asks this script whether a package may start its service: no.
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            log(f"installing {' '.join(packages)} with apt-get")
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, check=True
            )
        finally:
            if added_policy:
                policy.unlink(missing_ok=True)


# -- processes and sessions ---------------------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (the leader included, zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != b"Z":
            pids.append(int(entry))
    return pids


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


@dataclass
class Process:
    """One started process and the session it leads."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    job_id: int | None = None  # a triggerer's job row

    @property
    def sid(self) -> int:
        return self.popen.pid  # started with start_new_session=True

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def stop_session(process: Process, first: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """``first`` to the session leader, then SIGKILL to whatever of its session is left after ``grace``."""
    if process.alive():
        _signal_all([process.popen.pid], first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.popen.poll()  # reap the leader, or it lingers as a zombie
        if not process.pids():
            break
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while process.pids() and time.monotonic() < deadline:
        _signal_all(process.pids(), signal.SIGKILL)
        time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=10)


# -- watching the metadata database ---------------------------------------------------------------------


class Watcher:
    """Samples task instances and triggers five times a second in a thread.

    ``ti_history[(dag_id, run_id, task_id, map_index)]`` is the ordered list of distinct states
    seen, ``ti_triggers[key]`` every trigger a task instance was linked to. ``triggers[id]``
    holds a trigger's ``classpath`` and ``kwargs`` (as stored: encrypted), ``last_seen``
    (epoch seconds), its ``triggerer_id`` then and ``held_by``: each triggerer job
    that held it, with when it was first seen doing so.
    ``hooks`` are called after every sample (the soak samples memory and Redis there).
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.ti_history: dict[tuple[str, str, str, int], list[str | None]] = {}
        self.ti_triggers: dict[tuple[str, str, str, int], set[int]] = {}
        self.triggers: dict[int, dict[str, Any]] = {}
        self.peak_triggers = 0  # trigger rows at once (waiting tasks)
        self.peak_held = 0  # triggers held by one triggerer at once
        self.hooks: list[Callable[[], None]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for step in (self.sample, *self.hooks):
                try:
                    step()
                except Exception as exc:  # a locked SQLite file, a vanished process: next tick
                    self.errors = [*self.errors[-19:], f"{getattr(step, '__name__', step)}: {exc!r}"]
            self._stop.wait(0.2)

    def sample(self) -> None:
        now = time.time()
        query = self.cluster.query
        tis = query("SELECT dag_id, run_id, task_id, map_index, state, trigger_id FROM task_instance")
        triggers = query("SELECT id, classpath, kwargs, triggerer_id FROM trigger")
        with self.lock:
            for dag_id, run_id, task_id, map_index, state, trigger_id in tis:
                key = (dag_id, run_id, task_id, int(map_index))
                history = self.ti_history.setdefault(key, [])
                if not history or history[-1] != state:
                    history.append(state)
                if trigger_id is not None:
                    self.ti_triggers.setdefault(key, set()).add(int(trigger_id))
            for trigger_id, classpath, kwargs, triggerer_id in triggers:
                entry = self.triggers.setdefault(
                    int(trigger_id),
                    {"classpath": classpath, "kwargs": kwargs, "held_by": {}},
                )
                entry.update(last_seen=now, triggerer_id=triggerer_id)
                if triggerer_id is not None:
                    entry["held_by"].setdefault(int(triggerer_id), now)
            held = Counter(row.triggerer_id for row in triggers if row.triggerer_id is not None)
            self.peak_triggers = max(self.peak_triggers, len(triggers))
            self.peak_held = max(self.peak_held, *held.values(), 0)

    def history(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[str | None]:
        with self.lock:
            return list(self.ti_history.get((dag_id, run_id, task_id, map_index), []))

    def trigger_ids(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> set[int]:
        """The triggers of a task instance (of every mapped instance with ``map_index=None``)."""
        with self.lock:
            return {
                trigger_id
                for (d, r, t, m), ids in self.ti_triggers.items()
                if (d, r, t) == (dag_id, run_id, task_id) and map_index in (None, m)
                for trigger_id in ids
            }

    def trigger(self, trigger_id: int) -> dict[str, Any]:
        with self.lock:
            entry = self.triggers.get(trigger_id, {"held_by": {}})
            return {**entry, "held_by": dict(entry["held_by"])}


# -- the cluster ----------------------------------------------------------------------------------------


class Cluster:
    """Context manager: the emulator and a real Airflow on 127.0.0.1 in a throwaway run directory.

    :param executor: ``LocalExecutor`` (on SQLite) or ``CeleryExecutor`` (on PostgreSQL, with
        Redis and ``workers`` Celery workers of ``worker_concurrency`` task slots each).
    :param dags: DAG files, or folders copied with their subfolders, for the dag-processor.
    :param env: more environment for every Airflow component (the DAGs read it too).
    :param api_key: the Oxen API key the emulator accepts and ``oxen_default`` carries.
    :param render_seconds: the emulator's render time per generation (``emulator_args``: more options).
    :param expect_dags: DAG ids that must be parsed before ``__enter__`` returns.
    :param keep: keep the run directory (logs, database); default: when ``OXEN_CLUSTER_KEEP`` is set.
    """

    def __init__(
        self,
        *,
        executor: str = "LocalExecutor",
        dags: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        api_key: str = API_KEY,
        render_seconds: float = 3.0,
        emulator_args: Iterable[str] = (),
        workers: int = 2,
        worker_concurrency: int = 8,
        triggerers: int = 1,
        expect_dags: Iterable[str] = (),
        keep: bool | None = None,
    ) -> None:
        self.executor = executor
        self.celery = executor == "CeleryExecutor"
        self.dags = [Path(p).resolve() for p in dags]
        self.env_extra = dict(env or {})
        self.api_key = api_key
        self.emulator_args = ["--render-seconds", str(render_seconds), *emulator_args]
        self.worker_count = workers if self.celery else 0
        self.worker_concurrency = worker_concurrency
        self.triggerer_count = triggerers
        self.expect_dags = list(expect_dags)
        self.keep = bool(os.environ.get("OXEN_CLUSTER_KEEP")) if keep is None else keep
        self.run_dir = Path(tempfile.mkdtemp(prefix="oxen-cluster-"))
        self.home = self.run_dir / "airflow"
        self.pg_dir: Path | None = None
        self.processes: dict[str, Process] = {}
        self.retired: list[Process] = []  # killed or stopped while it ran
        self.strays: list[int] = []  # processes that outlived their sessions' stop
        self.env: dict[str, str] = {}
        self.api_url = self.emulator_url = ""
        self.pg_port = self.redis_port = 0
        self.pg_password = self.redis_password = ""
        self.fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self.watcher = Watcher(self)
        self._counters: Counter[str] = Counter()
        self._http: httpx.Client | None = None
        self._token: str | None = None
        self._db: sa.engine.Engine | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.print_log_tails()
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is not None and exc_info[0] is not KeyboardInterrupt:
            self.print_log_tails()
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        if self.celery:
            ensure_prerequisites()
        self.home.mkdir()
        (self.run_dir / "dags").mkdir()
        for source in self.dags:
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(source, self.run_dir / "dags", ignore=ignore, dirs_exist_ok=True)
            else:
                shutil.copy(source, self.run_dir / "dags" / source.name)
        log(f"run directory {self.run_dir}")
        if self.celery:
            self._start_postgres()
            self._start_redis()
        self._start_emulator()
        self.env = self._airflow_env()
        migrate = subprocess.run(
            [*AIRFLOW, "db", "migrate"],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
            start_new_session=True,
        )
        (self.run_dir / "db-migrate.log").write_text(migrate.stdout)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-4000:]}")
        if self.celery:
            self._db = sa.create_engine(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], pool_pre_ping=True)
        else:  # read-only: the tests only look
            url = f"sqlite:///file:{self.home}/airflow.db?mode=ro&uri=true"
            self._db = sa.create_engine(url, connect_args={"timeout": 5})
        self.watcher.start()
        self._http = httpx.Client(base_url=self.api_url, timeout=30)
        for kind in ("api-server", "scheduler", "dag-processor"):
            self.spawn(kind)
        for _ in range(self.worker_count):
            self.spawn("worker")
        for _ in range(self.triggerer_count):
            self.spawn("triggerer")
        self.wait("Airflow healthy", self._healthy, STARTUP_TIMEOUT)
        logs = [self.processes[name].log_path for name in self.names("worker")]
        self.wait(
            "Celery workers ready",
            lambda: all(" ready." in p.read_text(errors="replace") for p in logs),
            STARTUP_TIMEOUT,
        )
        parsed = lambda: all(self.api("GET", f"/api/v2/dags/{d}").is_success for d in self.expect_dags)  # noqa: E731
        try:
            self.wait(f"DAGs {self.expect_dags} parsed", parsed, STARTUP_TIMEOUT)
        except TimeoutError as exc:
            raise TimeoutError(
                f"{exc}; import errors: {self.api('GET', '/api/v2/importErrors').text}"
            ) from None
        log(f"up in {time.monotonic() - started:.0f} s: {', '.join(self.processes)}")

    def stop(self) -> None:
        """Stop everything started (SIGTERM, SIGKILL after a grace period), also after a failure."""
        self.watcher.stop()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._db is not None:
            self._db.dispose()
        # The scheduler first (nothing new is started), the rest of Airflow at once, the services.
        if "scheduler" in self.processes:
            stop_session(self.processes["scheduler"], grace=15)
        airflow = [p for n, p in self.processes.items() if n not in (*SERVICES, "scheduler")]
        with ThreadPoolExecutor(max(1, len(airflow))) as pool:
            list(pool.map(lambda process: stop_session(process, grace=15), airflow))
        for name, first in SERVICES.items():
            if name in self.processes:
                stop_session(self.processes[name], first, grace=20)
        for process in self.retired:
            stop_session(process, signal.SIGKILL, grace=1)
        # Left of this cluster: any process of a session it started, and any anywhere whose
        # environment names its AIRFLOW_HOME (one that left its session would still carry it).
        strays = [pid for p in [*self.processes.values(), *self.retired] for pid in p.pids()]
        marker = f"AIRFLOW_HOME={self.home}".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as environ:
                    if marker in environ.read().split(b"\0"):
                        strays.append(int(entry))
        self.strays = sorted(set(strays))
        if self.strays:
            log(f"stray processes after stop: {self.strays}")
            _signal_all(self.strays, signal.SIGKILL)
        if self.keep:
            log(f"kept {self.run_dir} (and {self.pg_dir})")
        else:
            for path in (self.run_dir, self.pg_dir):
                if path is not None:
                    shutil.rmtree(path, ignore_errors=True)

    def wait(self, what: str, done: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
        """Poll ``done`` until it returns something true; fail at once if a component exited."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            result = done()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            time.sleep(every)

    def check_alive(self) -> None:
        for name, process in list(self.processes.items()):
            if not process.alive():
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{process.log_tail(80)}")

    def _healthy(self) -> bool:
        assert self._http is not None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            health = self._http.get("/api/v2/monitor/health", timeout=5).json()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(part) or {}).get("status") == "healthy" for part in parts)
        return False

    # -- processes -------------------------------------------------------------------------------

    def _popen(self, name: str, command: list[str], *, stdout: int | None = None, **kwargs: Any) -> Process:
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file if stdout is None else stdout,
                stderr=log_file,
                start_new_session=True,  # own session: stopping it reaches every descendant
                **{"cwd": self.run_dir, **kwargs},
            )
        self.processes[name] = Process(name, popen, log_path)
        return self.processes[name]

    def spawn(self, kind: str) -> str:
        """Start one more Airflow component of ``kind``; returns its name (``triggerer-3``...).
        A triggerer is waited for until it has its job row (``Process.job_id``)."""
        self._counters[kind] += 1
        name = f"{kind}-{self._counters[kind]}" if kind in ("worker", "triggerer") else kind
        # Each worker and triggerer serves its own logs: one port each on this one host.
        env = {**self.env}
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
        args = [kind]
        if kind == "api-server":
            args += ["--host", "127.0.0.1", "--port", self.api_url.rsplit(":", 1)[1]]
        elif kind == "worker":  # a name and a pid file of its own: several workers on one host
            args = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--pid", f"{self.home}/{name}.pid"]
        known = {p.job_id for p in [*self.processes.values(), *self.retired]}
        process = self._popen(name, [*AIRFLOW, *args], env=env, cwd=self.home)
        if kind == "triggerer":
            sql = "SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id DESC"
            fresh = lambda: next((row.id for row in self.query(sql) if row.id not in known), None)  # noqa: E731
            process.job_id = self.wait(f"{name}'s job row", fresh, STARTUP_TIMEOUT, every=0.3)
        return name

    def names(self, kind: str) -> list[str]:
        return [name for name in list(self.processes) if name.startswith(f"{kind}-")]

    def _retire(self, name: str) -> Process:
        process = self.processes.pop(name)
        self.retired.append(process)
        return process

    def kill(self, name: str) -> list[int]:
        """SIGKILL every process of a component's session at once (a crashed node); returns the pids."""
        process = self._retire(name)
        pids = process.pids()
        _signal_all(pids, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=10)
        return pids

    def terminate(self, name: str, grace: float = 30.0) -> float:
        """A graceful stop (SIGTERM, as in a rolling restart); returns how long it took."""
        started = time.monotonic()
        stop_session(self._retire(name), signal.SIGTERM, grace=grace)
        return time.monotonic() - started

    def component_of_pid(self, pid: int) -> str | None:
        """The running component whose session holds ``pid``."""
        with contextlib.suppress(ProcessLookupError):
            sid = os.getsid(pid)
            return next((name for name, p in list(self.processes.items()) if p.sid == sid), None)
        return None

    # -- services --------------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        import psycopg2

        bindir = postgres_bin_dir()
        assert bindir is not None
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        # Its own directory, owned by that user; the run directory stays private.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="oxen-cluster-pg-"))
        sockets, pwfile = self.pg_dir / "sock", self.pg_dir / "pwfile"
        sockets.mkdir()
        self.pg_password = secrets.token_urlsafe(24)
        pwfile.write_text(self.pg_password + "\n")
        pwfile.chmod(0o600)
        for path in (self.pg_dir, sockets, pwfile) if as_user else ():
            os.chown(path, as_user["user"], as_user["group"])
        data = str(self.pg_dir / "data")
        initdb = [
            str(bindir / "initdb"),
            "-D",
            data,
            "-U",
            "airflow",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
        ]
        initdb += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--no-locale", "--no-sync"]
        init = subprocess.run(initdb, capture_output=True, text=True, check=False, cwd=self.pg_dir, **as_user)
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout[-3000:]}{init.stderr[-3000:]}")
        self.pg_port = free_port()
        command = [str(bindir / "postgres"), "-D", data, "-p", str(self.pg_port), "-k", str(sockets)]
        # A throwaway test database: durability is not what is under test.
        settings = "listen_addresses=127.0.0.1 max_connections=400 shared_buffers=128MB fsync=off"
        for setting in f"{settings} synchronous_commit=off full_page_writes=off".split():
            command += ["-c", setting]
        self._popen("postgres", command, cwd=self.pg_dir, **as_user)
        params = {"host": "127.0.0.1", "port": self.pg_port, "user": "airflow", "password": self.pg_password}

        def connect() -> Any:
            with contextlib.suppress(psycopg2.OperationalError):
                return psycopg2.connect(dbname="postgres", connect_timeout=5, **params)
            return None

        conn = self.wait("postgres accepting connections", connect, 60, every=0.3)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE airflow")
        conn.close()
        log(f"postgres ({bindir.parent.name}) on 127.0.0.1:{self.pg_port} as {'nobody' if as_user else 'me'}")

    def _start_redis(self) -> None:
        self.redis_port = free_port()
        self.redis_password = secrets.token_urlsafe(24)
        redis_dir = self.run_dir / "redis"
        redis_dir.mkdir()
        conf = redis_dir / "redis.conf"  # the password stays out of the process list
        settings = [f"port {self.redis_port}", f"requirepass {self.redis_password}", f"dir {redis_dir}"]
        settings += ["bind 127.0.0.1", 'save ""', "appendonly no", "daemonize no", "loglevel warning"]
        conf.write_text("\n".join(settings) + "\n")
        conf.chmod(0o600)
        self._popen("redis", [shutil.which("redis-server") or "redis-server", str(conf)])
        with contextlib.closing(self.redis_client()) as client:

            def ping() -> bool:
                with contextlib.suppress(Exception):
                    return bool(client.ping())
                return False

            self.wait("redis answering", ping, 30, every=0.2)
        log(f"redis on 127.0.0.1:{self.redis_port} (no persistence)")

    def redis_client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.redis_port, password=self.redis_password)

    def _start_emulator(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        command = [
            sys.executable,
            "-m",
            "airflow_provider_oxen.emulator",
            "--port",
            "0",
            "--api-key",
            self.api_key,
        ]
        process = self._popen("emulator", [*command, *self.emulator_args], env=env, stdout=subprocess.PIPE)
        assert process.popen.stdout is not None
        line = process.popen.stdout.readline().decode().strip()  # the first line it prints: its URL
        process.popen.stdout.close()
        if not line.startswith("OXEN_EMULATOR_URL="):
            raise RuntimeError(f"the emulator did not report its URL:\n{process.log_tail()}")
        self.emulator_url = line.split("=", 1)[1]
        log(f"Oxen API emulator at {self.emulator_url}")

    def _airflow_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"
        }
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        slots = self.worker_count * self.worker_concurrency
        database, celery, core = f"sqlite:///{self.home}/airflow.db", {}, {}
        if self.celery:
            pg = f"airflow:{self.pg_password}@127.0.0.1:{self.pg_port}/airflow"
            database = f"postgresql+psycopg2://{pg}"
            celery = {
                "broker_url": f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0",
                "result_backend": f"db+postgresql+psycopg2://{pg}",
                "worker_concurrency": self.worker_concurrency,
            }
            core = {"max_active_tasks_per_dag": max(slots, 16) * 4}
        config: dict[str, Mapping[str, Any]] = {
            "core": {
                "dags_folder": self.run_dir / "dags",
                "load_examples": False,
                "executor": self.executor,
                # As many tasks handed to Celery as the workers have slots: none waits in Redis
                # long enough to look "stuck in queued".
                "parallelism": slots or 8,
                "dags_are_paused_at_creation": True,
                "execution_api_server_url": f"{self.api_url}/execution/",
                "simple_auth_manager_all_admins": True,
                "test_connection": "Enabled",  # the connection form's Test button (off by default)
                "fernet_key": self.fernet_key,
                **core,
            },
            "database": {"sql_alchemy_conn": database},
            "celery": celery,
            "celery_broker_transport_options": {"visibility_timeout": 21600} if self.celery else {},
            "api": {
                "base_url": self.api_url,
                "host": "127.0.0.1",
                "port": api_port,
                "workers": 1,
                "secret_key": secrets.token_urlsafe(32),
            },
            # >= 64 bytes: the JWT library warns about shorter HMAC keys.
            "api_auth": {"jwt_secret": secrets.token_urlsafe(64), "jwt_issuer": "oxen-cluster"},
            "logging": {"base_log_folder": self.home / "logs"},
            # Fast loops: a test, not a production deployment.
            "scheduler": {
                "scheduler_heartbeat_sec": 1,
                "job_heartbeat_sec": 1,
                "scheduler_idle_sleep_time": 0.2,
                "enable_health_check": False,
            },
            "triggerer": {"job_heartbeat_sec": 1},
            "dag_processor": {
                "refresh_interval": 5,
                "bundle_refresh_check_interval": 1,
                "min_file_process_interval": 600,
                "parsing_processes": 1,
                "print_stats_interval": 0,
                "dag_bundle_storage_path": self.home / "bundles",
            },
            "workers": {
                # A task's supervisor notices its task exited only at its next wake-up: with the
                # default 5 s, the executor's "success" for the pre-deferral workload can reach the
                # scheduler after the trigger fired, and the resumed task is marked failed
                # (Airflow 3.3; docs/operator.md). 1 s keeps that report well inside the deferral.
                "min_heartbeat_interval": 1,
                # Default 5 s: on a busy machine a task's first Execution API call can take longer.
                "execution_api_timeout": 30,
            },
        }
        env.update(
            {
                f"AIRFLOW__{section.upper()}__{key.upper()}": str(value)
                for section, values in config.items()
                for key, value in values.items()
            }
        )
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                # The Oxen connection as an environment variable (a secrets backend works the same).
                "AIRFLOW_CONN_OXEN_DEFAULT": connection_json(
                    self.emulator_url, self.api_key, **(PATIENT_RETRIES if self.celery else {})
                ),
                **self.env_extra,
            }
        )
        return env

    # -- REST API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A REST call as an admin (the simple auth manager's token, renewed once when refused)."""
        assert self._http is not None
        for _ in range(2):
            if self._token is None:
                token = self._http.get("/auth/token")
                token.raise_for_status()
                self._token = token.json()["access_token"]
            response = self._http.request(
                method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
            )
            if response.status_code != 401:
                break
            self._token = None
        return response

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` (every DAG starts paused here) and start a run; returns its run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        response = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"trigger {dag_id} failed: {response.status_code} {response.text}")
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        sql = "SELECT state FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id"
        rows = self.query(sql, dag_id=dag_id, run_id=run_id)
        return str(rows[0].state) if rows else "unknown"

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240.0) -> str:
        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        try:
            state = self.wait(f"run {dag_id}/{run_id} finished", finished, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; tasks: {self.task_states(dag_id, run_id)}") from None
        with contextlib.suppress(Exception):
            self.watcher.sample()  # the final states, whatever the sampling phase
        return state

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 120.0
    ) -> None:
        """Until some instance of ``task_id`` (any map index) is in ``state``."""

        def reached() -> bool:
            return state in {s for (t, _), s in self.task_states(dag_id, run_id).items() if t == task_id}

        try:
            self.wait(f"{task_id} {state}", reached, timeout, every=0.3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; tasks: {self.task_states(dag_id, run_id)}") from None

    # -- the metadata database -------------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[Any]:
        """The rows (named tuples) of a read of the metadata database, with ``:name`` parameters;
        retried a few times (a locked SQLite file, a dropped connection)."""
        assert self._db is not None
        for attempt in range(20):
            try:
                with self._db.connect() as conn:
                    return list(conn.execute(sa.text(sql), params))
            except sa.exc.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """``{(task_id, map_index): state}`` for every task instance of the run (mapped included)."""
        sql = (
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = :dag_id AND run_id = :run_id"
        )
        return {(t, int(m)): s for t, m, s in self.query(sql, dag_id=dag_id, run_id=run_id)}

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        sql = (
            "SELECT value FROM xcom WHERE dag_id = :dag_id AND run_id = :run_id AND task_id = :task_id"
            " AND map_index = :map_index AND key = :key"
        )
        rows = self.query(sql, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, key=key)
        if not rows:
            raise KeyError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}[{map_index}]")
        value = rows[0].value
        # PostgreSQL's JSON column comes back parsed; SQLite's as its text.
        return json.loads(value) if isinstance(value, (str, bytes)) and not self.celery else value

    def dump(self) -> bytes:
        """The whole metadata database as SQL text."""
        if not self.celery:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.home}/airflow.db?mode=ro", uri=True)
            ) as conn:
                return "\n".join(conn.iterdump()).encode()
        bindir = postgres_bin_dir()
        assert bindir is not None
        command = [
            str(bindir / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.pg_port),
            "-U",
            "airflow",
            "airflow",
        ]
        env = {**os.environ, "PGPASSWORD": self.pg_password}
        return subprocess.run(command, env=env, capture_output=True, check=True, timeout=300).stdout

    def decrypt(self, token: str) -> str:
        """A Fernet-encrypted column (trigger kwargs) as text."""
        from cryptography.fernet import Fernet

        return (
            token
            if token.startswith("{")
            else Fernet(self.fernet_key.encode()).decrypt(token.encode()).decode()
        )

    # -- logs ------------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every file the run wrote: component logs, task and trigger logs, the emulator's log, the DB."""
        roots = [root for root in (self.run_dir, self.pg_dir) if root is not None and root.exists()]
        return [path for root in roots for path in root.rglob("*") if path.is_file()]

    def task_log_files(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Path]:
        """The worker (``attempt=N.log``) and trigger log files of a task instance, every try."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        return sorted(folder.glob("attempt=*")) if folder.is_dir() else []

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The worker and trigger logs of a task instance, every try, concatenated."""
        files = self.task_log_files(dag_id, run_id, task_id, map_index)
        return "\n".join(f"==> {path.name} <==\n{path.read_text(errors='replace')}" for path in files)

    def print_log_tails(self, lines: int = 40) -> None:
        for process in [*self.processes.values(), *self.retired]:
            if tail := process.log_tail(lines):
                print(f"\n===== {process.name} (last {lines} lines) =====\n{tail}", file=sys.stderr)
        # The task logs written last: what a failure was busy with.
        task_logs = sorted((self.home / "logs").rglob("attempt=*"), key=lambda path: path.stat().st_mtime)
        for path in task_logs[-12:]:
            text = "\n".join(line[:400] for line in path.read_text(errors="replace").splitlines()[-lines:])
            print(f"\n===== {path.relative_to(self.home / 'logs')} =====\n{text}", file=sys.stderr)
