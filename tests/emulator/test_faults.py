"""Fault injection through ``/_emulator/faults``: each fault type does what the tests rely on."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .helpers import (
    AUTH,
    PLAIN,
    InputServer,
    aenqueue,
    assert_error,
    collect_completions,
    control,
    enqueue,
    png_bytes,
    sse_events,
    wait_for_status,
)

QUEUE = {"model": "ideogram-v4", "prompt": "faulty"}
T2V = "kling-video-v2-6-pro-text-to-video"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "rate_limited"),
        (402, "insufficient_credits"),
        (400, "invalid_params"),
        (401, "unauthenticated"),
        (404, "resource_not_found"),
        (500, "unknown_error"),
        (502, "upstream_error"),
        (503, "unknown_error"),
        (418, "invalid_request"),
    ],
)
def test_status_faults_without_a_body_use_the_documented_envelope(
    client: httpx.Client, base_url: str, status: int, kind: str
) -> None:
    """One-shot by default: the next request is answered normally (Retry-After is served when set:
    tests/integration test_429_with_retry_after_is_waited_out)."""
    control(base_url, "POST", "/faults", {"type": "status", "status": status, "path": "^/api/ai/queue$"})
    assert "injected fault" in assert_error(client.post("/api/ai/queue", json=QUEUE), status, kind).lower()
    assert control(base_url, "GET", "/stats")["generations_created"] == 0
    assert control(base_url, "GET", "/faults") == {"faults": []}  # used up
    assert client.post("/api/ai/queue", json=QUEUE).status_code == 200


@pytest.mark.parametrize("body", [{"error": {"message": "Model not found: x"}}, "upstream down"])
def test_status_fault_with_a_body_sends_it_verbatim_to_the_method_it_names(
    client: httpx.Client, base_url: str, body: object
) -> None:
    fault = {"type": "status", "status": 503, "body": body, "method": "GET", "path": "/api/ai/models"}
    control(base_url, "POST", "/faults", {**fault, "count": -1})
    assert client.post("/api/ai/queue", json=QUEUE).status_code == 200
    for _ in range(3):
        response = client.get("/api/ai/models/ideogram-v4")
        assert response.status_code == 503
        assert (response.json() if isinstance(body, dict) else response.text) == body
    control(base_url, "DELETE", "/faults")
    assert client.get("/api/ai/models").status_code == 200


def test_delay_before_processing(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/faults", {"type": "delay", "seconds": 0.3, "path": "/api/ai/models"})
    started = time.monotonic()
    assert client.get("/api/ai/models").status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("after_processing", [False, True])
def test_drop_closes_the_connection(client: httpx.Client, base_url: str, after_processing: bool) -> None:
    control(
        base_url,
        "POST",
        "/faults",
        {"type": "drop", "after_processing": after_processing, "method": "POST", "path": "^/api/ai/queue$"},
    )
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/ai/queue", json=QUEUE)
    created = control(base_url, "GET", "/stats")["generations_created"]
    assert created == (1 if after_processing else 0)
    assert client.post("/api/ai/queue", json=QUEUE).status_code == 200  # one-shot


@pytest.mark.parametrize("kind", ["image", "edit", "video"])
def test_generation_faults_fail_or_stall_one_generation_each(
    client: httpx.Client, base_url: str, input_server: InputServer, kind: str
) -> None:
    """Armed for a model, each fault hits the next generation of it; a retry of the stalled one renders."""
    url = input_server.add("/inputs/faulty.png", png_bytes((64, 48), (20, 40, 160)))
    bodies = {"image": {"model": "ideogram-v4"}, "edit": {"model": "qwen-image-edit", "input_image": url}}
    body = bodies.get(kind, {"model": T2V})
    media_type = "video" if kind == "video" else "image"
    fault = {"type": "generation_failure", "model": body["model"], "error_message": "melted"}
    control(base_url, "POST", "/faults", fault)
    control(base_url, "POST", "/faults", {"type": "stall_generation", "model": body["model"]})
    failed, stalled, normal = enqueue(client, prompt="x", num_generations=3, **body)
    row = wait_for_status(client, failed, {"succeeded", "failed"})
    assert (row["status"], row["error_message"], row["media_type"]) == ("failed", "melted", media_type)
    wait_for_status(client, normal, {"succeeded"}, timeout=10)
    time.sleep(0.2)
    assert client.get(f"/api/ai/queue/{stalled}").json()["status"] == "processing"
    listing = client.get("/api/ai/queue", params={"media_type": media_type}).json()
    assert [r["generation_id"] for r in listing["generations"]] == [stalled]
    retried = client.post(f"/api/ai/queue/{stalled}/retry").json()["generations"][0]["generation_id"]
    assert client.get(f"/api/ai/queue/{stalled}").json()["status"] == "cancelled"
    assert wait_for_status(client, retried, {"succeeded"}, timeout=10)["media_type"] == media_type


def test_bad_faults_are_rejected(base_url: str) -> None:
    for fault in (
        {"type": "explode"},
        {"type": "status", "status": 42},
        {"type": "drop", "path": "("},
        {"type": "delay", "count": 0},
    ):
        assert PLAIN.post(f"{base_url}/_emulator/faults", json=fault).status_code == 400


@pytest.mark.asyncio
async def test_drop_events_cuts_streams_after_k_completions(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH) as http:
        async with http.stream("GET", "/api/events") as stream:
            control(base_url, "POST", "/faults", {"type": "drop_events", "after_events": 1})
            response = await http.post("/api/ai/queue", json={**QUEUE, "num_generations": 3})
            ids = {row["generation_id"] for row in response.json()["generations"]}
            seen: set[str] = set()

            async def read() -> None:
                async for event, data in sse_events(stream):
                    if event == "media_generation_completed":
                        seen.add(data["generation_id"])

            with pytest.raises(httpx.RemoteProtocolError):
                await asyncio.wait_for(read(), 3)
            assert len(seen) == 1 and seen < ids
        # The fault was for one stream; a new stream is not cut.
        async with http.stream("GET", "/api/events") as again:
            more = set(await aenqueue(http))
            assert (await collect_completions(again, more, timeout=3)).keys() == more
