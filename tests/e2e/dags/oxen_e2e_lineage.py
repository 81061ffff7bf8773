"""E2E lineage: an edit of an image in S3, stored and published, reported through OpenLineage.

The only DAG with lineage on (the cluster sets ``[openlineage] selective_enable``), so the
other e2e runs emit nothing. The test puts the input image in the bucket before triggering.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.openlineage.utils.selective_enable import enable_lineage
from airflow.sdk import DAG, task

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

BUCKET = "oxen-e2e-lineage"


@task
def approve_all(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The review's answer, given without a reviewer: every file approved."""
    return {"decisions": {record["generation_id"]: "approve" for record in records}}


# Triggered only: Airflow 3 needs no start_date for that, and catches up nothing by default.
with DAG("oxen_e2e_lineage", schedule=None, tags=["oxen", "e2e"]) as dag:
    edit = OxenGenerateImageOperator(
        task_id="edit",
        model="qwen-image-edit",
        prompt="The same mug in an autumn palette",
        input_images=f"s3://{BUCKET}/in/mug.png",
        poll_interval=1,
        timeout=120,
        deferrable=True,
    )
    store = OxenGenerationToS3Operator(task_id="store", results=edit.output, bucket=BUCKET, prefix="stored")

    OxenPublishReviewedOperator(
        task_id="publish",
        records=store.output,
        review=approve_all(store.output),
        bucket=BUCKET,
        approved_prefix="approved",
        rejected_prefix="rejected",
    )

enable_lineage(dag)
