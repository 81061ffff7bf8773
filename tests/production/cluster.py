"""A production-shaped Airflow 3.3 on loopback: PostgreSQL, Redis, CeleryExecutor, two triggerers.

``ProductionCluster`` (a context manager) starts, in a throwaway run directory:

* **PostgreSQL** from Debian's ``postgresql`` package (``initdb``/``postgres`` from
  ``/usr/lib/postgresql/*/bin``) as a throwaway cluster on a free loopback port, its unix
  socket in the run directory, run as an unprivileged user (``nobody`` when started as root:
  PostgreSQL refuses to run as root) — not the system service;
* **Redis** (``redis-server``) on a free loopback port, password-protected, no persistence;
* the **Oxen API emulator** as the Oxen API (``python -m airflow_provider_oxen.emulator``);
* **Airflow**: ``db migrate`` on PostgreSQL, then api-server, scheduler, dag-processor,
  ``triggerers`` triggerers and ``workers`` Celery workers.

Every process is started in its own session (``start_new_session=True``). Airflow's task
processes leave their parent's process *group* but not its *session*, so stopping or killing a
component means signalling every process of its session: :func:`session_pids`. On exit —
also on an exception or Ctrl-C — everything started is stopped (SIGTERM, then SIGKILL) and
:meth:`ProductionCluster.stray_processes` must come back empty.

What is missing is installed first (:func:`ensure_prerequisites`): ``postgresql`` and
``redis-server`` with apt-get when absent (as root), and the ``production`` extra into the
running virtualenv when Celery, asyncpg, psycopg2 or redis cannot be imported.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
SOAK_DAGS = Path(__file__).resolve().parent / "dags"
EXAMPLE_DAG = REPO / "dags" / "oxen_generate_images.py"
PRODUCTION_MODULES = ("celery", "airflow.providers.celery", "asyncpg", "psycopg2", "redis")
APT_PACKAGES = ("postgresql", "redis-server")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


# -- prerequisites ------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``postgres``."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        try:
            version = float(initdb.parents[1].name)
        except ValueError:
            continue
        if (initdb.parent / "postgres").exists():
            found.append((version, initdb.parent))
    return max(found)[1] if found else None


def _missing_apt_packages() -> list[str]:
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


def _apt_install(packages: list[str]) -> None:
    """apt-get install without letting the packages start their system services."""
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing {', '.join(packages)}: install them (sudo apt-get install {' '.join(packages)}) "
            "or run this as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = False
    if not policy.exists():
        # Debian's invoke-rc.d asks this script whether a package may start its service: no.
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        added_policy = True
    try:
        log(f"installing {' '.join(packages)} with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, check=True
        )
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)


def _missing_modules() -> list[str]:
    missing = []
    for name in PRODUCTION_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def ensure_prerequisites() -> None:
    """Install PostgreSQL, Redis and the ``production`` extra when they are absent."""
    missing = _missing_apt_packages()
    if missing:
        _apt_install(missing)
        if _missing_apt_packages():
            raise RuntimeError(f"still missing after apt-get install: {_missing_apt_packages()}")
    modules = _missing_modules()
    if modules:
        log(f"installing the 'production' extra (missing: {', '.join(modules)})")
        uv = shutil.which("uv") or _venv_bin("uv")
        target = f"{REPO}[test,production]"
        if Path(uv).exists() or shutil.which(uv):
            command = [uv, "pip", "install", "--quiet", "--python", sys.executable, "-e", target]
        else:
            command = [sys.executable, "-m", "pip", "install", "--quiet", "-e", target]
        subprocess.run(command, check=True)
        importlib.invalidate_caches()
        if _missing_modules():
            raise RuntimeError(f"still missing after installing the extra: {_missing_modules()}")


# -- processes and sessions ---------------------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (the leader included, zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != sid:
                continue
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (ProcessLookupError, PermissionError, FileNotFoundError, OSError):
            continue
        if state != b"Z":
            pids.append(pid)
    return pids


def signal_session(sid: int, signum: int) -> int:
    """Send ``signum`` to every process of session ``sid``; returns how many were signalled."""
    sent = 0
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            sent += 1
    return sent


@dataclass
class Component:
    """One started process (and the session it leads)."""

    name: str
    command: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    job_id: int | None = None  # the Airflow job row (triggerers)

    @property
    def sid(self) -> int:
        return self.popen.pid  # start_new_session=True: the leader's pid is the session id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_session(component: Component, first: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """``first`` to the session leader, then SIGKILL to whatever of the session is left after ``grace``."""
    if component.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(component.popen.pid, first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        component.popen.poll()
        if not component.pids():
            break
        time.sleep(0.2)
    signal_session(component.sid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        component.popen.wait(timeout=10)
    deadline = time.monotonic() + 10
    while component.pids() and time.monotonic() < deadline:
        signal_session(component.sid, signal.SIGKILL)
        time.sleep(0.1)


# -- the cluster --------------------------------------------------------------------------------------


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that run a child as ``nobody`` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    import grp
    import pwd

    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid)
    return {"user": user.pw_uid, "group": group.gr_gid, "extra_groups": []}


class ProductionCluster:
    """Context manager: PostgreSQL + Redis + emulator + Airflow with Celery workers and triggerers.

    :param api_key: the Oxen API key the emulator accepts and the connection carries.
    :param dags: DAG files or folders, copied into the folder the dag-processor parses.
    :param env_extra: extra environment for every Airflow component (read by the DAGs too).
    :param workers: Celery workers, each with ``worker_concurrency`` task slots.
    :param triggerers: triggerers.
    :param render_seconds: the emulator's render time per generation.
    :param expect_dags: DAG ids that must be parsed before ``__enter__`` returns.
    :param keep: keep the run directory (logs, a database dump) after exit.
    """

    def __init__(
        self,
        api_key: str,
        *,
        dags: Iterable[str | os.PathLike[str]] = (SOAK_DAGS,),
        env_extra: Mapping[str, str] | None = None,
        workers: int = 2,
        worker_concurrency: int = 8,
        triggerers: int = 2,
        api_workers: int = 1,
        render_seconds: float = 8.0,
        queue_seconds: float = 0.5,
        expect_dags: Iterable[str] = (),
        startup_timeout: float = 420.0,
        keep: bool | None = None,
        install: bool = True,
    ) -> None:
        self.api_key = api_key
        self.dags_sources = [Path(p).resolve() for p in dags]
        self.env_extra = dict(env_extra or {})
        self.worker_count = workers
        self.worker_concurrency = worker_concurrency
        self.triggerer_count = triggerers
        self.api_workers = api_workers
        self.render_seconds = render_seconds
        self.queue_seconds = queue_seconds
        self.expect_dags = list(expect_dags)
        self.startup_timeout = startup_timeout
        self.keep = bool(os.environ.get("OXEN_CLUSTER_KEEP")) if keep is None else keep
        self.install = install

        self.run_dir: Path | None = None
        self.pg_dir: Path | None = None
        self.home: Path | None = None
        self.components: dict[str, Component] = {}
        self.retired: list[Component] = []  # killed or stopped during the run (kept to check for strays)
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.emulator_url = ""
        self.pg_port = 0
        self.pg_password = ""
        self.redis_port = 0
        self.redis_password = ""
        self.fernet_key = ""
        self._counters: dict[str, int] = {}
        self._http: httpx.Client | None = None
        self._token: str | None = None
        self._lock = threading.RLock()
        self._db: Any = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ProductionCluster:
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
        deadline = started + self.startup_timeout
        if self.install:
            ensure_prerequisites()
        self.run_dir = Path(tempfile.mkdtemp(prefix="oxen-cluster-"))
        self.home = self.run_dir / "airflow"
        self.home.mkdir()
        dags_folder = self.run_dir / "dags"
        dags_folder.mkdir()
        for source in self.dags_sources:
            if source.is_dir():
                for path in source.glob("*.py"):
                    shutil.copy(path, dags_folder / path.name)
            else:
                shutil.copy(source, dags_folder / source.name)
        log(f"run directory {self.run_dir}")
        self._start_postgres()
        self._start_redis()
        self._start_emulator()
        self.env = self._airflow_env()
        self._migrate(deadline)
        self._http = httpx.Client(base_url=self.api_url, timeout=30)
        self.spawn("api-server")
        self.spawn("scheduler")
        self.spawn("dag-processor")
        for _ in range(self.worker_count):
            self.spawn("worker")
        for _ in range(self.triggerer_count):
            self.spawn("triggerer")
            self.wait_for_triggerer_job(self.components[self.last("triggerer")], deadline)
        self._wait_healthy(deadline)
        for name in self.components:
            if name.startswith("worker-"):
                self.wait_for_worker(name, deadline)
        for dag_id in self.expect_dags:
            self.wait_for_dag(dag_id, max(1.0, deadline - time.monotonic()))
        log(f"cluster up in {time.monotonic() - started:.0f} s: {', '.join(self.components)}")

    def stop(self) -> None:
        """Stop everything started (SIGTERM, SIGKILL after a grace period), also after a failure."""
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None
            self.close_db()
            # The scheduler first (nothing new is queued), then the Airflow rest in parallel,
            # then the services they use.
            airflow = [c for n, c in self.components.items() if n not in ("emulator", "redis", "postgres")]
            airflow.sort(key=lambda c: c.name != "scheduler")
            if airflow and airflow[0].name == "scheduler":
                stop_session(airflow.pop(0), grace=15)
            threads = [
                threading.Thread(target=stop_session, args=(c,), kwargs={"grace": 15}) for c in airflow
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for name, signum in (("emulator", signal.SIGTERM), ("redis", signal.SIGTERM)):
                if name in self.components:
                    stop_session(self.components[name], signum, grace=10)
            if "postgres" in self.components:
                # SIGINT is PostgreSQL's "fast" shutdown: roll back, close connections, exit.
                stop_session(self.components["postgres"], signal.SIGINT, grace=20)
            for component in self.retired:
                stop_session(component, signal.SIGKILL, grace=1)
            strays = self.stray_processes()
            if strays:
                log(f"stray processes after stop: {strays}")
                for pid in strays:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if not self.keep:
                for path in (self.run_dir, self.pg_dir):
                    if path is not None:
                        shutil.rmtree(path, ignore_errors=True)
            elif self.run_dir is not None:
                log(f"kept {self.run_dir} (and {self.pg_dir})")

    def stray_processes(self) -> list[int]:
        """Processes left from this cluster (should be none after ``stop``): any process of a session
        it started, and any process anywhere whose environment names its AIRFLOW_HOME (one that
        left its session would still carry it)."""
        pids: list[int] = []
        for component in [*self.components.values(), *self.retired]:
            pids += component.pids()
        if self.home is not None:
            marker = f"AIRFLOW_HOME={self.home}".encode()
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) == os.getpid():
                    continue
                try:
                    with open(f"/proc/{entry}/environ", "rb") as environ:
                        if marker in environ.read().split(b"\0"):
                            pids.append(int(entry))
                except OSError:
                    continue
        return sorted(set(pids))

    # -- services --------------------------------------------------------------------------------

    def _popen(
        self,
        name: str,
        command: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: int | None = None,
        **kwargs: Any,
    ) -> Component:
        assert self.run_dir is not None
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                command,
                env=dict(env) if env is not None else None,
                cwd=cwd or self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                start_new_session=True,  # own session: killing it reaches every descendant
                **kwargs,
            )
        component = Component(name, command, popen, log_path)
        self.components[name] = component
        return component

    def _start_postgres(self) -> None:
        bindir = postgres_bin_dir()
        assert bindir is not None
        as_user = _unprivileged()
        # Its own directory, owned by the unprivileged user; the run directory stays private.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="oxen-cluster-pg-"))
        data, sockets = self.pg_dir / "data", self.pg_dir / "sock"
        sockets.mkdir()
        self.pg_password = secrets.token_urlsafe(24)
        pwfile = self.pg_dir / "pwfile"
        pwfile.write_text(self.pg_password + "\n")
        pwfile.chmod(0o600)
        if as_user:
            for path in (self.pg_dir, sockets, pwfile):
                os.chown(path, as_user["user"], as_user["group"])
        self.pg_port = free_port()
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "airflow", f"--pwfile={pwfile}"]
        initdb += ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8"]
        initdb += ["--no-locale", "--no-sync"]
        init = subprocess.run(
            initdb,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            cwd=self.pg_dir,
            **as_user,
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout[-3000:]}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "400",
            "shared_buffers": "128MB",
            # A throwaway test database: durability is not what is under test.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        command = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(sockets)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self._popen("postgres", command, cwd=self.pg_dir, **as_user)
        import psycopg2

        deadline = time.monotonic() + 60
        while True:
            if not self.components["postgres"].alive():
                raise RuntimeError(f"postgres exited:\n{self.components['postgres'].log_tail()}")
            try:
                conn = psycopg2.connect(**self._pg_params("postgres"))
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE airflow")
        conn.close()
        log(f"postgres ({bindir.parent.name}) on 127.0.0.1:{self.pg_port} as {'nobody' if as_user else 'me'}")

    def _pg_params(self, dbname: str = "airflow") -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.pg_port,
            "user": "airflow",
            "password": self.pg_password,
            "dbname": dbname,
            "connect_timeout": 5,
        }

    def _start_redis(self) -> None:
        assert self.run_dir is not None
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
        client = self.redis_client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or not self.components["redis"].alive():
                    raise RuntimeError(
                        f"redis did not start:\n{self.components['redis'].log_tail()}"
                    ) from None
                time.sleep(0.2)
        client.close()
        log(f"redis on 127.0.0.1:{self.redis_port} (no persistence)")

    def redis_client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.redis_port, password=self.redis_password)

    def _start_emulator(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "airflow_provider_oxen.emulator", "--port", "0"]
        command += ["--api-key", self.api_key, "--render-seconds", str(self.render_seconds)]
        command += ["--queue-seconds", str(self.queue_seconds)]
        component = self._popen("emulator", command, env=env, stdout=subprocess.PIPE)
        assert component.popen.stdout is not None
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            chunk = component.popen.stdout.readline()
            if not chunk:
                break
            line += chunk
        component.popen.stdout.close()
        text = line.decode().strip()
        if not text.startswith("OXEN_EMULATOR_URL="):
            raise RuntimeError(f"the emulator did not report its URL:\n{component.log_tail()}")
        self.emulator_url = text.split("=", 1)[1]
        log(f"Oxen API emulator at {self.emulator_url}")

    # -- Airflow ---------------------------------------------------------------------------------

    def connection_json(self) -> str:
        extra = {"max_retries": 6, "backoff_base": 0.2, "backoff_max": 2.0}
        return json.dumps(
            {"conn_type": "oxen", "host": self.emulator_url, "password": self.api_key, "extra": extra}
        )

    def _airflow_env(self) -> dict[str, str]:
        assert self.home is not None and self.run_dir is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"
        }
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        pg = f"airflow:{self.pg_password}@127.0.0.1:{self.pg_port}/airflow"
        slots = self.worker_count * self.worker_concurrency
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
                # The Oxen connection, as an environment variable (a secrets backend works the same).
                "AIRFLOW_CONN_OXEN_DEFAULT": self.connection_json(),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.run_dir / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                # As many tasks handed to Celery as the workers have slots: nothing waits in
                # Redis long enough to look "stuck in queued".
                "AIRFLOW__CORE__PARALLELISM": str(slots),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(slots, 16) * 4),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{pg}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__WORKERS": str(self.api_workers),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__API_AUTH__JWT_ISSUER": "oxen-production-cluster",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # A killed worker's tasks stop heartbeating: fail them (for a retry) after 20 s.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                # A task a killed worker had received but not started yet stays "queued" (no
                # heartbeat to miss): the scheduler re-queues it after this (default 600 s).
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
                # A SIGKILLed triggerer's triggers go to a healthy one after this many seconds.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.home / "bundles"),
                # Airflow 3.3: a trigger firing within seconds of the deferral can race the
                # executor's report of the pre-deferral workload (docs/operator.md).
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                # Default 5 s: on a busy machine a task's first Execution API call can take
                # longer, and the try then fails before it even starts (ReadTimeout).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            }
        )
        env.update(self.env_extra)
        return env

    def _migrate(self, deadline: float) -> None:
        assert self.home is not None and self.run_dir is not None
        started = time.monotonic()
        migrate = subprocess.run(
            [_venv_bin("airflow"), "db", "migrate"],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=max(30.0, deadline - time.monotonic()),
            check=False,
            start_new_session=True,
        )
        (self.run_dir / "db-migrate.log").write_text(migrate.stdout)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-4000:]}")
        log(f"airflow db migrate on PostgreSQL: {time.monotonic() - started:.0f} s")

    def last(self, kind: str) -> str:
        return f"{kind}-{self._counters[kind]}"

    def spawn(self, kind: str) -> str:
        """Start one more Airflow component of ``kind``; returns its name (``triggerer-3``...)."""
        assert self.home is not None
        with self._lock:
            self._counters[kind] = self._counters.get(kind, 0) + 1
            name = f"{kind}-{self._counters[kind]}" if kind in ("worker", "triggerer") else kind
            env = dict(self.env)
            if kind == "api-server":
                port = self.api_url.rsplit(":", 1)[1]
                args = [
                    "api-server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--workers",
                    str(self.api_workers),
                ]
            elif kind == "worker":
                # Each worker serves its own task logs on its own port (one host, several workers).
                env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
                args = ["celery", "worker", "--concurrency", str(self.worker_concurrency)]
                args += ["--celery-hostname", f"{name}@%h", "--pid", str(self.home / f"{name}.pid")]
            elif kind == "triggerer":
                env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
                args = ["triggerer", "--capacity", "1000"]
            else:
                args = [kind]
            self._popen(name, [_venv_bin("airflow"), *args], env=env, cwd=self.home)
            return name

    def kill(self, name: str) -> list[int]:
        """SIGKILL every process of a component's session at once (a crashed node); returns the pids."""
        with self._lock:
            component = self.components.pop(name)
            self.retired.append(component)
        pids = component.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.popen.wait(timeout=10)
        return pids

    def terminate(self, name: str, grace: float = 30.0) -> float:
        """Graceful stop (SIGTERM, as a rolling restart does); returns how long it took."""
        with self._lock:
            component = self.components.pop(name)
            self.retired.append(component)
        started = time.monotonic()
        stop_session(component, signal.SIGTERM, grace=grace)
        return time.monotonic() - started

    def triggerer_names(self) -> list[str]:
        return [n for n in self.components if n.startswith("triggerer-")]

    def worker_names(self) -> list[str]:
        return [n for n in self.components if n.startswith("worker-")]

    def component_of_pid(self, pid: int) -> str | None:
        """The running component whose session holds ``pid``."""
        try:
            sid = os.getsid(pid)
        except ProcessLookupError:
            return None
        for name, component in self.components.items():
            if component.sid == sid:
                return name
        return None

    def wait_for_triggerer_job(self, component: Component, deadline: float) -> int:
        """The job row a just-started triggerer created (triggerers are started one at a time)."""
        known = {c.job_id for c in [*self.components.values(), *self.retired] if c.job_id is not None}
        while time.monotonic() < deadline:
            self._check_alive()
            rows = self.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
            fresh = [int(r[0]) for r in rows if int(r[0]) not in known]
            if fresh:
                component.job_id = fresh[-1]
                return component.job_id
            time.sleep(0.3)
        raise TimeoutError(f"{component.name} created no job row:\n{component.log_tail()}")

    def wait_for_worker(self, name: str, deadline: float) -> None:
        component = self.components[name]
        while time.monotonic() < deadline:
            self._check_alive()
            if " ready." in component.log_path.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{name} never said it was ready:\n{component.log_tail()}")

    def _check_alive(self) -> None:
        for name, component in list(self.components.items()):
            if not component.alive():
                raise RuntimeError(
                    f"{name} exited with {component.popen.returncode}:\n{component.log_tail(80)}"
                )

    def _wait_healthy(self, deadline: float) -> None:
        assert self._http is not None
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = self._http.get("/api/v2/monitor/health", timeout=5)
                last = response.text
                if response.status_code == 200:
                    health = response.json()
                    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                        return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise TimeoutError(f"Airflow did not become healthy in time; last health answer: {last}")

    # -- REST API --------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        assert self._http is not None
        if self._token is None:
            response = self._http.get("/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None
        response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code == 401:
            self._token = None
            response = self._http.request(method, path, headers=self._headers(), **kwargs)
        return response

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.api("GET", f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return
            last = response.text
            time.sleep(0.5)
        errors = self.api("GET", "/api/v2/importErrors").text
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout} s: {last}\nimport errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        response = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        if response.status_code >= 400:
            raise RuntimeError(f"trigger {dag_id} failed: {response.status_code} {response.text}")
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return str(rows[0][0]) if rows else "unknown"

    # -- database --------------------------------------------------------------------------------

    def connect_db(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(**self._pg_params())
        conn.autocommit = True
        return conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read on the metadata DB (one connection, reopened after an error)."""
        with self._lock:
            for attempt in range(3):
                try:
                    if self._db is None:
                        self._db = self.connect_db()
                    with self._db.cursor() as cursor:
                        cursor.execute(sql, params)
                        return list(cursor.fetchall())
                except Exception:
                    self.close_db()
                    if attempt == 2:
                        raise
                    time.sleep(0.5)
        raise AssertionError("unreachable")

    def close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def pg_dump(self) -> bytes:
        """A full plain-text dump of the metadata database."""
        bindir = postgres_bin_dir()
        assert bindir is not None
        dump = subprocess.run(
            [str(bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow", "airflow"],
            env={**os.environ, "PGPASSWORD": self.pg_password},
            capture_output=True,
            check=True,
            timeout=300,
        )
        return dump.stdout

    def decrypt(self, token: str) -> str:
        """A Fernet-encrypted column (trigger kwargs) as text."""
        from cryptography.fernet import Fernet

        if token.startswith("{"):
            return token
        return Fernet(self.fernet_key.encode()).decrypt(token.encode()).decode()

    # -- logs ------------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every file the run wrote: component logs, task and trigger logs, the emulator's request log."""
        out: list[Path] = []
        for root in (self.run_dir, self.pg_dir):
            if root is not None and root.exists():
                out += [p for p in root.rglob("*") if p.is_file()]
        return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        assert self.home is not None
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        if not folder.is_dir():
            return ""
        return "\n".join(
            f"==> {p.name} <==\n{p.read_text(errors='replace')}" for p in sorted(folder.glob("attempt=*"))
        )

    def task_attempts(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[int, str]:
        """The worker log of each try of a task instance (trigger logs left out), by try number."""
        assert self.home is not None
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        out = {}
        for path in folder.glob("attempt=*.log"):
            number = path.name[len("attempt=") : -len(".log")]
            if number.isdigit():
                out[int(number)] = path.read_text(errors="replace")
        return dict(sorted(out.items()))

    def print_log_tails(self, lines: int = 40) -> None:
        for component in [*self.components.values(), *self.retired]:
            tail = component.log_tail(lines)
            if tail:
                print(f"\n===== {component.name} (last {lines} lines) =====\n{tail}", file=sys.stderr)


def run_until_interrupted(cluster: ProductionCluster, on_tick: Callable[[], None] | None = None) -> None:
    """Block until Ctrl-C or SIGTERM (turned into KeyboardInterrupt), checking the cluster stays up."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while True:
            cluster._check_alive()
            if on_tick is not None:
                on_tick()
            time.sleep(2)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
