"""Timing records written by the worker benchmark's task processes (one JSON line per phase).

Imported by the benchmark DAGs in ``benchmarks/worker_dags/``; kept free of this provider's
imports so the null DAG's task start-up is Airflow's own. ``OXEN_BENCH_TIMINGS`` names the file.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

# The DAG files import this helper first: when this task process started importing the DAG
# file. IMPORTED_AT is moved on by imports_done(), called once the DAG file's imports are done
# (the provider's, for the generate DAG), so the two split the start-up.
DAG_FILE_STARTED = IMPORTED_AT = time.time()


def imports_done() -> None:
    """Mark the DAG file's imports as done (what it imports is the difference between the DAGs)."""
    global IMPORTED_AT
    IMPORTED_AT = time.time()


def process_started() -> float:
    """When this task process was created (the supervisor forks one per task and phase)."""
    import psutil

    return float(psutil.Process().create_time())


def record(kind: str, phase: str, context: Any, entered: float, outcome: str) -> None:
    """Append one phase of one task instance: process start, operator entry and exit."""
    path = os.environ.get("OXEN_BENCH_TIMINGS")
    if not path:
        return
    ti = context["ti"]
    line = json.dumps(
        {
            "kind": kind,
            "phase": phase,
            "outcome": outcome,
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "map_index": ti.map_index,
            "process_started": process_started(),
            "dag_file_started": DAG_FILE_STARTED,
            "dag_imported": IMPORTED_AT,
            "entered": entered,
            "left": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
