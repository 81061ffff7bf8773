"""E2E: the worker dies (SIGKILL) after enqueueing and before deferring; the retry must resume."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator


class DiesBeforeDeferring(OxenGenerateImageOperator):
    """On its first try, the task process is killed in the window between enqueue and defer."""

    def execute(self, context: Any) -> Any:
        self._first_try = context["ti"].try_number == 1
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._first_try:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().defer(**kwargs)


with DAG(dag_id="oxen_e2e_crash", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    DiesBeforeDeferring(
        task_id="generate",
        prompt="Six tiles that must be paid for once",
        num_outputs=6,
        parameters={"image_size": "square"},
        poll_interval=1,
        timeout=300,
        deferrable=True,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )


with DAG(dag_id="oxen_e2e_stall", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as stall_dag:
    OxenGenerateImageOperator(
        task_id="stuck",
        prompt="An image that never finishes rendering",
        num_outputs=2,
        parameters={"image_size": "square"},
        poll_interval=1,
        timeout=600,
        deferrable=True,
    )
