"""OpenLineage facets (airflow_provider_oxen.lineage) and the provider without OpenLineage installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from airflow_provider_oxen.lineage import RUN_FACET, generation_uri, operator_lineage
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator


def _names(datasets: list) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_the_run_facet_sums_reported_costs_once_per_generation_and_counts_the_unreported() -> None:
    results = [
        {"generation_id": "g1", "model": "ideogram-v4", "cost": "0.04"},
        {"generation_id": "g2", "model": "ideogram-v4", "cost": None},
        {"generation_id": "g1", "model": "ideogram-v4", "cost": "0.04"},  # a clip's poster, say
        {"generation_id": "g3", "model": "qwen-image-edit", "cost": "0.0250"},
    ]
    facet = operator_lineage([], [], results).run_facets[RUN_FACET]
    assert facet.models == ["ideogram-v4", "qwen-image-edit"]
    assert facet.generationIds == ["g1", "g2", "g3"]
    assert facet.reportedCost == "0.0650" and facet.costUnreported == 1
    assert operator_lineage([], [], []).run_facets == {}


def test_only_s3_and_generation_uris_are_datasets_and_no_credential_reaches_them() -> None:
    generation = generation_uri("https://user:s3cret@api.example.com:8443/", "g1")
    assert generation == "oxen://api.example.com:8443/generations/g1"
    lineage = operator_lineage(
        ["s3://bucket/in/photo.png", "https://bucket.s3.example/in/photo.png?X-Amz-Signature=abc"],
        [generation, "s3://bucket/in/photo.png", generation, "s3://bucket/odd?#1.png"],
    )
    assert _names(lineage.inputs) == [("s3://bucket", "in/photo.png")]
    assert _names(lineage.outputs) == [
        ("oxen://api.example.com:8443", "generations/g1"),
        ("s3://bucket", "in/photo.png"),
        ("s3://bucket", "odd?#1.png"),
    ]
    assert "s3cret" not in repr(lineage) and "Signature" not in repr(lineage)


def test_generate_without_input_uris_reports_its_rendered_input_images_and_the_ids_it_enqueued() -> None:
    operator = OxenGenerateImageOperator(task_id="gen", prompt="p", input_images=["s3://in/a.png"])
    operator._lineage = ("https://hub.oxen.ai", ["g1", "g2"])  # what a not-waiting try leaves
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert _names(lineage.inputs) == [("s3://in", "a.png")]
    assert _names(lineage.outputs) == [("oxen://hub.oxen.ai", f"generations/g{i}") for i in (1, 2)]
    facet = lineage.run_facets[RUN_FACET]
    assert facet.generationIds == ["g1", "g2"] and facet.reportedCost is None and facet.costUnreported == 2


@pytest.mark.slow  # a fresh interpreter importing Airflow: seconds on a busy machine
def test_the_provider_imports_and_builds_its_operators_without_openlineage() -> None:
    # A fresh interpreter in which nothing of OpenLineage can be imported (as when the provider is
    # not installed; only its metadata, which Airflow's provider discovery reads, is left): every
    # module loads, the operators are built, and lineage.py stays unloaded.
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class NoOpenLineage:
            def find_spec(self, name, path=None, target=None):
                provider = name.startswith("airflow.providers.openlineage.") and "provider_info" not in name
                if name.split(".")[0] == "openlineage" or provider:
                    raise ImportError(f"blocked: {name}")

        sys.meta_path.insert(0, NoOpenLineage())
        import airflow_provider_oxen

        for module in pkgutil.walk_packages(airflow_provider_oxen.__path__, "airflow_provider_oxen."):
            if module.name != "airflow_provider_oxen.lineage" and ".emulator" not in module.name:
                importlib.import_module(module.name)
        from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
        from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator
        from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

        OxenGenerateImageOperator(task_id="g", prompt="p")
        OxenGenerationToS3Operator(task_id="s", results=[], bucket="b", prefix="p")
        OxenPublishReviewedOperator(
            task_id="p", records=[], review={}, bucket="b", approved_prefix="a", rejected_prefix="r"
        )
        assert "airflow_provider_oxen.lineage" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
