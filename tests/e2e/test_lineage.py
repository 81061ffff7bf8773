"""OpenLineage in a real Airflow: the COMPLETE events of an edit → store → publish run name the
input image, the generation, the stored and the published objects, and carry the run facet."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.cluster import Cluster
from tests.e2e.conftest import LINEAGE_DAG
from tests.fixtures import API_KEY, EmulatorControl

pytestmark = pytest.mark.slow

BUCKET = "oxen-e2e-lineage"
TASKS = ("edit", "store", "publish")


def _completed(lineage_log: Path) -> dict[str, dict[str, Any]] | None:
    """The COMPLETE event of each of the DAG's Oxen tasks, once all three are written."""
    lines = lineage_log.read_text().splitlines() if lineage_log.exists() else []
    events = [json.loads(line) for line in lines if line.strip()]
    found = {
        e["job"]["name"].removeprefix(f"{LINEAGE_DAG}."): e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] in {f"{LINEAGE_DAG}.{t}" for t in TASKS}
    }
    return found if len(found) == len(TASKS) else None


def _names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def test_complete_events_name_the_input_generation_stored_and_published_objects(
    cluster: Cluster, emulator: EmulatorControl, s3: Any, lineage_log: Path
) -> None:
    image = io.BytesIO()
    Image.new("RGB", (320, 180), (200, 120, 40)).save(image, format="PNG")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="in/mug.png", Body=image.getvalue())
    run_id = cluster.trigger(LINEAGE_DAG)
    state = cluster.wait_for_run(LINEAGE_DAG, run_id, timeout=180)
    assert state == "success", cluster.task_states(LINEAGE_DAG, run_id)

    [result] = cluster.xcom(LINEAGE_DAG, run_id, "edit")
    [record] = cluster.xcom(LINEAGE_DAG, run_id, "store")
    events = cluster.wait("the COMPLETE events", lambda: _completed(lineage_log), timeout=60)
    bucket = f"s3://{BUCKET}"
    generation = (f"oxen://{urlsplit(emulator.url).netloc}", f"generations/{result['generation_id']}")
    assert _names(events["edit"]["inputs"]) == [(bucket, "in/mug.png")]
    assert _names(events["edit"]["outputs"]) == [generation]
    assert _names(events["store"]["inputs"]) == [generation]
    assert _names(events["store"]["outputs"])[0] == (bucket, record["s3_key"])
    assert {name.split("-")[0] for _, name in _names(events["store"]["outputs"])[1:]} == {
        "stored/manifest",
        "stored/contact",
    }
    assert _names(events["publish"]["inputs"]) == [(bucket, record["s3_key"])]
    assert _names(events["publish"]["outputs"]) == [(bucket, "approved/" + record["s3_key"].split("/")[-1])]
    for task_id in TASKS:
        facet = events[task_id]["run"]["facets"]["oxen_generation"]
        assert facet["models"] == ["qwen-image-edit"], facet
        assert facet["generationIds"] == [result["generation_id"]], facet
        assert facet["reportedCost"] == result["cost"] and facet["costUnreported"] == 0, facet
    text = lineage_log.read_text()  # no event may carry the API key or a presigned signature
    assert API_KEY not in text and "Signature=" not in text
