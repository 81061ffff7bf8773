"""A real Airflow 3.3 (api-server, scheduler, dag-processor, triggerer) on loopback, for e2e tests.

``AirflowCluster`` builds a throwaway ``AIRFLOW_HOME`` (SQLite, LocalExecutor, no examples,
fast loop intervals, one JWT/API secret shared by every component), runs ``airflow db
migrate``, starts each component as a subprocess in its own process group with its output
in ``<home>/<component>.log``, waits until the api-server is healthy and the wanted DAGs are
parsed, and on exit stops every process group (SIGTERM, then SIGKILL) and removes the home.

While it runs, a :class:`StateWatcher` thread samples ``task_instance``, ``trigger`` and
``job`` from the metadata DB every ~0.2 s, so a test can assert a task *went through*
``deferred`` even though it is long gone by the time the run finishes.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def stop_process_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL what is left of it after ``grace`` seconds."""
    pgid = proc.pid  # started with start_new_session=True: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or it lingers as a zombie and keeps the group "alive"
        if not _group_alive(pgid):
            break
        time.sleep(0.1)
    # Children (task supervisors, the trigger runner, uvicorn workers) may outlive the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- DB state watcher --------------------------------------------------------------------------------


@dataclass
class StateWatcher:
    """Samples task instance, trigger and job rows every ``interval`` seconds in a thread.

    ``ti_history[(dag_id, run_id, task_id, map_index)]`` is the ordered list of distinct states
    seen (``None`` included), ``ti_triggers[key]`` every trigger id a TI was linked to,
    ``triggers[id]`` the last row seen for each trigger (``classpath``, ``triggerer_id``, ...)
    with ``triggerer_ids`` collecting every triggerer that held it, and ``jobs[id]`` the job rows.
    """

    db_path: str
    interval: float = 0.2
    ti_history: dict[tuple[str, str, str, int], list[str | None]] = field(default_factory=dict)
    ti_triggers: dict[tuple[str, str, str, int], set[int]] = field(default_factory=dict)
    triggers: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    samples: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="airflow-state-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except sqlite3.Error as exc:  # locked DB, table not there yet: try again next tick
                self.errors.append(str(exc))
                del self.errors[:-20]
            self._stop.wait(self.interval)

    def sample(self) -> None:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2)
        conn.row_factory = sqlite3.Row
        try:
            tis = conn.execute(
                "SELECT dag_id, run_id, task_id, map_index, state, trigger_id FROM task_instance"
            ).fetchall()
            triggers = conn.execute(
                "SELECT id, classpath, triggerer_id, created_date FROM trigger"
            ).fetchall()
            jobs = conn.execute(
                "SELECT id, job_type, state, hostname, start_date, latest_heartbeat FROM job"
            ).fetchall()
        finally:
            conn.close()
        with self._lock:
            self.samples += 1
            for row in tis:
                key = (row["dag_id"], row["run_id"], row["task_id"], int(row["map_index"]))
                history = self.ti_history.setdefault(key, [])
                if not history or history[-1] != row["state"]:
                    history.append(row["state"])
                if row["trigger_id"] is not None:
                    self.ti_triggers.setdefault(key, set()).add(int(row["trigger_id"]))
            for row in triggers:
                entry = self.triggers.setdefault(int(row["id"]), {"triggerer_ids": set()})
                entry.update(dict(row))
                if row["triggerer_id"] is not None:
                    entry["triggerer_ids"].add(int(row["triggerer_id"]))
            for row in jobs:
                self.jobs[int(row["id"])] = dict(row)

    def history(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[str | None]:
        with self._lock:
            return list(self.ti_history.get((dag_id, run_id, task_id, map_index), []))

    def trigger_ids(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> set[int]:
        with self._lock:
            return set(self.ti_triggers.get((dag_id, run_id, task_id, map_index), set()))

    def trigger(self, trigger_id: int) -> dict[str, Any]:
        with self._lock:
            entry = dict(self.triggers.get(trigger_id, {}))
            entry["triggerer_ids"] = set(entry.get("triggerer_ids", set()))
            return entry

    def jobs_of_type(self, job_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(job) for job in self.jobs.values() if job["job_type"] == job_type]


# -- the cluster ----------------------------------------------------------------------------------------


class AirflowCluster:
    """Context manager running a real Airflow on 127.0.0.1 in a temporary AIRFLOW_HOME.

    :param dags_folder: folder the dag-processor parses.
    :param env_extra: extra environment for every component (connections, config overrides).
    :param expect_dags: dag ids that must be parsed before ``__enter__`` returns (default: none).
    :param startup_timeout: seconds allowed for migration + start-up.
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        env_extra: Mapping[str, str] | None = None,
        *,
        expect_dags: Iterable[str] = (),
        startup_timeout: float = 300.0,
        keep_home: bool | None = None,
    ) -> None:
        self.dags_folder = str(Path(dags_folder).resolve())
        self.env_extra = dict(env_extra or {})
        self.expect_dags = list(expect_dags)
        self.startup_timeout = startup_timeout
        # OXEN_E2E_KEEP_HOME=1 keeps the home (logs, DB) for a post-mortem.
        self.keep_home = bool(os.environ.get("OXEN_E2E_KEEP_HOME")) if keep_home is None else keep_home
        self.home: Path | None = None
        self.api_port = 0
        self.base_url = ""
        self.env: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[Any]] = {}
        self._log_files: dict[str, Any] = {}
        self.watcher: StateWatcher | None = None
        self._http: httpx.Client | None = None
        self._token: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> AirflowCluster:
        try:
            self._start()
        except BaseException:
            self.print_log_tails()
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is not None:
            self.print_log_tails()
        self._shutdown()

    @property
    def db_path(self) -> str:
        assert self.home is not None
        return str(self.home / "airflow.db")

    def _build_env(self) -> dict[str, str]:
        assert self.home is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"
        }
        # >= 64 bytes: the JWT library warns about shorter HMAC keys for the default algorithm.
        jwt_secret = secrets.token_urlsafe(64)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__DAGS_FOLDER": self.dags_folder,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # The connection form's Test button (off by default in Airflow 3).
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
                "AIRFLOW__API_AUTH__JWT_ISSUER": "oxen-e2e",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Fast loops: this is a test, not a production deployment.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.home / "bundles"),
                # The task supervisor only notices its task exited on the next wake-up of its
                # select loop (up to this many seconds) when the task closed its sockets first.
                # With the default 5 s, the executor's "success" for the pre-deferral workload can
                # reach the scheduler after the trigger fired and the task was re-queued with the
                # same try number; the scheduler then marks the resumed, running task FAILED
                # (Airflow's "task state changed externally" error). 1 s keeps that report well
                # inside the deferral.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            }
        )
        env.update(self.env_extra)
        return env

    def _start(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="oxen-e2e-airflow-"))
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.env = self._build_env()
        deadline = time.monotonic() + self.startup_timeout

        migrate = subprocess.run(
            [_airflow_bin(), "db", "migrate"],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=self.startup_timeout,
            check=False,
        )
        (self.home / "db-migrate.log").write_text(migrate.stdout)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-4000:]}")

        self.watcher = StateWatcher(self.db_path)
        self.watcher.start()
        for component in COMPONENTS:
            args = [component]
            if component == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
            self._spawn(component, args)

        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        self._wait_healthy(deadline)
        for dag_id in self.expect_dags:
            self.wait_for_dag(dag_id, timeout=max(1.0, deadline - time.monotonic()))

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.home is not None
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed in _shutdown
        self._log_files[name] = log
        self.processes[name] = subprocess.Popen(
            [_airflow_bin(), *args],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session => own process group
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

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

    def _shutdown(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        # Stop the scheduler first so it does not launch anything new, then everything else
        # in parallel (each has its own grace period).
        order = ["scheduler", "dag-processor", "triggerer", "api-server"]
        procs = [self.processes[n] for n in order if n in self.processes]
        procs += [p for n, p in self.processes.items() if n not in order]
        threads = [threading.Thread(target=stop_process_group, args=(p,)) for p in procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.watcher is not None:
            self.watcher.stop()
        for log in self._log_files.values():
            log.close()
        self._log_files.clear()
        if self.home is not None and not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

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
        if response.status_code == 401:  # token expired: once more with a fresh one
            self._token = None
            response = self._http.request(method, path, headers=self._headers(), **kwargs)
        return response

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.api("GET", f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return dict(response.json())
            last = response.text
            time.sleep(0.5)
        errors = self.api("GET", "/api/v2/importErrors").text
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout} s: {last}\nimport errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        response = self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        response.raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        response = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"trigger {dag_id} failed: {response.status_code} {response.text}")
        return str(response.json()["dag_run_id"])

    def end_run(self, dag_id: str, run_id: str) -> None:
        """Mark a run failed, so a run a test leaves waiting (e.g. for review) does nothing more
        while later tests share the cluster."""
        response = self.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
        response.raise_for_status()

    def run_state(self, dag_id: str, run_id: str) -> str:
        response = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        response.raise_for_status()
        return str(response.json()["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240.0) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                if self.watcher is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self.watcher.sample()  # the final states, whatever the sampling phase
                return state
            time.sleep(0.5)
        raise TimeoutError(
            f"run {dag_id}/{run_id} still {state} after {timeout} s; "
            f"tasks: {self.task_states(dag_id, run_id)}"
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """``{(task_id, map_index): state}`` for every task instance of the run (mapped included)."""
        rows = self._query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        return {(r["task_id"], int(r["map_index"])): r["state"] for r in rows}

    # -- DB reads ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        for attempt in range(20):
            try:
                conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
                conn.row_factory = sqlite3.Row
                try:
                    return conn.execute(sql, params).fetchall()
                finally:
                    conn.close()
            except sqlite3.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        rows = self._query(
            "SELECT value FROM xcom"
            " WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? AND key = ?",
            (dag_id, run_id, task_id, map_index, key),
        )
        if not rows:
            raise KeyError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}[{map_index}]")
        value = rows[0]["value"]
        if isinstance(value, bytes):
            value = value.decode()
        return json.loads(value) if isinstance(value, str) else value

    def jobs(self, job_type: str | None = None) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, job_type, state, hostname, latest_heartbeat FROM job")
        return [dict(r) for r in rows if job_type is None or r["job_type"] == job_type]

    # -- logs -------------------------------------------------------------------------------------

    def logs(self) -> dict[str, str]:
        """Each component's log (and db migrate's) as text."""
        assert self.home is not None
        out = {}
        for path in sorted(self.home.glob("*.log")):
            out[path.stem] = path.read_text(errors="replace")
        return out

    def log_tail(self, name: str, lines: int = 60) -> str:
        assert self.home is not None
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def task_log_files(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Path]:
        """Worker and trigger log files of a task instance (every try)."""
        assert self.home is not None
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("attempt=*") if p.is_file())

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """Worker and triggerer log text of a task instance, every try concatenated."""
        parts = []
        for path in self.task_log_files(dag_id, run_id, task_id, map_index):
            parts.append(f"==> {path.name} <==\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def print_log_tails(self, lines: int = 60) -> None:
        if self.home is None or not self.home.exists():
            return
        for name in [*COMPONENTS, "db-migrate"]:
            tail = self.log_tail(name, lines)
            if tail:
                print(f"\n===== airflow {name} (last {lines} lines) =====\n{tail}", file=sys.stderr)
        logs_root = self.home / "logs"
        if logs_root.is_dir():
            for path in sorted(logs_root.rglob("attempt=*")):
                text = "\n".join(
                    _compact(line) for line in path.read_text(errors="replace").splitlines()[-lines:]
                )
                print(f"\n===== {path.relative_to(logs_root)} =====\n{text}", file=sys.stderr)


def _compact(line: str, width: int = 400) -> str:
    """A task log line (JSON) as ``time level logger: event [error]``, cut to ``width``."""
    try:
        record = json.loads(line)
    except ValueError:
        return line[:width]
    if not isinstance(record, dict):
        return line[:width]
    when, level, logger = record.get("timestamp", ""), record.get("level", ""), record.get("logger", "")
    text = f"{when} {level} {logger}: {record.get('event')}"
    if record.get("error_detail"):
        details = record["error_detail"]
        text += " | " + "; ".join(
            f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict)
        )
    return text[:width]
