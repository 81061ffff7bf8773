"""The e2e-only DAGs (the shipped ones are in dags/), each for one path of tests/e2e/test_real_airflow.py.

Triggered only: Airflow 3 needs no start_date for that, and catches up nothing by default.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

SQUARE = {"image_size": "square"}


class DiesBeforeDeferring(OxenGenerateImageOperator):
    """On its first try, the task process is killed in the window between enqueue and defer."""

    def execute(self, context: Any) -> Any:
        self._first_try = context["ti"].try_number == 1
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._first_try:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().defer(**kwargs)


# One deferrable generation task per DAG: (DAG, task class, task id, prompt, arguments).
SINGLE_TASK_DAGS = [
    # Failure path: the emulator is told to fail the generation.
    ("oxen_e2e_failure", OxenGenerateImageOperator, "doomed", "A picture the GPU will never finish", {}),
    # Retries that a 402 must not spend: no retry can pay for it.
    (
        "oxen_e2e_no_credits",
        OxenGenerateImageOperator,
        "unpaid",
        "A poster nobody can pay for",
        {"retries": 3},
    ),
    # The worker dies (SIGKILL) after enqueueing and before deferring; the retry must resume.
    (
        "oxen_e2e_crash",
        DiesBeforeDeferring,
        "generate",
        "Six tiles that must be paid for once",
        {"num_outputs": 6, "timeout": 300, "retries": 1},
    ),
    # Generations that never finish: marking the deferred task failed must cancel them.
    (
        "oxen_e2e_stall",
        OxenGenerateImageOperator,
        "stuck",
        "An image that never finishes rendering",
        {"num_outputs": 2, "timeout": 600},
    ),
]
for dag_id, operator, task_id, prompt, arguments in SINGLE_TASK_DAGS:
    with DAG(dag_id, schedule=None, tags=["oxen", "e2e"]):
        operator(
            task_id=task_id,
            prompt=prompt,
            parameters=SQUARE,
            poll_interval=1,
            deferrable=True,
            **{"timeout": 120, "retries": 0, "retry_delay": timedelta(seconds=1), **arguments},
        )

# 100 mapped deferrable tasks waiting in one triggerer (shared event stream).
with DAG("oxen_e2e_many", schedule=None, max_active_tasks=64, tags=["oxen", "e2e"]):
    OxenGenerateImageOperator.partial(
        task_id="generate", parameters=SQUARE, poll_interval=2, timeout=900, deferrable=True
    ).expand(prompt=[f"Tile number {i}" for i in range(100)])

# Storage: the emulator's images are a few hundred KB, under the default 8 MiB in-memory spool; a
# 1 KiB ``spool_max_bytes`` puts them on disk, where the upload runs in a thread of the real task
# process (Airflow's task runner) alongside the decode.
with DAG("oxen_e2e_store", schedule=None, tags=["oxen", "e2e"]):
    generate = OxenGenerateImageOperator(
        task_id="generate",
        prompt="A street poster for a night market, bold type",
        parameters={**SQUARE, "output_format": "png"},
        num_outputs=2,
        poll_interval=1,
        timeout=120,
        deferrable=True,
    )
    OxenGenerationToS3Operator(
        task_id="store",
        results=generate.output,
        bucket="oxen-e2e-store",
        prefix="store/{{ run_id | replace(':', '-') | replace('+', '-') }}",
        spool_max_bytes=1024,
    )
