"""OpenLineage over real sockets: a resumed try and a retry that returns recorded results report
their generations (an edit of an S3 image, stored and published, as one connected graph:
tests/e2e/test_lineage.py, in a real Airflow)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_provider_oxen.lineage import RUN_FACET
from tests.fixtures import EmulatorControl, FakeTaskStateStore
from tests.integration.helpers import defer, generate_operator, run_trigger, task_context


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


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
