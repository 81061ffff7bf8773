"""OxenHook and OxenAsyncHook over a real socket against the emulator. What the triggerer does
with the async hook (follow generations by events and reads, fall back when there are no events)
is proven through the triggers in test_shared_waiting.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from typing import Any

import pytest
from PIL import Image

from airflow_provider_oxen.exceptions import (
    OxenAPIStatusError,
    OxenAuthenticationError,
    OxenBadRequestError,
    OxenRequestMayHaveSucceededError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import MODEL_CACHE, MODEL_TTL, OxenAsyncHook, OxenHook, PreparedRequest
from airflow_provider_oxen.models import GenerationStatus, build_image_request
from tests.fixtures import API_KEY, EmulatorControl, connection_json


def _follow(hook: OxenHook, ids: list[str], timeout: float = 20) -> dict[str, GenerationStatus]:
    payload = hook.wait_for_generations(ids, deadline=time.time() + timeout, poll_interval=0.1)
    return {row["generation_id"]: GenerationStatus(row["status"]) for row in payload["generations"]}


def test_sync_generation_returns_a_real_image(oxen_conn: EmulatorControl) -> None:
    request = build_image_request("ideogram-v4", "A poster that says HELLO", image_size="landscape_4_3")
    with OxenHook() as hook:
        response = hook.generate_image(request)
        assert len(response.images) == 1 and response.images[0].url
        buffer = io.BytesIO()
        result = hook.download_to(response.images[0].url, buffer)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.size == (1024, 768)
    assert image.format == "JPEG"
    assert result.size == len(buffer.getvalue()) and len(result.sha256) == 64


def test_enqueue_six_follow_download_each(oxen_conn: EmulatorControl) -> None:
    request = build_image_request("ideogram-v4", "Six tiles", image_size="square", output_format="png")
    with OxenHook() as hook:
        enqueued = hook.enqueue(request, 6)
        ids = [g.generation_id for g in enqueued]
        assert len(set(ids)) == 6
        assert _follow(hook, ids) == dict.fromkeys(ids, GenerationStatus.SUCCEEDED)
        for generation_id in ids:
            row = hook.get_generation(generation_id)
            buffer = io.BytesIO()
            hook.download_to(row.result_url or "", buffer)
            image = Image.open(io.BytesIO(buffer.getvalue()))
            assert (image.size, image.format) == ((512, 512), "PNG")
    posts = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert [p["json"]["num_generations"] for p in posts] == [4, 2]


def test_cancel_a_queued_generation(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(queue_seconds=30)
    with OxenHook() as hook:
        [generation] = hook.enqueue(build_image_request("ideogram-v4", "cancel me"))
        assert hook.get_generation(generation.generation_id).status is GenerationStatus.QUEUED
        assert hook.cancel_generation(generation.generation_id).status is GenerationStatus.CANCELLED
        assert hook.get_generation(generation.generation_id).status is GenerationStatus.CANCELLED
        assert generation.generation_id not in [g.generation_id for g in hook.list_queue()]


def test_sync_endpoint_validation_error_is_typed(oxen_conn: EmulatorControl) -> None:
    request = build_image_request("flux-2-dev", "cat", image_size="gigantic")
    with OxenHook() as hook:
        hook.generate_image(request)  # flux-2-dev has no schema: accepted
    klein = "black-forest-labs-flux-2-klein-4b"
    with OxenHook() as hook:
        # Our own check refuses it first; sent anyway (prepared by hand), the API's 400 is typed too.
        with pytest.raises(OxenValidationError, match="num_inference_steps"):
            hook.generate_image(build_image_request(klein, "cat", num_inference_steps=0))
        unchecked = PreparedRequest(klein, {"prompt": "cat", "num_inference_steps": 0}, hook.get_model(klein))
        with pytest.raises(OxenBadRequestError) as info:
            hook.generate_image(unchecked)
    assert info.value.status_code == 400 and info.value.field == "num_inference_steps"
    assert len(oxen_conn.requests(method="POST", path="/api/ai/images/generate")) == 2


def test_401_fails_at_once_without_retries_and_the_test_button_says_so(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", connection_json(oxen_conn.url, api_key="wrong-key"))
    with OxenHook() as hook, pytest.raises(OxenAuthenticationError) as info:
        hook.list_queue()
    assert info.value.status_code == 401
    assert "wrong-key" not in str(info.value)
    assert len(oxen_conn.requests()) == 1

    async def read() -> None:  # the triggerer's hook alike
        async with OxenAsyncHook() as hook:
            await hook.list_queue_body()

    with pytest.raises(OxenAuthenticationError, match="401") as info:
        asyncio.run(read())
    assert "wrong-key" not in str(info.value) and len(oxen_conn.requests()) == 2
    # The connection form's test button says so too.
    ok, message = OxenHook().test_connection()
    assert ok is False and "401" in message


def test_429_with_retry_after_is_waited_out(oxen_conn: EmulatorControl) -> None:
    oxen_conn.fault(type="status", status=429, retry_after=1, count=1, method="POST", path="^/api/ai/queue$")
    with OxenHook() as hook:
        started = time.monotonic()
        enqueued = hook.enqueue(build_image_request("ideogram-v4", "patience"))
        waited = time.monotonic() - started
    assert len(enqueued) == 1
    assert waited >= 1.0
    assert oxen_conn.stats()["generations_created"] == 1
    assert len(oxen_conn.requests(method="POST", path="/api/ai/queue")) == 2


def test_503_bursts_are_retried_for_status_reads_and_the_key_is_never_logged(
    oxen_conn: EmulatorControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with OxenHook() as hook:
        [generation] = hook.enqueue(build_image_request("ideogram-v4", "bursty"))
        oxen_conn.fault(type="status", status=503, count=2, method="GET", path="^/api/ai/queue/")
        assert hook.get_generation(generation.generation_id).generation_id == generation.generation_id
    reads = oxen_conn.requests(method="GET", path=f"/api/ai/queue/{generation.generation_id}")
    assert len(reads) == 3 and all(r["authorized"] for r in reads)  # the bearer key on each try
    assert "503" in caplog.text and API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ({"type": "delay", "seconds": 3}, {"timeout": 1}),  # a read timeout
        ({"type": "drop"}, {}),  # the connection dropped
    ],
)
def test_an_enqueue_that_may_have_reached_oxen_is_not_retried(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any], extra: dict[str, Any]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", connection_json(oxen_conn.url, **extra))
    oxen_conn.fault(**fault, after_processing=True, method="POST", path="^/api/ai/queue$")
    with OxenHook() as hook:
        hook.prepare(build_image_request("ideogram-v4", "slow"))  # warm the schema cache
        with pytest.raises(OxenRequestMayHaveSucceededError, match="not retried"):
            hook.enqueue(build_image_request("ideogram-v4", "slow"))
    time.sleep(0.2)
    assert len(oxen_conn.requests(method="POST", path="/api/ai/queue")) == 1
    assert oxen_conn.stats()["generations_created"] == 1


def test_the_connection_test_button_passes(oxen_conn: EmulatorControl) -> None:
    assert OxenHook().test_connection()[0] is True


def test_the_user_agent_tells_worker_from_triggerer_traffic(oxen_conn: EmulatorControl) -> None:
    """Operators read request logs (theirs, or the emulator's) by which side made each call; the
    API key never reaches such a log."""
    with OxenHook() as hook:
        hook.enqueue(build_image_request("ideogram-v4", "secret keeping"))

    async def read() -> None:
        async with OxenAsyncHook() as hook:
            await hook.list_queue_body()

    asyncio.run(read())
    agents = {entry["route"]: entry["user_agent"] for entry in oxen_conn.requests()}
    assert agents["/api/ai/models/{id}"].startswith("airflow-provider-oxen/")
    assert agents["/api/ai/models/{id}"].endswith("(sync)"), agents
    assert agents["/api/ai/queue"].endswith("(async)"), agents
    assert API_KEY not in json.dumps(oxen_conn.requests()) and API_KEY not in oxen_conn.requests_text()
    assert all(r["authorized"] for r in oxen_conn.requests())  # the key reached the server, not its log


def test_a_model_is_cached_per_process_by_its_url_and_id_for_a_fixed_time(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = oxen_conn.url.replace("127.0.0.1", "localhost")  # the same server, another base URL
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_OTHER", connection_json(other))

    def reads() -> int:
        return oxen_conn.route_count("GET /api/ai/models/{id}")

    def age(seconds: float) -> None:
        for key, (stored_at, model) in list(MODEL_CACHE.items()):
            MODEL_CACHE[key] = (stored_at - seconds, model)

    with OxenHook() as hook, OxenHook("oxen_other") as other_hook:
        hook.prepare(build_image_request("ideogram-v4", "a"))
        assert hook.get_model("ideogram-v4").id == OxenHook().get_model("ideogram-v4").id
        assert reads() == 1
        other_hook.get_model("ideogram-v4")
        assert reads() == 2
        hook.get_model("ideogram-v4", refresh=True)
        assert reads() == 3
        age(MODEL_TTL - 1)
        hook.get_model("ideogram-v4")
        assert reads() == 3
        age(2)  # past the TTL
        hook.get_model("ideogram-v4")
        assert reads() == 4


def test_an_async_listing_that_is_not_json_is_refused_typed(oxen_conn: EmulatorControl) -> None:
    """The hub reads the raw listing body (read as JSON: the hub's tests in
    test_shared_waiting.py, e.g. the polling one, which reads each generation about once)."""

    async def listing() -> Any:
        async with OxenAsyncHook() as hook:
            return await hook.list_queue_body()

    oxen_conn.fault(
        type="status", status=200, body="<html>maintenance</html>", method="GET", path="^/api/ai/queue$"
    )
    with pytest.raises(OxenAPIStatusError, match="not JSON") as info:
        asyncio.run(listing())
    assert info.value.status_code == 200
