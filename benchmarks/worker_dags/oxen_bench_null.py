"""Worker benchmark: Airflow's own cost of a deferring task (no provider import, no HTTP).

Mapped like ``oxen_bench_worker``: each task defers on a ``TimeDeltaTrigger`` and returns
when resumed, so both phases' task start-up is Airflow's alone.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

# First: its import time is when this DAG file started importing (see worker_timing).
from benchmarks.worker_timing import imports_done, record

# isort: split
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator

imports_done()

TASKS = int(os.environ.get("OXEN_BENCH_WORKER_TASKS", "4"))


class NullDeferrable(BaseOperator):
    def __init__(self, *, tile: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tile = tile

    def execute(self, context: Any) -> None:
        record("null", "execute", context, time.time(), "deferred")
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=2)), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        record("null", "resume", context, time.time(), "returned")


with DAG(
    dag_id="oxen_bench_null",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
):
    NullDeferrable.partial(task_id="defer").expand(tile=[f"tile {i}" for i in range(TASKS)])
