"""OpenLineage over real sockets: an edit of an S3 image, stored and published, is one connected graph."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_provider_oxen.lineage import RUN_FACET
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator
from tests.fixtures import EmulatorControl, FakeTaskStateStore
from tests.integration.helpers import defer, generate_operator, run_trigger, task_context
from tests.transfers.helpers import run_transfer, s3_operator


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_edit_store_and_publish_report_input_generation_stored_and_published_datasets(
    oxen_conn: EmulatorControl, key_visual: str, bucket: str
) -> None:
    edit = OxenGenerateImageOperator(
        task_id="edit", model="qwen-image-edit", prompt="Autumn", input_images=key_visual, poll_interval=0.1
    )
    [result] = edit.execute(task_context())
    store = s3_operator([result], bucket)
    [record] = run_transfer(store)
    publish = OxenPublishReviewedOperator(
        task_id="publish",
        records=[record],
        review={"decisions": {result["generation_id"]: "approve"}},
        bucket=bucket,
        approved_prefix="approved/spring",
        rejected_prefix="rejected",
    )
    publish.execute({})  # type: ignore[arg-type]

    generated, stored, published = (
        operator.get_openlineage_facets_on_complete(None) for operator in (edit, store, publish)
    )
    in_bucket = f"s3://{bucket}"
    generation = (f"oxen://{urlsplit(oxen_conn.url).netloc}", f"generations/{result['generation_id']}")
    assert _names(generated.inputs) == [(in_bucket, "approved/key-visual.png")]
    assert _names(generated.outputs) == [generation]
    assert _names(stored.inputs) == [generation]
    file, manifest, sheet = _names(stored.outputs)
    assert file == (in_bucket, record["s3_key"])
    assert manifest[1].startswith("campaigns/manifest-") and sheet[1].startswith("campaigns/contact-sheet-")
    assert _names(published.inputs) == [file]
    assert _names(published.outputs) == [(in_bucket, f"approved/spring/{record['s3_key'].split('/')[-1]}")]

    facet = generated.run_facets[RUN_FACET]
    assert facet.models == ["qwen-image-edit"] and facet.generationIds == [result["generation_id"]]
    assert result["cost"] is not None and facet.reportedCost == result["cost"] and facet.costUnreported == 0
    assert stored.run_facets == published.run_facets == generated.run_facets


def test_a_resumed_try_and_a_retry_that_returns_recorded_results_report_their_generations(
    oxen_conn: EmulatorControl,
) -> None:
    store = FakeTaskStateStore()
    context = task_context(store, try_number=1, max_tries=2)
    payload = run_trigger(defer(generate_operator(deferrable=True), context).trigger)
    resumed = generate_operator(deferrable=True)  # a fresh instance, as in a new worker process
    results = resumed.execute_complete(context, payload)  # type: ignore[arg-type]
    retry = generate_operator(deferrable=True)  # Airflow failed the try after it returned
    assert retry.execute(task_context(store, try_number=2, max_tries=2)) == results  # type: ignore[arg-type]

    generations = [(f"oxen://{urlsplit(oxen_conn.url).netloc}", f"generations/{results[0]['generation_id']}")]
    for operator in (resumed, retry):
        lineage = operator.get_openlineage_facets_on_complete(None)
        assert lineage.inputs == [] and _names(lineage.outputs) == generations
        assert lineage.run_facets[RUN_FACET].reportedCost == results[0]["cost"]
