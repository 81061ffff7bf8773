"""Worker benchmark: mapped deferrable generate tasks, each phase timed (benchmarks/worker_benchmark.py)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

# First: its import time is when this DAG file started importing (see worker_timing).
from benchmarks.worker_timing import imports_done, record

# isort: split
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator

imports_done()

TASKS = int(os.environ.get("OXEN_BENCH_WORKER_TASKS", "4"))


class TimedGenerate(OxenGenerateImageOperator):
    """The provider's operator as is, with each phase's entry and exit recorded."""

    def execute(self, context: Any) -> Any:
        entered = time.time()
        try:
            result = super().execute(context)
        except TaskDeferred:
            record("oxen", "execute", context, entered, "deferred")
            raise
        except BaseException:
            record("oxen", "execute", context, entered, "error")
            raise
        record("oxen", "execute", context, entered, "returned")
        return result

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
        entered = time.time()
        try:
            result = super().execute_complete(context, event)
        except BaseException:
            record("oxen", "resume", context, entered, "error")
            raise
        record("oxen", "resume", context, entered, "returned")
        return result


with DAG(
    dag_id="oxen_bench_worker",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
):
    TimedGenerate.partial(
        task_id="generate",
        parameters={"image_size": "square"},
        poll_interval=2,
        timeout=600,
        deferrable=True,
    ).expand(prompt=[f"Benchmark tile {i}" for i in range(TASKS)])
