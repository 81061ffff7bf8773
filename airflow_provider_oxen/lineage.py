"""OpenLineage for the operators: what a task read and wrote, as datasets, and what Oxen made.

Imported only by the operators' ``get_openlineage_facets_on_complete``, which only the
OpenLineage provider calls: without it nothing here is loaded. Datasets follow OpenLineage's
naming: an S3 object is namespace ``s3://<bucket>``, name ``<key>``; a generation, which no
naming rule covers, is ``oxen://<API host>`` / ``generations/<id>``, so that the generate task's
outputs are the transfer's inputs and a catalog draws one graph from input image to published file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
from attrs import define

from airflow_provider_oxen.results import reported_cost

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

RUN_FACET = "oxen_generation"


@define
class OxenGenerationRunFacet(RunFacet):
    """The generations a task made or handled: their models, ids and the cost Oxen reported.

    :param models: the model ids, each once.
    :param generationIds: the generation ids, in the task's order.
    :param reportedCost: the sum of the costs Oxen reported (a decimal string); None when it reported none.
    :param costUnreported: how many generations Oxen reported no cost for (not in ``reportedCost``).
    """

    models: list[str]
    generationIds: list[str]
    reportedCost: str | None = None
    costUnreported: int = 0


def generation_uri(base_url: str, generation_id: object) -> str:
    """A generation as a dataset URI: the API's host (no credentials, no path) and its id."""
    parts = urlsplit(base_url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return f"oxen://{host}/generations/{generation_id}"


def _dataset(uri: str) -> Dataset | None:
    """``s3://`` and ``oxen://`` URIs only: any other URL (a presigned one) is not a dataset."""
    # Split by hand: an S3 key may hold "?" and "#", which a URL parser would cut off.
    scheme, _, rest = uri.partition("://")
    bucket_or_host, _, name = rest.partition("/")
    if scheme not in ("s3", "oxen") or not bucket_or_host or not name:
        return None
    return Dataset(namespace=f"{scheme}://{bucket_or_host}", name=name)


def _run_facet(results: Iterable[Any]) -> OxenGenerationRunFacet | None:
    seen: dict[str, Mapping[str, Any]] = {}
    for result in results:
        if isinstance(result, Mapping) and result.get("generation_id"):
            seen.setdefault(str(result["generation_id"]), result)
        elif isinstance(result, str):  # an id only (wait_for_completion=False)
            seen.setdefault(result, {})
    if not seen:
        return None
    total, unreported = reported_cost(list(seen.values()))
    models = [str(r["model"]) for r in seen.values() if r.get("model")]
    return OxenGenerationRunFacet(
        models=list(dict.fromkeys(models)),
        generationIds=list(seen),
        reportedCost=str(total) if unreported < len(seen) else None,
        costUnreported=unreported,
    )


def operator_lineage(
    inputs: Iterable[str], outputs: Iterable[str], results: Iterable[Any] = ()
) -> OperatorLineage:
    """What a task reports: its input and output URIs as datasets (each once), and a run facet
    describing ``results`` (result dicts, transfer records, or generation ids)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(uris: Iterable[str]) -> list[Dataset]:
        return [d for d in map(_dataset, dict.fromkeys(uris)) if d is not None]

    facet = _run_facet(results)
    return OperatorLineage(
        inputs=datasets(inputs),
        outputs=datasets(outputs),
        run_facets={RUN_FACET: facet} if facet is not None else {},
    )
