"""E2E failure path: one deferrable generation that the emulator is told to fail."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator

with DAG(
    dag_id="oxen_e2e_failure",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "e2e"],
) as dag:
    OxenGenerateImageOperator(
        task_id="doomed",
        prompt="A picture the GPU will never finish",
        image_size="square",
        poll_interval=1,
        timeout=120,
        deferrable=True,
        retries=0,
    )
