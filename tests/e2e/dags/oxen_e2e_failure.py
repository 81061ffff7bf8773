"""E2E failure path: one deferrable generation that the emulator is told to fail."""

from __future__ import annotations

from datetime import datetime, timedelta

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
        parameters={"image_size": "square"},
        poll_interval=1,
        timeout=120,
        deferrable=True,
        retries=0,
    )


with DAG(
    dag_id="oxen_e2e_no_credits",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "e2e"],
) as no_credits_dag:
    # Retries that a 402 must not spend: no retry can pay for it.
    OxenGenerateImageOperator(
        task_id="unpaid",
        prompt="A poster nobody can pay for",
        parameters={"image_size": "square"},
        poll_interval=1,
        timeout=120,
        deferrable=True,
        retries=3,
        retry_delay=timedelta(seconds=1),
    )
