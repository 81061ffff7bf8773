"""The chaos soak: the soak DAG on the production-shaped cluster, faults and kills, then the invariants.

Timeline (every wait is bounded):

1. the run starts with faults armed: ``generation_failure`` (3 generations of the flaky
   model), ``stall_generation`` (the stalled task's one generation), and, until the run ends,
   a 429 (``Retry-After: 1``) on an enqueue and a 503 on a queue read every few seconds (one
   of each armed at a time), and every SSE stream cut every few seconds;
2. **worker kill**: once a kill-window task sits between its recorded enqueue and its
   deferral, new enqueues are held back (``freeze``) until no task of that worker is inside
   an enqueue, and the whole Celery worker (its session: pool, supervisors, task processes)
   is SIGKILLed; a replacement worker starts. The scheduler fails the dead tasks after the
   heartbeat timeout and their retries must resume the ledgered generations;
3. **triggerer kill**: the triggerer holding the most waiting triggers is SIGKILLed; the
   other must take every one of them over;
4. **late triggerer**: the remaining triggerer is stopped (SIGTERM, as in a rolling restart),
   the ``late`` tasks are let through the gate, enqueue and defer with no triggerer running;
   once their deadline has passed, two new triggerers start: the generations finished
   meanwhile, so the tasks must succeed (a result, not a timeout);
5. the run finishes; the soak then checks the invariants below and prints the figures.

Invariants (each broken one is listed and fails the run): every task succeeded (the stalled
one may instead fail for good if its timeout hit its last try), and every failed try of the
flaky and stalled tasks has its reason in its log; generations created = images requested +
one replacement per upstream failure (and one for the stalled generation when its retry
succeeded); the paid (succeeded) generations are exactly the ids in the tasks' XComs, each
once; nothing is left queued or processing; only the stalled generation was cancelled; the
tasks killed with their worker succeeded on a later try, and the kill-window ones resumed
their ledgered generations; every trigger of the SIGKILLed triggerer was taken over; every
late trigger was first held after its deadline and collected its finished image; the API key
appears in no file the run wrote, not in ``pg_dump``, not in any trigger's kwargs, not in
Redis; no process of the cluster is left after it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures import EmulatorControl
from tests.production.cluster import SOAK_DAGS, ProductionCluster, log

DAG_ID = "oxen_chaos_soak"
FLAKY_MODEL = "black-forest-labs-flux-2-klein-4b"
STALL_MODEL = "nano-banana-2"
FAILURE_TEXT = "Upstream GPU fault injected by the soak"


@dataclass
class SoakConfig:
    tasks: int = 32  # mapped ``generate`` tasks
    images_per_task: int = 2
    flaky: int = 3  # tasks of 2 images on the flaky model
    failures: int = 3  # generations of the flaky model that fail upstream
    late: int = 4
    kill_window: tuple[int, ...] = (1, 2)
    render_seconds: float = 8.0
    queue_seconds: float = 0.5
    workers: int = 2
    worker_concurrency: int = 8
    triggerers: int = 2
    late_timeout: float = 20.0
    stall_timeout: float = 45.0
    poll_interval: float = 5.0
    fault_every: float = 3.0
    sse_drop_every: float = 4.0
    timeout: float = 1800.0  # the DAG run, from trigger to finish
    keep: bool = False

    @property
    def images_requested(self) -> int:
        return self.tasks * self.images_per_task + self.flaky * 2 + 1 + self.late

    @property
    def task_count(self) -> int:
        return self.tasks + self.flaky + 1 + self.late


@dataclass
class SoakReport:
    config: SoakConfig
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.violations.append(message)

    def render(self) -> str:
        width = max(len(k) for k in self.figures) if self.figures else 10
        lines = ["", "=" * 78, "Chaos soak on PostgreSQL + Redis + CeleryExecutor + 2 triggerers", "=" * 78]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.figures.items()]
        if self.notes:
            lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        lines.append("")
        if self.violations:
            lines.append(f"INVARIANTS BROKEN ({len(self.violations)}):")
            lines += [f"  ✗ {v}" for v in self.violations]
        else:
            lines.append("all invariants held")
        lines.append("=" * 78)
        return "\n".join(lines)


# -- sampling while the run goes on -----------------------------------------------------------------


class Sampler:
    """A thread recording task states, triggers (who held them, their kwargs), triggerer RSS and Redis."""

    def __init__(self, cluster: ProductionCluster, needle: str, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.needle = needle.encode()
        self.interval = interval
        self.run_id: str | None = None
        self.ti_states: dict[tuple[str, int], list[str | None]] = {}
        self.ti_try: dict[tuple[str, int], int] = {}
        self.ti_triggers: dict[tuple[str, int], set[int]] = {}
        self.triggers: dict[int, dict[str, Any]] = {}
        self.key_in_trigger_kwargs: set[int] = set()
        self.key_in_redis: set[str] = set()
        self.redis_scans = 0
        self.redis_keys_seen = 0
        self.peak_triggers = 0  # trigger rows at once (waiting tasks)
        self.peak_held = 0  # triggers held by one triggerer at once
        self.peak_rss_session = 0  # bytes, one triggerer's whole session (supervisor + runner + log server)
        self.peak_rss_process = 0  # bytes, the largest single triggerer process
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._conn: Any = None
        self._last_redis = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for step in (self.sample_db, self.sample_rss, self.maybe_scan_redis):
                try:
                    step()
                except Exception as exc:  # a DB restart, a vanished process: next tick
                    self.errors.append(f"{step.__name__}: {exc!r}")
                    del self.errors[:-20]
                    if step == self.sample_db and self._conn is not None:
                        with contextlib.suppress(Exception):
                            self._conn.close()
                        self._conn = None
            self._stop.wait(self.interval)

    def sample_db(self) -> None:
        if self._conn is None:
            self._conn = self.cluster.connect_db()
        now = time.time()
        with self._conn.cursor() as cursor:
            tis: list[tuple[Any, ...]] = []
            if self.run_id is not None:
                cursor.execute(
                    "SELECT task_id, map_index, state, try_number, trigger_id FROM task_instance"
                    " WHERE dag_id = %s AND run_id = %s",
                    (DAG_ID, self.run_id),
                )
                tis = cursor.fetchall()
            cursor.execute("SELECT id, triggerer_id, kwargs FROM trigger")
            triggers = cursor.fetchall()
        with self._lock:
            for task_id, map_index, state, try_number, trigger_id in tis:
                key = (task_id, int(map_index))
                history = self.ti_states.setdefault(key, [])
                if not history or history[-1] != state:
                    history.append(state)
                self.ti_try[key] = max(self.ti_try.get(key, 0), int(try_number or 0))
                if trigger_id is not None:
                    self.ti_triggers.setdefault(key, set()).add(int(trigger_id))
            self.peak_triggers = max(self.peak_triggers, len(triggers))
            held = Counter(row[1] for row in triggers if row[1] is not None)
            self.peak_held = max(self.peak_held, max(held.values(), default=0))
            for trigger_id, triggerer_id, kwargs in triggers:
                entry = self.triggers.get(int(trigger_id))
                if entry is None:
                    entry = self.triggers[int(trigger_id)] = self._new_trigger(int(trigger_id), kwargs, now)
                entry["last_seen"] = now
                entry["triggerer_id"] = triggerer_id
                if triggerer_id is not None:
                    entry["held_by"].setdefault(int(triggerer_id), now)

    def _new_trigger(self, trigger_id: int, kwargs: str, now: float) -> dict[str, Any]:
        entry: dict[str, Any] = {"first_seen": now, "held_by": {}, "deadline": None}
        try:
            text = self.cluster.decrypt(kwargs)
        except Exception as exc:
            self.errors.append(f"trigger {trigger_id} kwargs unreadable: {exc!r}")
            return entry
        if self.needle in text.encode():
            self.key_in_trigger_kwargs.add(trigger_id)
        with contextlib.suppress(ValueError):
            entry["deadline"] = _find_number(json.loads(text), "deadline")
        return entry

    def sample_rss(self) -> None:
        import psutil

        for name, component in list(self.cluster.components.items()):
            if not name.startswith("triggerer-"):
                continue
            total = 0
            for pid in component.pids():
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(pid).memory_info().rss
                    total += rss
                    self.peak_rss_process = max(self.peak_rss_process, rss)
            self.peak_rss_session = max(self.peak_rss_session, total)

    def maybe_scan_redis(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_redis < 10:
            return
        self._last_redis = time.monotonic()
        found, keys = scan_redis(self.cluster, self.needle)
        with self._lock:
            self.redis_scans += 1
            self.redis_keys_seen += keys
            self.key_in_redis.update(found)

    # -- reading what was sampled ----------------------------------------------------------------

    def states(self, task_id: str) -> dict[int, list[str | None]]:
        with self._lock:
            return {m: list(h) for (t, m), h in self.ti_states.items() if t == task_id}

    def trigger_ids_of(self, task_id: str) -> set[int]:
        with self._lock:
            return {i for (t, _), ids in self.ti_triggers.items() if t == task_id for i in ids}

    def held_by(self, triggerer_job_id: int) -> set[int]:
        """Triggers this triggerer holds now (as last sampled)."""
        with self._lock:
            now = max((e["last_seen"] for e in self.triggers.values()), default=0)
            return {
                i
                for i, e in self.triggers.items()
                if e["triggerer_id"] == triggerer_job_id and e["last_seen"] >= now - 0.01
            }

    def trigger(self, trigger_id: int) -> dict[str, Any]:
        with self._lock:
            entry = self.triggers.get(trigger_id, {})
            return {**entry, "held_by": dict(entry.get("held_by", {}))}


def _first_error(text: str) -> str | None:
    """What a try died of, from its task log: the first exception logged, shortened."""
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        details = record.get("error_detail") or []
        if record.get("level") == "error" and details and isinstance(details[0], dict):
            value = str(details[0].get("exc_value"))
            # Generation ids differ from task to task: leave them out so equal reasons add up.
            value = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", value)
            return f"{details[0].get('exc_type')}: {value[:110]}"
    return None


def _find_number(value: Any, key: str) -> float | None:
    """The first number stored under ``key`` anywhere in a (serialised) structure."""
    if isinstance(value, dict):
        if key in value:
            found = value[key]
            if isinstance(found, (int, float)) and not isinstance(found, bool):
                return float(found)
            inner = _find_number(found, key) if isinstance(found, (dict, list)) else None
            if inner is None and isinstance(found, dict):
                for v in found.values():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        return float(v)
            if inner is not None:
                return inner
        for child in value.values():
            found_child = _find_number(child, key)
            if found_child is not None:
                return found_child
    elif isinstance(value, list):
        for child in value:
            found_child = _find_number(child, key)
            if found_child is not None:
                return found_child
    return None


def scan_redis(cluster: ProductionCluster, needle: bytes) -> tuple[set[str], int]:
    """Every Redis key (``SCAN``) and its value(s), searched for ``needle``: (keys holding it, keys seen)."""
    client = cluster.redis_client()
    found: set[str] = set()
    seen = 0
    try:
        for key in client.scan_iter(count=500):
            seen += 1
            kind = client.type(key).decode()
            values: list[bytes] = [key]
            if kind == "string":
                values.append(client.get(key) or b"")
            elif kind == "list":
                values += client.lrange(key, 0, -1)
            elif kind == "hash":
                for field_name, value in client.hgetall(key).items():
                    values += [field_name, value]
            elif kind == "set":
                values += list(client.smembers(key))
            elif kind == "zset":
                values += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            if any(needle in v for v in values if isinstance(v, bytes)):
                found.add(key.decode(errors="replace"))
    finally:
        client.close()
    return found, seen


# -- chaos -----------------------------------------------------------------------------------------


class _Faults(EmulatorControl):
    def faults(self) -> list[dict[str, Any]]:
        response = self._http.get("/_emulator/faults")
        response.raise_for_status()
        return list(response.json()["faults"])


class Chaos:
    """Arms a 429 on an enqueue and a 503 on a queue read every ``fault_every`` s; cuts SSE streams."""

    def __init__(self, emulator: _Faults, config: SoakConfig) -> None:
        self.emulator = emulator
        self.config = config
        self.armed = Counter[str]()
        self.drops = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        next_fault = next_drop = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_fault:
                    next_fault = now + self.config.fault_every
                    # One of each at a time: while nobody reads the queue (no triggerer), an
                    # unconsumed fault is not re-armed, so faults never pile up into a burst.
                    armed = {(f.get("status"), f.get("method")) for f in self.emulator.faults()}
                    if (429, "POST") not in armed:
                        self.emulator.fault(
                            type="status", status=429, retry_after=1, method="POST", path="^/api/ai/queue$"
                        )
                        self.armed["429 enqueue"] += 1
                    if (503, "GET") not in armed:
                        self.emulator.fault(type="status", status=503, method="GET", path="^/api/ai/queue")
                        self.armed["503 queue read"] += 1
                if now >= next_drop:
                    next_drop = now + self.config.sse_drop_every
                    self.emulator.drop_streams()
                    self.drops += 1
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
            self._stop.wait(0.5)


# -- the soak ----------------------------------------------------------------------------------------


def soak_env(config: SoakConfig, soak_dir: Path) -> dict[str, str]:
    return {
        "OXEN_SOAK_DIR": str(soak_dir),
        "OXEN_SOAK_TASKS": str(config.tasks),
        "OXEN_SOAK_IMAGES": str(config.images_per_task),
        "OXEN_SOAK_FLAKY": str(config.flaky),
        "OXEN_SOAK_LATE": str(config.late),
        "OXEN_SOAK_KILL_WINDOW": ",".join(str(i) for i in config.kill_window),
        "OXEN_SOAK_LATE_TIMEOUT": str(config.late_timeout),
        "OXEN_SOAK_STALL_TIMEOUT": str(config.stall_timeout),
        "OXEN_SOAK_POLL_INTERVAL": str(config.poll_interval),
    }


def run_soak_cluster(config: SoakConfig) -> SoakReport:
    """Start a cluster, run the soak on it, stop it, and check nothing it started is left."""
    api_key = f"oxen-soak-{secrets.token_hex(16)}"  # unique: searched for everywhere afterwards
    soak_dir = Path(tempfile.mkdtemp(prefix="oxen-soak-"))
    for sub in ("enqueueing", "kill-window"):
        (soak_dir / sub).mkdir()
    report = SoakReport(config)
    started = time.monotonic()
    cluster = ProductionCluster(
        api_key,
        dags=[SOAK_DAGS],
        env_extra=soak_env(config, soak_dir),
        workers=config.workers,
        worker_concurrency=config.worker_concurrency,
        triggerers=config.triggerers,
        render_seconds=config.render_seconds,
        queue_seconds=config.queue_seconds,
        expect_dags=[DAG_ID],
        keep=config.keep,
    )
    try:
        with cluster:
            report.figures["cluster start-up"] = f"{time.monotonic() - started:.0f} s"
            run_soak(cluster, config, soak_dir, api_key, report)
            if report.violations:
                cluster.print_log_tails(20)
        strays = cluster.stray_processes()
        report.figures["processes left after stop"] = len(strays)
        report.check(not strays, f"processes left after the cluster stopped: {strays}")
    finally:
        shutil.rmtree(soak_dir, ignore_errors=True)
    report.figures["soak total (start-up to stopped)"] = f"{time.monotonic() - started:.0f} s"
    return report


def run_soak(
    cluster: ProductionCluster, config: SoakConfig, soak_dir: Path, api_key: str, report: SoakReport
) -> None:
    emulator = _Faults(cluster.emulator_url)
    emulator.fault(
        type="generation_failure", model=FLAKY_MODEL, error_message=FAILURE_TEXT, count=config.failures
    )
    emulator.fault(type="stall_generation", model=STALL_MODEL, count=1)
    sampler = Sampler(cluster, api_key)
    sampler.start()
    chaos = Chaos(emulator, config)
    soak = _Soak(cluster, config, soak_dir, emulator, sampler, report)
    try:
        cluster.unpause(DAG_ID)
        started = time.monotonic()
        run_id = cluster.trigger(DAG_ID)
        sampler.run_id = run_id
        soak.run_id = run_id
        chaos.start()
        log(f"soak run {run_id}: {config.task_count} tasks, {config.images_requested} images")
        soak.kill_a_worker()
        soak.kill_a_triggerer()
        soak.late_triggerers()
        state = soak.wait_for_run(started + config.timeout)
        wall = time.monotonic() - started
    finally:
        chaos.stop()
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{cluster.emulator_url}/_emulator/faults", timeout=10)
    soak.settle()
    sampler.sample_db()
    sampler.maybe_scan_redis(force=True)
    sampler.stop()
    report.figures["run state"] = state
    report.figures["wall time (trigger to run end)"] = f"{wall:.0f} s"
    for check in (soak.check_tasks, lambda: soak.check_money(api_key), lambda: soak.check_faults(chaos)):
        try:
            check()
        except Exception as exc:  # a check that cannot run is a broken invariant, not a crash
            report.violations.append(f"a check could not run: {exc!r}")
    soak.check_key(api_key)
    report.figures["peak triggerer RSS"] = (
        f"{sampler.peak_rss_process / 2**20:.0f} MB largest process, "
        f"{sampler.peak_rss_session / 2**20:.0f} MB whole triggerer (supervisor + runner + log server); "
        f"at most {sampler.peak_triggers} triggers at once, {sampler.peak_held} held by one triggerer"
    )
    if sampler.errors:
        report.notes.append(f"sampler errors (retried): {sampler.errors[-3:]}")
    emulator.close()


class _Soak:
    """The phases and the checks, sharing the cluster, the sampler and the report."""

    def __init__(
        self,
        cluster: ProductionCluster,
        config: SoakConfig,
        soak_dir: Path,
        emulator: EmulatorControl,
        sampler: Sampler,
        report: SoakReport,
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.dir = soak_dir
        self.emulator = emulator
        self.sampler = sampler
        self.report = report
        self.run_id = ""
        self.killed_tis: set[tuple[str, int]] = set()
        self.kill_window_killed: list[int] = []
        self.outage_end = 0.0
        self.late_deadlines: dict[int, float] = {}
        self.stalled_succeeded = False
        self.flaky_failed: set[int] = set()

    # -- phases ----------------------------------------------------------------------------------

    def kill_a_worker(self) -> None:
        """SIGKILL the Celery worker running a kill-window task, outside any enqueue."""
        windows = self.dir / "kill-window"
        deadline = time.monotonic() + 300
        while not any(windows.iterdir()):
            self._check(deadline, "no kill-window task reached its window")
            time.sleep(0.3)
        time.sleep(3)  # let the other kill-window tasks arrive
        waiting = {int(p.name): int(p.read_text()) for p in windows.iterdir()}
        first = min(waiting)
        victim = self.cluster.component_of_pid(waiting[first])
        if victim is None:
            self.report.violations.append(f"kill-window task {first} (pid {waiting[first]}) is in no worker")
            (self.dir / "release").touch()
            return
        (self.dir / "freeze").touch()
        freeze_started = time.monotonic()
        while self._enqueueing_in(victim) and time.monotonic() - freeze_started < 60:
            time.sleep(0.1)
        held = time.monotonic() - freeze_started
        running = self.cluster.query(
            "SELECT task_id, map_index, pid FROM task_instance WHERE dag_id = %s AND run_id = %s"
            " AND state = 'running'",
            (DAG_ID, self.run_id),
        )
        pids = self.cluster.kill(victim)
        (self.dir / "freeze").unlink()
        (self.dir / "release").touch()
        pid_set = set(pids)
        self.killed_tis = {(t, int(m)) for t, m, pid in running if pid in pid_set}
        self.kill_window_killed = sorted(m for m, pid in waiting.items() if pid in pid_set)
        replacement = self.cluster.spawn("worker")
        log(
            f"SIGKILLed {victim} ({len(pids)} processes) with kill-window task(s) "
            f"{self.kill_window_killed} and {len(self.killed_tis)} running task(s); "
            f"enqueues held back {held:.1f} s; started {replacement}"
        )
        self.report.figures["worker SIGKILLed"] = (
            f"{victim}: {len(pids)} processes, {len(self.killed_tis)} running task(s) incl. kill-window "
            f"{self.kill_window_killed}; {replacement} started"
        )

    def _enqueueing_in(self, component: str) -> list[str]:
        busy = []
        for marker in (self.dir / "enqueueing").iterdir():
            with contextlib.suppress(FileNotFoundError, ValueError):
                if self.cluster.component_of_pid(int(marker.read_text())) == component:
                    busy.append(marker.name)
        return busy

    def kill_a_triggerer(self) -> None:
        """SIGKILL the triggerer holding the most waiting triggers; the other must take them over."""
        want = max(1, min(10, self.config.tasks // 4))
        deadline = time.monotonic() + 240
        best, held = "", set[int]()
        while True:
            for name in self.cluster.triggerer_names():
                job = self.cluster.components[name].job_id
                ids = self.sampler.held_by(job) if job is not None else set()
                if len(ids) > len(held):
                    best, held = name, ids
            if len(held) >= want or (held and time.monotonic() > deadline - 180):
                break
            self._check(deadline, "no triggerer ever held a waiting trigger")
            time.sleep(0.5)
            best, held = "", set()
        time.sleep(1)
        victim_job = self.cluster.components[best].job_id
        assert victim_job is not None
        held = self.sampler.held_by(victim_job) or held
        self.cluster.kill(best)
        killed_at = time.time()
        log(f"SIGKILLed {best} (job {victim_job}) holding {len(held)} trigger(s)")
        survivors = {self.cluster.components[n].job_id for n in self.cluster.triggerer_names()}
        deadline = time.monotonic() + 120
        taken: dict[int, float] = {}
        while time.monotonic() < deadline:
            for trigger_id in held - taken.keys():
                entry = self.sampler.trigger(trigger_id)
                later = [t for job, t in entry.get("held_by", {}).items() if job in survivors]
                if later:
                    taken[trigger_id] = min(later) - killed_at
                elif entry.get("last_seen", 0) < time.time() - 3 and entry.get("last_seen", 0) > killed_at:
                    taken[trigger_id] = float("nan")  # gone: fired by a survivor between two samples
            if len(taken) == len(held):
                break
            time.sleep(0.5)
        slowest = max((t for t in taken.values() if t == t), default=float("nan"))
        self.report.figures["triggerer SIGKILLed"] = (
            f"{best} holding {len(held)} waiting trigger(s); {len(taken)} taken over by the other, "
            f"the last {slowest:.0f} s after the kill"
        )
        self.report.check(
            len(taken) == len(held),
            f"{len(held) - len(taken)} trigger(s) of the SIGKILLed {best} were never taken over",
        )

    def late_triggerers(self) -> None:
        """No triggerer while the late tasks defer and their deadline passes; then two start."""
        stopped = []
        for name in self.cluster.triggerer_names():
            took = self.cluster.terminate(name)
            stopped.append(f"{name} ({took:.0f} s)")
        outage_start = time.time()
        log(f"no triggerer running (SIGTERMed {', '.join(stopped)}); opening the late gate")
        (self.dir / "late-go").touch()
        deadline = time.monotonic() + 300
        while True:
            late = self.sampler.states("late")
            deferred = [m for m, h in late.items() if h and h[-1] == "deferred"]
            if len(deferred) == self.config.late:
                break
            self._check(deadline, f"late tasks never all deferred: {late}")
            time.sleep(0.5)
        for trigger_id in self.sampler.trigger_ids_of("late"):
            entry = self.sampler.trigger(trigger_id)
            if entry.get("deadline") is not None:
                self.late_deadlines[trigger_id] = float(entry["deadline"])
        self.report.check(
            len(self.late_deadlines) == self.config.late,
            f"late triggers' deadlines not all readable: {self.late_deadlines}",
        )
        last = max(self.late_deadlines.values(), default=time.time() + self.config.late_timeout)
        while time.time() < last + 3:
            time.sleep(0.5)
        self.outage_end = time.time()
        started = [self.cluster.spawn("triggerer") for _ in range(self.config.triggerers)]
        log(f"started {', '.join(started)} after {self.outage_end - outage_start:.0f} s without a triggerer")
        self.report.figures["triggerer outage"] = (
            f"{self.outage_end - outage_start:.0f} s with no triggerer ({', '.join(stopped)} SIGTERMed); "
            f"{', '.join(started)} started {self.outage_end - last:.0f} s after the last late deadline"
        )

    def wait_for_run(self, deadline: float) -> str:
        last_print = 0.0
        while True:
            state = self.cluster.run_state(DAG_ID, self.run_id)
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                self.report.violations.append(f"the run did not finish in {self.config.timeout:.0f} s")
                return state
            if time.monotonic() - last_print > 20:
                last_print = time.monotonic()
                counts = Counter(
                    r[0]
                    for r in self.cluster.query(
                        "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                        (DAG_ID, self.run_id),
                    )
                )
                log(f"run {state}: {dict(counts)}")
            self.cluster._check_alive()
            time.sleep(1)

    def settle(self) -> None:
        """Give the emulator a moment to finish what is legitimately finishing (nothing should be)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.emulator.stats()["generations_in_flight"]:
            time.sleep(1)

    def _check(self, deadline: float, message: str) -> None:
        self.cluster._check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(message)

    # -- checks ----------------------------------------------------------------------------------

    def _final_tis(self) -> dict[tuple[str, int], tuple[str | None, int]]:
        rows = self.cluster.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s",
            (DAG_ID, self.run_id),
        )
        return {(t, int(m)): (s, int(n or 0)) for t, m, s, n in rows}

    def check_tasks(self) -> None:
        config, report = self.config, self.report
        tis = self._final_tis()
        by_task: dict[str, Counter[str | None]] = {}
        for (task_id, _), (state, _) in tis.items():
            by_task.setdefault(task_id, Counter())[state] += 1
        expected = {
            "generate": config.tasks,
            "flaky": config.flaky,
            "late": config.late,
            "open_late_gate": 1,
        }
        for task_id, count in expected.items():
            got = by_task.get(task_id, Counter())
            report.check(
                got == Counter({"success": count}), f"{task_id}: expected {count} success, got {dict(got)}"
            )
        stalled_state = tis.get(("stalled", -1), (None, 0))[0]
        report.check(
            stalled_state in ("success", "failed"),
            f"stalled: expected success (after its replacement) or failed, got {stalled_state}",
        )
        self.stalled_succeeded = stalled_state == "success"
        succeeded = sum(c["success"] for t, c in by_task.items() if t != "open_late_gate")
        failed = sum(c["failed"] for t, c in by_task.items())
        retried = sorted(f"{t}[{m}]" for (t, m), (_, n) in tis.items() if n > 1)
        report.figures["tasks (mapped generate tasks)"] = (
            f"{config.task_count}: {config.tasks} generate x {config.images_per_task} images, "
            f"{config.flaky} flaky x 2, 1 stalled, {config.late} late"
        )
        report.figures["tasks succeeded / failed"] = f"{succeeded} / {failed}"
        report.figures["tasks that needed a retry"] = f"{len(retried)}: {', '.join(retried[:12])}" + (
            " …" if len(retried) > 12 else ""
        )
        reasons: Counter[str] = Counter()
        for (task_id, map_index), (state, tries) in sorted(tis.items()):
            if tries <= 1 and state == "success":
                continue
            attempts = self.cluster.task_attempts(DAG_ID, self.run_id, task_id, map_index)
            why = []
            for number, text in attempts.items():
                if number == tries and state == "success":
                    continue
                error = _first_error(text)
                why.append(
                    error or "no error in the task log: killed with its worker, or failed in its supervisor"
                )
            reasons.update(why)
            if state != "success" and task_id != "stalled":
                report.notes.append(f"{task_id}[{map_index}] ended {state} after {tries} tries: {why}")
        if reasons:
            report.figures["why tries failed"] = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(8))

        stalled_log = self.cluster.task_log(DAG_ID, self.run_id, "stalled")
        timed_out = "OxenGenerationTimeoutError" in stalled_log
        report.check(timed_out, "stalled task's log does not name the timeout")
        report.figures["stalled generation"] = (
            "cancelled at the task's timeout; that try failed with OxenGenerationTimeoutError in its log; "
            + ("the retry's replacement succeeded" if self.stalled_succeeded else "the task failed for good")
            if timed_out
            else "reason NOT in the stalled task's log"
        )
        for map_index in range(config.flaky):
            text = self.cluster.task_log(DAG_ID, self.run_id, "flaky", map_index)
            if FAILURE_TEXT in text and "OxenGenerationFailedError" in text:
                self.flaky_failed.add(map_index)
        report.figures["flaky tasks: a try failed upstream"] = (
            f"{len(self.flaky_failed)} task(s), '{FAILURE_TEXT}' in the failed try's log; "
            "their retries replaced only the failed generation(s)"
        )

        # A task seen running just before the kill may have finished deferring before the
        # SIGKILL landed (it then resumes on the same try): only its final state is checked.
        for key in sorted(self.killed_tis):
            state, tries = tis.get(key, (None, 0))
            report.check(state == "success", f"{key} running on the killed worker ended {state}")
        for map_index in self.kill_window_killed:
            state, tries = tis.get(("generate", map_index), (None, 0))
            report.check(
                tries >= 2, f"generate[{map_index}] was SIGKILLed in its kill window yet shows try {tries}"
            )
            text = self.cluster.task_log(DAG_ID, self.run_id, "generate", map_index)
            report.check(
                "Resuming" in text and "Oxen generation(s) enqueued by an earlier try" in text,
                f"generate[{map_index}] (killed in its kill window) did not resume its generations",
            )
        report.check(bool(self.kill_window_killed), "no kill-window task was on the killed worker")

        late_ok = 0
        for trigger_id, deadline in sorted(self.late_deadlines.items()):
            entry = self.sampler.trigger(trigger_id)
            first_hold = min(entry.get("held_by", {}).values(), default=None)
            if first_hold is not None and first_hold > deadline:
                late_ok += 1
            else:
                report.violations.append(f"late trigger {trigger_id} was held before its deadline ({entry})")
        late_logs = [self.cluster.task_log(DAG_ID, self.run_id, "late", m) for m in range(config.late)]
        late_timeouts = sum("OxenGenerationTimeoutError" in text for text in late_logs)
        report.check(
            late_ok == config.late, f"only {late_ok}/{config.late} late triggers were picked up late"
        )
        report.check(
            late_timeouts == 0, f"{late_timeouts} late task(s) timed out instead of collecting results"
        )
        report.figures["late: picked up after their deadline"] = (
            f"{late_ok}/{config.late} triggers first held by a triggerer after their deadline; "
            f"{config.late - late_timeouts}/{config.late} collected their finished images (no timeout)"
        )

    def _history(self, api_key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with httpx.Client(
            base_url=self.cluster.emulator_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as client:
            offset = 0
            while True:
                page = client.get("/api/ai/generations", params={"limit": 100, "offset": offset})
                page.raise_for_status()
                batch = page.json()["generations"]
                rows += batch
                offset += len(batch)
                if not batch or offset >= page.json()["count"]:
                    return rows

    def _xcom_ids(self) -> list[str]:
        rows = self.cluster.query(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'return_value'",
            (DAG_ID, self.run_id),
        )
        ids: list[str] = []
        for (value,) in rows:
            while isinstance(value, (str, bytes)):
                value = json.loads(value)
            for item in value or []:
                if isinstance(item, dict) and item.get("generation_id"):
                    ids.append(item["generation_id"])
        return ids

    def check_money(self, api_key: str) -> None:
        config, report = self.config, self.report
        stats = self.emulator.stats()
        history = self._history(api_key)
        status = Counter(g["status"] for g in history)
        requested = config.images_requested
        failed = [g for g in history if g["status"] == "failed"]
        paid = {g["generation_id"] for g in history if g["status"] == "succeeded"}
        xcom = self._xcom_ids()
        left = status["queued"] + status["processing"]

        replacements = config.failures + (1 if self.stalled_succeeded else 0)
        delivered = requested - (0 if self.stalled_succeeded else 1)
        report.figures["images requested"] = requested
        report.figures["generations created"] = (
            f"{len(history)} = {requested} requested + {len(history) - requested} replacement(s) "
            f"(expected {replacements}: {config.failures} upstream failures"
            + (", 1 stalled)" if self.stalled_succeeded else ")")
        )
        report.figures["generations paid (succeeded)"] = (
            f"{len(paid)} for {len(xcom)} images delivered in XCom; credits spent {stats['credits_spent']}"
        )
        report.figures["generations failed upstream / cancelled"] = (
            f"{status['failed']} / {status['cancelled']} (failed and cancelled ones are not billed)"
        )
        report.figures["generations left queued/processing"] = left
        report.check(len(history) == stats["generations_created"], "history and counters disagree")
        report.check(
            len(history) == requested + replacements,
            f"created {len(history)} != {requested} requested + {replacements} replacements",
        )
        report.check(len(paid) == delivered, f"paid {len(paid)} != {delivered} images delivered")
        report.check(len(xcom) == len(set(xcom)), "a generation id appears in two XCom results")
        report.check(
            set(xcom) == paid,
            f"paid but not delivered: {sorted(paid - set(xcom))[:5]}; "
            f"delivered but not paid: {sorted(set(xcom) - paid)[:5]}",
        )
        report.check(
            status["failed"] == config.failures,
            f"failed generations {status['failed']} != {config.failures}",
        )
        report.check(
            all(g["model_name"] == FLAKY_MODEL and g.get("error_message") == FAILURE_TEXT for g in failed),
            "a failed generation is not one of the injected upstream failures",
        )
        failed_tasks = {int(g["prompt"].split()[2].rstrip(",")) for g in failed}
        report.check(
            failed_tasks == self.flaky_failed,
            f"flaky tasks with upstream failures {sorted(failed_tasks)} != those whose log says so "
            f"{sorted(self.flaky_failed)}",
        )
        report.check(
            status["cancelled"] == 1, f"cancelled generations {status['cancelled']} != 1 (the stalled one)"
        )
        cancelled = [g for g in history if g["status"] == "cancelled"]
        report.check(
            all(g["model_name"] == STALL_MODEL for g in cancelled),
            "a generation other than the stalled one was cancelled",
        )
        report.check(left == 0, f"{left} generation(s) left queued/processing")
        by_prompt = Counter(g["prompt"] for g in history if g["model_name"] == FLAKY_MODEL)
        failed_by_prompt = Counter(g["prompt"] for g in failed)
        for prompt, count in by_prompt.items():
            report.check(
                count == 2 + failed_by_prompt[prompt],
                f"flaky prompt {prompt!r}: {count} generations for 2 images"
                f" and {failed_by_prompt[prompt]} failure(s)",
            )
        per_route = {k: v for k, v in stats.items() if k.startswith(("GET ", "POST ", "DELETE "))}
        report.figures["requests to the Oxen API"] = (
            f"{stats['requests_total']} ({stats['requests_total'] / requested:.2f} per image)"
        )
        report.figures["  by route"] = ", ".join(
            f"{k} {v}" for k, v in sorted(per_route.items(), key=lambda kv: -kv[1])
        )

    def check_faults(self, chaos: Chaos) -> None:
        entries = self.emulator.requests()
        statuses = Counter(e.get("status") for e in entries)
        self.report.figures["faults served"] = (
            f"{statuses.get(429, 0)} x 429, {statuses.get(503, 0)} x 503, {chaos.drops} SSE cuts "
            f"(every {self.config.sse_drop_every:g} s), {self.config.failures} upstream failures, 1 stall"
        )
        self.report.check(
            statuses.get(429, 0) > 0 and statuses.get(503, 0) > 0, f"no 429/503 served: {statuses}"
        )

    def check_key(self, api_key: str) -> None:
        needle = api_key.encode()
        in_files = []
        scanned = 0
        for path in self.cluster.files():
            with contextlib.suppress(OSError):
                scanned += 1
                if needle in path.read_bytes():
                    in_files.append(str(path))
        dump = self.cluster.pg_dump()
        in_dump = dump.count(needle)
        places = (
            len(in_files) + in_dump + len(self.sampler.key_in_trigger_kwargs) + len(self.sampler.key_in_redis)
        )
        self.report.figures["API key found"] = (
            f"{places} place(s): {len(in_files)} of {scanned} files (logs, task/trigger logs, emulator log), "
            f"{in_dump} in pg_dump ({len(dump) // 1024} KiB), {len(self.sampler.key_in_trigger_kwargs)} of "
            f"{len(self.sampler.triggers)} trigger kwargs, {len(self.sampler.key_in_redis)} of "
            f"{self.sampler.redis_keys_seen} Redis keys/values ({self.sampler.redis_scans} scans)"
        )
        self.report.check(not in_files, f"API key in files: {in_files[:10]}")
        self.report.check(in_dump == 0, f"API key {in_dump} time(s) in pg_dump")
        self.report.check(not self.sampler.key_in_trigger_kwargs, "API key in trigger kwargs")
        self.report.check(
            not self.sampler.key_in_redis, f"API key in Redis: {sorted(self.sampler.key_in_redis)[:5]}"
        )


def default_config_from_env() -> SoakConfig:
    """The CI-sized soak, overridable with OXEN_SOAK_* variables (for experiments)."""
    config = SoakConfig()
    for name, cast in (("tasks", int), ("images_per_task", int), ("render_seconds", float)):
        value = os.environ.get(f"OXEN_SOAK_{name.upper()}")
        if value:
            setattr(config, name, cast(value))
    return config
