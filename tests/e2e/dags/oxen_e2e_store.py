"""E2E storage: a generated image spooled to disk, so the transfer uploads it while it checks it.

The emulator's images are a few hundred KB, under the default 8 MiB in-memory spool; a
1 KiB ``spool_max_bytes`` puts them on disk, where the upload runs in a thread of the real
task process (Airflow's task runner) alongside the decode.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

with DAG(
    dag_id="oxen_e2e_store",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "e2e"],
) as dag:
    generate = OxenGenerateImageOperator(
        task_id="generate",
        prompt="A street poster for a night market, bold type",
        parameters={"image_size": "square", "output_format": "png"},
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
