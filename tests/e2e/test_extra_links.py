"""End to end: the campaign's generate, store and review tasks link to what they made, through the
real api-server's REST API (``GET .../taskInstances/{task}/links``), and nothing signed is stored.

Uses the cluster, emulator and S3 fixtures of ``tests/e2e/conftest.py`` (shared by the e2e modules).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.cluster import Cluster
from tests.e2e.conftest import CAMPAIGN_DAG
from tests.fixtures import EmulatorControl

pytestmark = pytest.mark.slow

BUCKET = "oxen-campaigns"  # the campaign DAG's default ``bucket`` param
SIGNATURE_PARAMS = ("sig", "Signature", "X-Amz-Signature")


def _links(cluster: Cluster, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    path = f"/api/v2/dags/{CAMPAIGN_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/links"
    response = cluster.api("GET", path, params={"map_index": map_index})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_entries"] == len(body["extra_links"])
    return dict(body["extra_links"])


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _signatures(url: str) -> list[str]:
    query = _query(url)
    return [value for name in SIGNATURE_PARAMS for value in query.get(name, [])]


def test_campaign_tasks_link_to_what_they_made(
    cluster: Cluster,
    emulator: EmulatorControl,
    s3_endpoint: str,
    s3: Any,
    request: pytest.FixtureRequest,
) -> None:
    from PIL import Image

    s3.create_bucket(Bucket=BUCKET)
    cluster.unpause(CAMPAIGN_DAG)
    run_id = cluster.trigger(CAMPAIGN_DAG)
    # The run is left waiting for its review: end it, so later tests sharing the cluster (and
    # its bucket) see only their own runs at work.
    request.addfinalizer(lambda: cluster.end_run(CAMPAIGN_DAG, run_id))
    cluster.wait_for_task_state(CAMPAIGN_DAG, run_id, "review", "awaiting_input", timeout=240)

    # The provider's plugin (live links) loaded in the api-server without errors.
    plugins = cluster.api("GET", "/api/v2/plugins").json()["plugins"]
    assert "airflow_provider_oxen_links" in {p["name"] for p in plugins}
    errors = cluster.api("GET", "/api/v2/plugins/importErrors").json()["import_errors"]
    assert not [e for e in errors if "oxen" in json.dumps(e)], errors

    store = cluster.xcom(CAMPAIGN_DAG, run_id, "store")
    records = {record["generation_id"]: record for record in store}
    returned: list[str] = []

    # Generate (mapped): each instance links to its own image, a result URL Oxen signed just now.
    indexes = sorted(i for (task, i) in cluster.task_states(CAMPAIGN_DAG, run_id) if task == "generate")
    assert len(indexes) == len(store) == 4, indexes
    for index in indexes:
        [result] = cluster.xcom(CAMPAIGN_DAG, run_id, "generate", index)
        links = _links(cluster, run_id, "generate", index)
        assert set(links) == {"Oxen image"}, links
        url = links["Oxen image"]
        assert url.split("?", 1)[0] == result["result_url"] and {"expires", "sig"} <= set(_query(url)), url
        image = httpx.get(url, timeout=30)
        assert image.status_code == 200
        # Oxen's file, as it returned it (what S3 holds is that file, marked).
        assert hashlib.sha256(image.content).hexdigest() == records[result["generation_id"]]["oxen_sha256"]
        returned.append(url)
        # What the worker stored for the link when the task ended: nothing (there is no unsigned URL).
        assert cluster.xcom(CAMPAIGN_DAG, run_id, "generate", index, key="_link_OxenImageLink") == ""

    # Store: the console listing of the batch's prefix, and the manifest presigned on demand.
    links = _links(cluster, run_id, "store")
    assert set(links) == {"S3 folder", "Manifest"}, links
    prefix = store[0]["s3_prefix"]
    folder = links["S3 folder"]
    assert folder.startswith(f"https://console.aws.amazon.com/s3/buckets/{BUCKET}?"), folder
    assert _query(folder)["prefix"] == [f"{prefix}/"] and not _signatures(folder)
    manifest_url = links["Manifest"]
    assert manifest_url.startswith(f"{s3_endpoint}/{BUCKET}/{prefix}/manifest-") and _signatures(manifest_url)
    manifest = httpx.get(manifest_url, timeout=30).json()
    assert {image["s3_key"] for image in manifest["images"]} == {r["s3_key"] for r in store}
    returned.append(manifest_url)
    stored_manifest_link = cluster.xcom(CAMPAIGN_DAG, run_id, "store", key="_link_OxenManifestLink")
    assert stored_manifest_link.startswith(f"https://console.aws.amazon.com/s3/object/{BUCKET}?")

    # Review (waiting for its answer): the contact sheet, presigned on demand.
    links = _links(cluster, run_id, "review")
    assert set(links) == {"Contact sheet"}, links
    sheet_url = links["Contact sheet"]
    assert _signatures(sheet_url), sheet_url
    sheet = httpx.get(sheet_url, timeout=30)
    assert sheet.status_code == 200 and Image.open(io.BytesIO(sheet.content)).format == "PNG"
    returned.append(sheet_url)

    # Asked again, the links are signed again: they are computed when asked, not read back.
    time.sleep(1.1)
    again = _links(cluster, run_id, "store")["Manifest"]
    assert again != manifest_url and httpx.get(again, timeout=30).status_code == 200

    # Nothing signed that a link returned is stored anywhere in Airflow's database, and no
    # XCom of the run holds an Oxen-signed URL at all.
    database = cluster.dump().decode()
    for url in returned:
        for signature in _signatures(url):
            assert signature not in database, url.split("?", 1)[0]
    for key, value in cluster.query("SELECT key, value FROM xcom WHERE run_id = :run_id", run_id=run_id):
        text = value.decode() if isinstance(value, bytes) else str(value)
        assert "sig=" not in text and "Signature=" not in text, key
