"""The chaos soak's DAG: mapped deferrable OxenGenerateImageOperator tasks, plus the chaos cases.

Its shape comes from the environment the soak gives every Airflow component:

* ``generate`` — ``OXEN_SOAK_TASKS`` mapped tasks of ``OXEN_SOAK_IMAGES`` ideogram-v4 images
  each. The map indexes in ``OXEN_SOAK_KILL_WINDOW`` stop on their first try right after the
  enqueue was recorded and before deferring, and wait there for the soak to SIGKILL their
  Celery worker (the retry must resume the ledgered generations, not pay again);
* ``flaky`` — ``OXEN_SOAK_FLAKY`` tasks of 2 images on ``black-forest-labs-flux-2-klein-4b``:
  the soak arms ``generation_failure`` faults for that model, so their first try fails with
  the upstream reason and the retry replaces only the failed generations;
* ``stalled`` — 1 image on ``nano-banana-2`` that never finishes (``stall_generation``): it is
  cancelled at the task's ``timeout``, that try fails with ``OxenGenerationTimeoutError`` and
  the retry enqueues one replacement;
* ``open_late_gate`` → ``late`` — ``OXEN_SOAK_LATE`` tasks enqueued only once the soak opens a
  gate (a file), with a short ``timeout``: the soak stops every triggerer while they wait, so
  their deadline passes while no triggerer holds them; the generations finished meanwhile, so
  they must succeed when a triggerer picks them up late.

Retries are generous (4 for ``generate`` and ``flaky``): a try can also die of the soak's own
kills or of an overloaded machine (a timed-out Execution API call); the ledger makes every
retry resume instead of paying again.

Chaos hooks talk to the soak through files in ``OXEN_SOAK_DIR``: each task marks the time it
spends in ``execute`` (before the deferral) in ``enqueueing/`` and waits while ``freeze``
exists, so a worker is never killed in the middle of an enqueue (a kill *between sending and
recording* is the documented fail-closed case, ``OxenUnrecordedEnqueueError``, covered by the
integration tests); ``kill-window/<map_index>`` holds the pid of a task waiting to be killed.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator

SOAK_DIR = Path(os.environ.get("OXEN_SOAK_DIR") or "/nonexistent-oxen-soak")
TASKS = int(os.environ.get("OXEN_SOAK_TASKS", "32"))
IMAGES = int(os.environ.get("OXEN_SOAK_IMAGES", "2"))
FLAKY = int(os.environ.get("OXEN_SOAK_FLAKY", "3"))
LATE = int(os.environ.get("OXEN_SOAK_LATE", "4"))
KILL_WINDOW = {int(i) for i in os.environ.get("OXEN_SOAK_KILL_WINDOW", "").split(",") if i.strip()}
LATE_TIMEOUT = float(os.environ.get("OXEN_SOAK_LATE_TIMEOUT", "20"))
STALL_TIMEOUT = float(os.environ.get("OXEN_SOAK_STALL_TIMEOUT", "45"))
POLL_INTERVAL = float(os.environ.get("OXEN_SOAK_POLL_INTERVAL", "5"))
FLAKY_MODEL = "black-forest-labs-flux-2-klein-4b"
STALL_MODEL = "nano-banana-2"


class ChaosAwareGenerate(OxenGenerateImageOperator):
    """The operator, plus the soak's markers around the enqueue and its kill window."""

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        self._soak_ti = (ti.task_id, ti.map_index, ti.try_number)
        marker = SOAK_DIR / "enqueueing" / f"{ti.task_id}.{ti.map_index}.{ti.try_number}"
        while True:  # handshake: mark first, then look at the freeze flag
            marker.write_text(str(os.getpid()))
            if not (SOAK_DIR / "freeze").exists():
                break
            marker.unlink(missing_ok=True)
            time.sleep(0.2)
        self._soak_marker = marker
        try:
            return super().execute(context)
        finally:
            marker.unlink(missing_ok=True)

    def defer(self, **kwargs: Any) -> Any:
        self._soak_marker.unlink(missing_ok=True)  # enqueued and recorded: safe to kill from here
        task_id, map_index, try_number = self._soak_ti
        if task_id == "generate" and map_index in KILL_WINDOW and try_number == 1:
            window = SOAK_DIR / "kill-window" / str(map_index)
            window.write_text(str(os.getpid()))
            self.log.info("Soak: enqueued and recorded; waiting to be SIGKILLed before deferring.")
            deadline = time.monotonic() + 300
            while not (SOAK_DIR / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.log.info("Soak: released without being killed.")
        return super().defer(**kwargs)


common: dict[str, Any] = {
    "deferrable": True,
    "poll_interval": POLL_INTERVAL,
    "retry_delay": timedelta(seconds=2),
}

with DAG(
    dag_id="oxen_chaos_soak",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=4096,
    tags=["oxen", "soak"],
) as dag:
    ChaosAwareGenerate.partial(
        task_id="generate",
        parameters={"image_size": "square"},
        num_outputs=IMAGES,
        timeout=1800,
        retries=4,
        **common,
    ).expand(prompt=[f"Soak tile {i:04d}, a lighthouse in a storm, woodcut" for i in range(TASKS)])

    ChaosAwareGenerate.partial(
        task_id="flaky",
        model=FLAKY_MODEL,
        num_outputs=2,
        timeout=900,
        retries=4,
        priority_weight=100,
        **common,
    ).expand(prompt=[f"Soak flaky {i:02d}, a fox in the snow" for i in range(FLAKY)])

    ChaosAwareGenerate(
        task_id="stalled",
        model=STALL_MODEL,
        prompt="Soak stalled: an image that never finishes rendering",
        num_outputs=1,
        timeout=STALL_TIMEOUT,
        retries=2,
        priority_weight=100,
        **common,
    )

    @task(retries=3, retry_delay=timedelta(seconds=2), priority_weight=100)
    def open_late_gate() -> None:
        """Holds the ``late`` tasks back until the soak says so (a file)."""
        deadline = time.monotonic() + 3600
        while not (SOAK_DIR / "late-go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the soak never opened the late gate")
            time.sleep(0.5)

    late = ChaosAwareGenerate.partial(
        task_id="late",
        parameters={"image_size": "square"},
        num_outputs=1,
        timeout=LATE_TIMEOUT,
        retries=2,
        priority_weight=100,
        **common,
    ).expand(prompt=[f"Soak late {i:02d}, collected after its deadline" for i in range(LATE)])
    open_late_gate() >> late
