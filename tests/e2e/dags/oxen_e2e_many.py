"""E2E: 100 mapped deferrable tasks waiting in one triggerer (shared event stream)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator

with DAG(
    dag_id="oxen_e2e_many",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
) as dag:
    OxenGenerateImageOperator.partial(
        task_id="generate",
        parameters={"image_size": "square"},
        poll_interval=2,
        timeout=900,
        deferrable=True,
    ).expand(prompt=[f"Tile number {i}" for i in range(100)])
