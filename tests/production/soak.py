"""The chaos soak: the soak DAG on the production-shaped cluster, faults and kills, then the invariants.

Timeline (every wait is bounded): the run starts with faults armed (upstream failures of the
flaky model, a stalled generation; until the run ends a 429 on an enqueue and a 503 on a queue
read every few seconds, every SSE stream cut every few seconds); a Celery worker is SIGKILLed
while a kill-window task sits between its recorded enqueue and its deferral (new enqueues are
held back meanwhile, so no task dies mid-enqueue) and a replacement starts; the triggerer
holding the most waiting triggers is SIGKILLed; the other is stopped (SIGTERM), the ``late``
tasks defer with no triggerer running, and two triggerers start once their deadline passed.
Then every invariant listed in docs/deployment.md ("Proof: the chaos soak") is checked, and
each broken one is reported.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import Cluster, log
from tests.fixtures import EmulatorControl

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "oxen_chaos_soak"
FLAKY_MODEL = "black-forest-labs-flux-2-klein-4b"
STALL_MODEL = "nano-banana-2"
FAILURE_TEXT = "Upstream GPU fault injected by the soak"


FLAKY = 3  # tasks of 2 images on the flaky model (the DAG's default)
FAILURES = 3  # generations of the flaky model that fail upstream
LATE = 4  # late tasks (the DAG's default)
TRIGGERERS = 2
FAULT_EVERY = 3.0  # seconds between a 429 and a 503 armed
SSE_DROP_EVERY = 4.0  # seconds between two cuts of every event stream


@dataclass
class SoakConfig:
    tasks: int = 32  # mapped ``generate`` tasks (the CI size; `make soak` runs 320)
    images_per_task: int = 2
    render_seconds: float = 8.0
    workers: int = 2
    worker_concurrency: int = 8
    timeout: float = 1800.0  # the DAG run, from trigger to finish
    keep: bool = False

    @property
    def images_requested(self) -> int:
        return self.tasks * self.images_per_task + FLAKY * 2 + 1 + LATE

    @property
    def task_count(self) -> int:
        return self.tasks + FLAKY + 1 + LATE

    def env(self, soak_dir: Path) -> dict[str, str]:
        """What the soak DAG reads, and the Airflow settings a crash needs to be recovered quickly."""
        return {
            "OXEN_SOAK_DIR": str(soak_dir),
            "OXEN_SOAK_TASKS": str(self.tasks),
            "OXEN_SOAK_IMAGES": str(self.images_per_task),
            "OXEN_SOAK_KILL_WINDOW": "1,2",  # stop after the enqueue, wait to be SIGKILLed
            # A killed worker's tasks stop heartbeating: fail them (for a retry) after 20 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            # A task a killed worker had received but not started stays "queued" (no heartbeat
            # to miss): the scheduler re-queues it after this (default 600 s).
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
            # A SIGKILLed triggerer's triggers go to a healthy one after this many seconds.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        }


@dataclass
class SoakReport:
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
        width = max((len(k) for k in self.figures), default=10)
        lines = ["", "=" * 78, "Chaos soak on PostgreSQL + Redis + CeleryExecutor + 2 triggerers", "=" * 78]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.figures.items()]
        lines += ["", "notes:", *[f"  - {n}" for n in self.notes]] if self.notes else []
        if self.violations:
            lines += [
                "",
                f"INVARIANTS BROKEN ({len(self.violations)}):",
                *[f"  ✗ {v}" for v in self.violations],
            ]
        else:
            lines += ["", "all invariants held"]
        return "\n".join([*lines, "=" * 78])


def run_soak_cluster(config: SoakConfig) -> SoakReport:
    """Start a cluster, run the soak on it, stop it, and check nothing it started is left."""
    api_key = f"oxen-soak-{secrets.token_hex(16)}"  # unique: searched for everywhere afterwards
    soak_dir = Path(tempfile.mkdtemp(prefix="oxen-soak-"))
    for sub in ("enqueueing", "kill-window"):
        (soak_dir / sub).mkdir()
    report = SoakReport()
    started = time.monotonic()
    cluster = Cluster(
        executor="CeleryExecutor",
        dags=[DAGS],
        env=config.env(soak_dir),
        api_key=api_key,
        render_seconds=config.render_seconds,
        workers=config.workers,
        worker_concurrency=config.worker_concurrency,
        triggerers=TRIGGERERS,
        expect_dags=[DAG_ID],
        keep=config.keep,
    )
    try:
        with cluster:
            report.figures["cluster start-up"] = f"{time.monotonic() - started:.0f} s"
            Soak(cluster, config, soak_dir, report).run()
            if report.violations:
                cluster.print_log_tails(20)
        report.figures["processes left after stop"] = len(cluster.strays)
        report.check(not cluster.strays, f"processes left after the cluster stopped: {cluster.strays}")
    finally:
        shutil.rmtree(soak_dir, ignore_errors=True)
    report.figures["soak total (start-up to stopped)"] = f"{time.monotonic() - started:.0f} s"
    return report


def _first_error(text: str) -> str | None:
    """What a try died of, from its task log: the first exception logged, shortened."""
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line) if line.startswith("{") else {}
            details = record.get("error_detail") or [{}]
            if record.get("level") == "error" and isinstance(details[0], dict) and details[0]:
                # Generation ids differ from task to task: leave them out so equal reasons add up.
                value = re.sub(
                    r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", str(details[0].get("exc_value"))
                )
                return f"{details[0].get('exc_type')}: {value[:110]}"
    return None


class Soak:
    """The chaos (run by the cluster's watcher thread), the phases and the checks of one soak run."""

    def __init__(self, cluster: Cluster, config: SoakConfig, soak_dir: Path, report: SoakReport) -> None:
        self.cluster = cluster
        self.config = config
        self.dir = soak_dir
        self.report = report
        self.emulator = EmulatorControl(cluster.emulator_url)
        self.watcher = cluster.watcher
        self.needle = cluster.api_key.encode()
        self.run_id = ""
        self.next_fault = self.next_drop = self.next_redis_scan = 0.0
        self.drops = 0
        self.peak_rss_session = self.peak_rss_process = 0  # bytes: a triggerer's session, one process
        self.redis_scans = self.redis_keys_seen = 0
        self.key_in_redis: set[str] = set()
        self.killed_tis: set[tuple[str, int]] = set()
        self.kill_window_killed: list[int] = []
        self.late_deadlines: dict[int, float] = {}
        self.stalled_succeeded = False
        self.flaky_failed: set[int] = set()

    def run(self) -> None:
        config, report, cluster = self.config, self.report, self.cluster
        fault = {"type": "generation_failure", "model": FLAKY_MODEL, "error_message": FAILURE_TEXT}
        self.emulator.fault(**fault, count=FAILURES)
        self.emulator.fault(type="stall_generation", model=STALL_MODEL, count=1)
        self.watcher.hooks += [self.sample_rss, self.scan_redis, self.chaos]
        try:
            started = time.monotonic()
            self.run_id = cluster.trigger(DAG_ID)
            log(f"soak run {self.run_id}: {config.task_count} tasks, {config.images_requested} images")
            self.kill_a_worker()
            self.kill_a_triggerer()
            self.late_triggerers()
            state = self.wait_for_run(started + config.timeout)
            wall = time.monotonic() - started
        finally:
            self.watcher.hooks.remove(self.chaos)
            self.emulator.clear_faults()
        # Give the emulator a moment to finish what is legitimately finishing (nothing should be).
        with contextlib.suppress(TimeoutError):
            cluster.wait(
                "generations settled", lambda: not self.emulator.stats()["generations_in_flight"], 30
            )
        self.watcher.sample()
        self.scan_redis(force=True)
        report.figures["run state"] = state
        report.figures["wall time (trigger to run end)"] = f"{wall:.0f} s"
        for check in (self.check_tasks, self.check_money, self.check_faults, self.check_key):
            try:
                check()
            except Exception as exc:  # a check that cannot run is a broken invariant, not a crash
                report.violations.append(f"{check.__name__} could not run: {exc!r}")
        report.figures["peak triggerer RSS"] = (
            f"{self.peak_rss_process / 2**20:.0f} MB largest process, "
            f"{self.peak_rss_session / 2**20:.0f} MB whole triggerer (supervisor + runner + log server); "
            f"at most {self.watcher.peak_triggers} triggers at once, {self.watcher.peak_held} in one"
        )
        if self.watcher.errors:
            report.notes.append(f"watcher errors (retried): {self.watcher.errors[-3:]}")

    # -- run by the watcher thread ---------------------------------------------------------------

    def chaos(self) -> None:
        """A 429 on an enqueue and a 503 on a queue read every FAULT_EVERY s; SSE cuts too."""
        now = time.monotonic()
        if now >= self.next_fault:
            self.next_fault = now + FAULT_EVERY
            # One of each at a time: while nobody reads the queue (no triggerer), an unconsumed
            # fault is not re-armed, so faults never pile up into a burst.
            armed = {(f.get("status"), f.get("method")) for f in self.emulator.faults()}
            if (429, "POST") not in armed:
                self.emulator.fault(
                    type="status", status=429, retry_after=1, method="POST", path="^/api/ai/queue$"
                )
            if (503, "GET") not in armed:
                self.emulator.fault(type="status", status=503, method="GET", path="^/api/ai/queue")
        if now >= self.next_drop:
            self.next_drop = now + SSE_DROP_EVERY
            self.emulator.drop_streams()
            self.drops += 1

    def sample_rss(self) -> None:
        import psutil

        for name in self.cluster.names("triggerer"):
            sizes = []
            for pid in self.cluster.processes[name].pids():
                with contextlib.suppress(psutil.Error):
                    sizes.append(psutil.Process(pid).memory_info().rss)
            self.peak_rss_process = max(self.peak_rss_process, *sizes, 0)
            self.peak_rss_session = max(self.peak_rss_session, sum(sizes))

    def scan_redis(self, force: bool = False) -> None:
        """Every Redis key (``SCAN``) and its value(s), searched for the API key, every 10 s."""
        if not force and time.monotonic() < self.next_redis_scan:
            return
        self.next_redis_scan = time.monotonic() + 10
        with contextlib.closing(self.cluster.redis_client()) as client:
            for key in client.scan_iter(count=500):
                kind = client.type(key).decode()
                values: list[Any] = [key]
                if kind == "string":
                    values.append(client.get(key))
                elif kind == "list":
                    values += client.lrange(key, 0, -1)
                elif kind == "hash":
                    values += [part for item in client.hgetall(key).items() for part in item]
                elif kind in ("set", "zset"):
                    values += client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
                if any(self.needle in v for v in values if isinstance(v, bytes)):
                    self.key_in_redis.add(key.decode(errors="replace"))
                self.redis_keys_seen += 1
        self.redis_scans += 1

    # -- phases ----------------------------------------------------------------------------------

    def _held_now(self, job_id: int | None) -> set[int]:
        """The triggers a triggerer job held at the last sample."""
        with self.watcher.lock:
            latest = max((e["last_seen"] for e in self.watcher.triggers.values()), default=0)
            return {
                i
                for i, e in self.watcher.triggers.items()
                if e["triggerer_id"] == job_id and e["last_seen"] == latest
            }

    def kill_a_worker(self) -> None:
        """SIGKILL the Celery worker running a kill-window task, outside any enqueue."""
        windows = self.dir / "kill-window"
        self.cluster.wait("a kill-window task in its window", lambda: any(windows.iterdir()), 300, every=0.3)
        time.sleep(3)  # let the other kill-window tasks arrive
        waiting = {int(p.name): int(p.read_text()) for p in windows.iterdir()}
        first = min(waiting)
        victim = self.cluster.component_of_pid(waiting[first])
        if victim is None:
            self.report.violations.append(f"kill-window task {first} (pid {waiting[first]}) is in no worker")
            (self.dir / "release").touch()
            return
        (self.dir / "freeze").touch()
        frozen = time.monotonic()

        def enqueueing_in_victim() -> bool:
            pids = [int(m.read_text() or 0) for m in (self.dir / "enqueueing").iterdir() if m.exists()]
            return any(self.cluster.component_of_pid(pid) == victim for pid in pids if pid)

        while enqueueing_in_victim() and time.monotonic() - frozen < 60:
            time.sleep(0.1)
        held = time.monotonic() - frozen
        sql = "SELECT task_id, map_index, pid FROM task_instance WHERE run_id = :run AND state = 'running'"
        running = self.cluster.query(sql, run=self.run_id)
        pids = set(self.cluster.kill(victim))
        (self.dir / "freeze").unlink()
        (self.dir / "release").touch()
        self.killed_tis = {(t, int(m)) for t, m, pid in running if pid in pids}
        self.kill_window_killed = sorted(m for m, pid in waiting.items() if pid in pids)
        replacement = self.cluster.spawn("worker")
        self.report.figures["worker SIGKILLed"] = (
            f"{victim}: {len(pids)} processes, {len(self.killed_tis)} running task(s) incl. kill-window "
            f"{self.kill_window_killed}; enqueues held back {held:.1f} s; {replacement} started"
        )
        log(self.report.figures["worker SIGKILLed"])

    def kill_a_triggerer(self) -> None:
        """SIGKILL the triggerer holding the most waiting triggers; the other must take them over."""
        want = max(1, min(10, self.config.tasks // 4))
        started = time.monotonic()

        def busiest() -> tuple[str, set[int]] | None:
            held = {
                name: self._held_now(self.cluster.processes[name].job_id)
                for name in self.cluster.names("triggerer")
            }
            name = max(held, key=lambda n: len(held[n]))
            enough = len(held[name]) >= want or (held[name] and time.monotonic() - started > 60)
            return (name, held[name]) if enough else None

        victim, held = self.cluster.wait("a triggerer holding waiting triggers", busiest, 240)
        victim_job = self.cluster.processes[victim].job_id
        time.sleep(1)
        held = self._held_now(victim_job) or held
        self.cluster.kill(victim)
        killed_at = time.time()
        log(f"SIGKILLed {victim} (job {victim_job}) holding {len(held)} trigger(s)")
        survivors = {self.cluster.processes[n].job_id for n in self.cluster.names("triggerer")}
        taken: dict[int, float] = {}

        def all_taken() -> bool:
            for trigger_id in held - taken.keys():
                entry = self.watcher.trigger(trigger_id)
                later = [t for job, t in entry["held_by"].items() if job in survivors]
                if later:
                    taken[trigger_id] = min(later) - killed_at
                elif killed_at < entry["last_seen"] < time.time() - 3:
                    taken[trigger_id] = float("nan")  # gone: fired by a survivor between two samples
            return len(taken) == len(held)

        with contextlib.suppress(TimeoutError):
            self.cluster.wait("the killed triggerer's triggers taken over", all_taken, 120)
        slowest = max((t for t in taken.values() if t == t), default=float("nan"))
        self.report.figures["triggerer SIGKILLed"] = (
            f"{victim} holding {len(held)} waiting trigger(s); {len(taken)} taken over by the other, "
            f"the last {slowest:.0f} s after the kill"
        )
        self.report.check(
            len(taken) == len(held),
            f"{len(held) - len(taken)} trigger(s) of the SIGKILLed {victim} were never taken over",
        )

    def late_triggerers(self) -> None:
        """No triggerer while the late tasks defer and their deadline passes; then two start."""
        stopped = [
            f"{name} ({self.cluster.terminate(name):.0f} s)" for name in self.cluster.names("triggerer")
        ]
        outage_start = time.time()
        log(f"no triggerer running (SIGTERMed {', '.join(stopped)}); opening the late gate")
        (self.dir / "late-go").touch()

        def all_deferred() -> bool:
            states = self.cluster.task_states(DAG_ID, self.run_id).items()
            deferred = sum(1 for (t, _), state in states if t == "late" and state == "deferred")
            # The watcher samples five times a second: wait until it has linked each trigger too
            # (read at once, the last task to defer was once still missing).
            seen = self.watcher.trigger_ids(DAG_ID, self.run_id, "late", map_index=None)
            return deferred == LATE and len(seen) >= LATE

        self.cluster.wait("late tasks all deferred", all_deferred, 300)
        for trigger_id in self.watcher.trigger_ids(DAG_ID, self.run_id, "late", map_index=None):
            kwargs = json.loads(self.cluster.decrypt(self.watcher.trigger(trigger_id)["kwargs"]))
            self.late_deadlines[trigger_id] = float(kwargs["deadline"])
        self.report.check(
            len(self.late_deadlines) == LATE, f"late triggers' deadlines: {self.late_deadlines}"
        )
        time.sleep(max(0.0, max(self.late_deadlines.values(), default=time.time()) + 3 - time.time()))
        outage_end = time.time()
        started = [self.cluster.spawn("triggerer") for _ in range(TRIGGERERS)]
        self.report.figures["triggerer outage"] = (
            f"{outage_end - outage_start:.0f} s with no triggerer ({', '.join(stopped)} SIGTERMed); "
            f"{', '.join(started)} started after the last late deadline"
        )
        log(self.report.figures["triggerer outage"])

    def wait_for_run(self, deadline: float) -> str:
        last_print = 0.0
        while (state := self.cluster.run_state(DAG_ID, self.run_id)) not in ("success", "failed"):
            if time.monotonic() > deadline:
                self.report.violations.append(f"the run did not finish in {self.config.timeout:.0f} s")
                break
            if time.monotonic() - last_print > 20:
                last_print = time.monotonic()
                log(f"run {state}: {Counter(self.cluster.task_states(DAG_ID, self.run_id).values())}")
            self.cluster.check_alive()
            time.sleep(1)
        return state

    # -- checks ----------------------------------------------------------------------------------

    def check_tasks(self) -> None:
        config, report, run_id = self.config, self.report, self.run_id
        sql = "SELECT task_id, map_index, state, try_number FROM task_instance WHERE run_id = :run"
        tis = {(t, int(m)): (s, int(n or 0)) for t, m, s, n in self.cluster.query(sql, run=run_id)}
        by_task: dict[str, Counter[str | None]] = {}
        for (task_id, _), (state, _) in tis.items():
            by_task.setdefault(task_id, Counter())[state] += 1
        for task_id, count in {
            "generate": config.tasks,
            "flaky": FLAKY,
            "late": LATE,
            "open_late_gate": 1,
        }.items():
            got = by_task.get(task_id, Counter())
            report.check(
                got == Counter({"success": count}), f"{task_id}: expected {count} success, got {dict(got)}"
            )
        stalled_state = tis.get(("stalled", -1), (None, 0))[0]
        report.check(
            stalled_state in ("success", "failed"),
            f"stalled: expected success or failed, got {stalled_state}",
        )
        self.stalled_succeeded = stalled_state == "success"
        retried = sorted(f"{t}[{m}]" for (t, m), (_, n) in tis.items() if n > 1)
        report.figures["tasks"] = (
            f"{config.task_count}: {config.tasks} generate x {config.images_per_task} images, "
            f"{FLAKY} flaky x 2, 1 stalled, {LATE} late"
        )
        succeeded = sum(c["success"] for t, c in by_task.items() if t != "open_late_gate")
        report.figures["tasks succeeded / failed"] = (
            f"{succeeded} / {sum(c['failed'] for c in by_task.values())}"
        )
        report.figures["tasks that needed a retry"] = f"{len(retried)}: {', '.join(retried[:12])}"
        reasons: Counter[str] = Counter()
        for (task_id, map_index), (state, tries) in sorted(tis.items()):
            files = self.cluster.task_log_files(DAG_ID, run_id, task_id, map_index)
            worker_logs = {int(p.name[8:-4]): p for p in files if re.fullmatch(r"attempt=\d+\.log", p.name)}
            why = [
                _first_error(path.read_text(errors="replace"))
                or "no error in the task log: killed with its worker, or failed in its supervisor"
                for number, path in sorted(worker_logs.items())
                if not (number == tries and state == "success")
            ]
            reasons.update(why)
            if state != "success" and task_id != "stalled":
                report.notes.append(f"{task_id}[{map_index}] ended {state} after {tries} tries: {why}")
        report.figures["why tries failed"] = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(8))

        timed_out = "OxenGenerationTimeoutError" in self.cluster.task_log(DAG_ID, run_id, "stalled")
        report.check(timed_out, "stalled task's log does not name the timeout")
        for map_index in range(FLAKY):
            text = self.cluster.task_log(DAG_ID, run_id, "flaky", map_index)
            if FAILURE_TEXT in text and "OxenGenerationFailedError" in text:
                self.flaky_failed.add(map_index)
        report.figures["flaky tasks: a try failed upstream"] = (
            f"{len(self.flaky_failed)}, the reason in its log"
        )

        # A task seen running just before the kill may have finished deferring before the
        # SIGKILL landed (it then resumes on the same try): only its final state is checked.
        for key in sorted(self.killed_tis):
            report.check(
                tis.get(key, (None, 0))[0] == "success", f"{key} running on the killed worker did not succeed"
            )
        for map_index in self.kill_window_killed:
            tries = tis.get(("generate", map_index), (None, 0))[1]
            report.check(
                tries >= 2, f"generate[{map_index}] was SIGKILLed in its kill window yet shows try {tries}"
            )
            text = self.cluster.task_log(DAG_ID, run_id, "generate", map_index)
            report.check(
                "Resuming" in text and "Oxen generation(s) enqueued by an earlier try" in text,
                f"generate[{map_index}] (killed in its kill window) did not resume its generations",
            )
        report.check(bool(self.kill_window_killed), "no kill-window task was on the killed worker")

        late_ok = 0
        for trigger_id, deadline in sorted(self.late_deadlines.items()):
            entry = self.watcher.trigger(trigger_id)
            if min(entry["held_by"].values(), default=0) > deadline:
                late_ok += 1
            else:
                report.violations.append(f"late trigger {trigger_id} was held before its deadline ({entry})")
        late_logs = [self.cluster.task_log(DAG_ID, run_id, "late", m) for m in range(LATE)]
        late_timeouts = sum("OxenGenerationTimeoutError" in text for text in late_logs)
        report.check(
            late_timeouts == 0, f"{late_timeouts} late task(s) timed out instead of collecting results"
        )
        report.figures["late: picked up after their deadline"] = (
            f"{late_ok}/{LATE} triggers first held after their deadline; "
            f"{LATE - late_timeouts}/{LATE} collected their finished images (no timeout)"
        )

    def check_money(self) -> None:
        config, report, stats = self.config, self.report, self.emulator.stats()
        history: list[dict[str, Any]] = []
        headers = {"Authorization": f"Bearer {self.cluster.api_key}"}
        while True:
            params = {"limit": 100, "offset": len(history)}
            url = f"{self.cluster.emulator_url}/api/ai/generations"
            page = httpx.get(url, params=params, headers=headers, timeout=30).json()
            history += page["generations"]
            if not page["generations"] or len(history) >= page["count"]:
                break
        sql = "SELECT value FROM xcom WHERE dag_id = :dag AND run_id = :run AND key = 'return_value'"
        values = [row.value for row in self.cluster.query(sql, dag=DAG_ID, run=self.run_id)]
        xcom = [
            item["generation_id"]
            for value in values
            for item in value or []
            if isinstance(item, dict) and item.get("generation_id")
        ]
        status = Counter(g["status"] for g in history)
        failed = [g for g in history if g["status"] == "failed"]
        cancelled = [g for g in history if g["status"] == "cancelled"]
        paid = {g["generation_id"] for g in history if g["status"] == "succeeded"}
        requested, left = config.images_requested, status["queued"] + status["processing"]
        replacements = FAILURES + (1 if self.stalled_succeeded else 0)
        delivered = requested - (0 if self.stalled_succeeded else 1)
        report.figures["images requested / generations created"] = (
            f"{requested} / {len(history)} (expected {replacements} replacement(s): {FAILURES} "
            f"upstream failures{', 1 stalled' if self.stalled_succeeded else ''})"
        )
        report.figures["generations paid / delivered in XCom"] = (
            f"{len(paid)} / {len(xcom)}; credits spent {stats['credits_spent']}"
        )
        report.figures["failed upstream / cancelled (not billed)"] = (
            f"{status['failed']} / {status['cancelled']}"
        )
        report.figures["left queued or processing"] = left
        report.check(len(history) == stats["generations_created"], "history and counters disagree")
        report.check(
            len(history) == requested + replacements,
            f"created {len(history)} != {requested} requested + {replacements}",
        )
        report.check(len(paid) == delivered, f"paid {len(paid)} != {delivered} images delivered")
        report.check(len(xcom) == len(set(xcom)), "a generation id appears in two XCom results")
        report.check(
            set(xcom) == paid,
            f"paid, not delivered: {sorted(paid - set(xcom))[:5]}; not paid: {sorted(set(xcom) - paid)[:5]}",
        )
        report.check(status["failed"] == FAILURES, f"failed generations {status['failed']} != {FAILURES}")
        report.check(
            all(g["model_name"] == FLAKY_MODEL and g.get("error_message") == FAILURE_TEXT for g in failed),
            "a failed generation is not one of the injected upstream failures",
        )
        failed_tasks = {int(g["prompt"].split()[2].rstrip(",")) for g in failed}
        # A flaky task whose try died with the killed worker never saw its upstream failure: the
        # retry replaced the failed generation without the reason reaching a log.
        killed = {m for t, m in self.killed_tis if t == "flaky"}
        report.check(
            self.flaky_failed <= failed_tasks and failed_tasks - self.flaky_failed <= killed,
            f"flaky tasks failed upstream {sorted(failed_tasks)} != by the logs {sorted(self.flaky_failed)}"
            f" (killed with their worker: {sorted(killed)})",
        )
        report.check(len(cancelled) == 1, f"cancelled generations {len(cancelled)} != 1 (the stalled one)")
        report.check(
            all(g["model_name"] == STALL_MODEL for g in cancelled),
            "a generation other than the stalled one was cancelled",
        )
        report.check(left == 0, f"{left} generation(s) left queued/processing")
        failed_by_prompt = Counter(g["prompt"] for g in failed)
        for prompt, count in Counter(g["prompt"] for g in history if g["model_name"] == FLAKY_MODEL).items():
            report.check(
                count == 2 + failed_by_prompt[prompt],
                f"flaky prompt {prompt!r}: {count} generations, {failed_by_prompt[prompt]} failure(s)",
            )
        report.figures["requests to the Oxen API"] = (
            f"{stats['requests_total']} ({stats['requests_total'] / requested:.2f} per image)"
        )

    def check_faults(self) -> None:
        statuses = Counter(e.get("status") for e in self.emulator.requests())
        self.report.figures["faults served"] = (
            f"{statuses[429]} x 429, {statuses[503]} x 503, {self.drops} SSE cuts, "
            f"{FAILURES} upstream failures, 1 stall"
        )
        self.report.check(statuses[429] > 0 and statuses[503] > 0, f"no 429/503 served: {statuses}")

    def check_key(self) -> None:
        files = self.cluster.files()
        in_files = []
        for path in files:
            with contextlib.suppress(OSError):  # a file removed meanwhile
                if self.needle in path.read_bytes():
                    in_files.append(str(path))
        dump = self.cluster.dump()
        in_kwargs = [
            i
            for i, e in self.watcher.triggers.items()
            if self.needle in self.cluster.decrypt(e["kwargs"]).encode()
        ]
        self.report.figures["API key found"] = (
            f"{len(in_files) + dump.count(self.needle) + len(in_kwargs) + len(self.key_in_redis)} place(s): "
            f"{len(in_files)} of {len(files)} files (logs, task/trigger logs, emulator log), "
            f"{dump.count(self.needle)} in the database dump ({len(dump) // 1024} KiB), {len(in_kwargs)} of "
            f"{len(self.watcher.triggers)} trigger kwargs, {len(self.key_in_redis)} of "
            f"{self.redis_keys_seen} Redis keys/values ({self.redis_scans} scans)"
        )
        self.report.check(not in_files, f"API key in files: {in_files[:10]}")
        self.report.check(self.needle not in dump, "API key in the database dump")
        self.report.check(not in_kwargs, f"API key in trigger kwargs: {in_kwargs[:5]}")
        self.report.check(not self.key_in_redis, f"API key in Redis: {sorted(self.key_in_redis)[:5]}")
