"""The model cache: per process, keyed by API base URL and model id, for a fixed time."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from airflow_provider_oxen.hooks import oxen
from airflow_provider_oxen.hooks.oxen import MODEL_CACHE, OxenHook

URL = "http://oxen.test"
MODEL = {
    "id": "ideogram-v4",
    "pricing": {"per_image": "0.06"},
    "request_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
}


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    MODEL_CACHE.clear()
    for name, host in (("OXEN_DEFAULT", URL), ("OXEN_OTHER", "http://other.test")):
        conn = {"conn_type": "oxen", "host": host, "password": "k", "extra": {"max_retries": 0}}
        monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps(conn))


@respx.mock
def test_a_model_is_found_by_its_url_and_id_only() -> None:
    ours = respx.get(f"{URL}/api/ai/models/ideogram-v4").mock(return_value=httpx.Response(200, json=MODEL))
    other = respx.get("http://other.test/api/ai/models/ideogram-v4").mock(
        return_value=httpx.Response(200, json=MODEL)
    )
    with OxenHook() as hook, OxenHook("oxen_other") as other_hook:
        assert hook.get_model("ideogram-v4").id == OxenHook().get_model("ideogram-v4").id
        assert ours.call_count == 1
        other_hook.get_model("ideogram-v4")
        assert other.call_count == 1
        hook.get_model("ideogram-v4", refresh=True)
        assert ours.call_count == 2


@respx.mock
def test_an_entry_expires_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(oxen.time, "monotonic", lambda: now[0])
    route = respx.get(f"{URL}/api/ai/models/ideogram-v4").mock(return_value=httpx.Response(200, json=MODEL))
    with OxenHook() as hook:
        hook.get_model("ideogram-v4")
        now[0] += 600
        hook.get_model("ideogram-v4")
        assert route.call_count == 1
        now[0] += 1
        hook.get_model("ideogram-v4")
        assert route.call_count == 2
