"""Hook behaviour the emulator cannot produce, with HTTP stubbed by respx (the rest runs over a
real socket in tests/integration/test_hook_emulator.py). The model cache: per process, keyed by
API base URL and model id, for a fixed time."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from airflow_provider_oxen.hooks import oxen
from airflow_provider_oxen.hooks.oxen import MODEL_CACHE, OxenAsyncHook, OxenHook
from airflow_provider_oxen.models import build_image_request

BASE = "http://oxen.test"
KEY = "stubbed-test-key-0001"
SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, "image_size": {"enum": ["square_hd", "square"]}},
}
MODEL = {"id": "flux", "capabilities": {"output": ["image"]}, "request_schema": SCHEMA}


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    MODEL_CACHE.clear()
    conn = {
        "conn_type": "oxen",
        "host": BASE,
        "password": KEY,
        "extra": {"max_retries": 2, "backoff_base": 0.001, "backoff_max": 0.01},
    }
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_OTHER", json.dumps({**conn, "host": "http://other.test"}))


@respx.mock
def test_a_model_is_cached_by_its_url_and_id_only() -> None:
    ours = respx.get(f"{BASE}/api/ai/models/flux").mock(return_value=httpx.Response(200, json=MODEL))
    other = respx.get("http://other.test/api/ai/models/flux").mock(
        return_value=httpx.Response(200, json=MODEL)
    )
    with OxenHook() as hook, OxenHook("oxen_other") as other_hook:
        hook.prepare(build_image_request("flux", "a"))
        assert hook.get_model("flux").id == OxenHook().get_model("flux").id
        assert ours.call_count == 1
        other_hook.get_model("flux")
        assert other.call_count == 1
        hook.get_model("flux", refresh=True)
        assert ours.call_count == 2


@respx.mock
def test_a_cached_model_expires_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(oxen.time, "monotonic", lambda: now[0])
    route = respx.get(f"{BASE}/api/ai/models/flux").mock(return_value=httpx.Response(200, json=MODEL))
    with OxenHook() as hook:
        hook.get_model("flux")
        now[0] += 600
        hook.get_model("flux")
        assert route.call_count == 1
        now[0] += 1
        hook.get_model("flux")
        assert route.call_count == 2


@respx.mock
async def _async_listing(body: bytes) -> object:
    respx.get(f"{BASE}/api/ai/queue").mock(return_value=httpx.Response(200, content=body))
    async with OxenAsyncHook() as hook:
        return await hook.list_queue_body()


def test_async_listing_is_decoded_like_json_and_refused_typed_when_not_json() -> None:
    """The hub reads the raw listing body; a body that is not JSON is refused typed."""
    import asyncio

    from airflow_provider_oxen.exceptions import OxenAPIStatusError

    body = {"count": 2, "generations": [{"generation_id": "a", "status": "queued"}, {"generation_id": "b"}]}
    assert asyncio.run(_async_listing(json.dumps(body).encode())) == body
    with pytest.raises(OxenAPIStatusError, match="not JSON") as info:
        asyncio.run(_async_listing(b"<html>maintenance</html>"))
    assert info.value.status_code == 200
