"""The SSE stream: completion events, keep-alives, other event types, no events for cancels."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from .helpers import AUTH, aenqueue, collect_completions, control, event_stream, sse_events


@pytest.mark.asyncio
async def test_one_event_name_announces_successes_and_failures_among_other_events(base_url: str) -> None:
    control(base_url, "POST", "/faults", {"type": "generation_failure", "error_message": "GPU on fire"})
    async with event_stream(base_url) as (http, stream):
        assert stream.headers["content-type"].startswith("text/event-stream")
        (faulted,) = await aenqueue(http)  # the fault takes the next generation
        (invalid,) = await aenqueue(http, image_size="huge")
        (gid,) = await aenqueue(http)
        seen: list[str] = []
        outcomes: dict[str, dict[str, Any]] = {}

        async def read() -> None:
            async for event, data in sse_events(stream):
                seen.append(event)
                if event == "media_generation_completed":
                    outcomes[data["generation_id"]] = data
                if len(outcomes) == 3 and event == "credits_updated":
                    return

        await asyncio.wait_for(read(), 5)
    completed = outcomes[gid]
    assert set(completed) == {"generation_id", "status", "media_type", "model", "url"}
    assert completed["status"] == "succeeded" and completed["model"] == "ideogram-v4"
    assert completed["media_type"] == "image"
    assert ":" in seen  # the opening comment line
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(completed["url"])).status_code == 200
    assert outcomes[faulted] == {
        "generation_id": faulted,
        "status": "failed",
        "media_type": "image",
        "error": "GPU on fire",
    }
    assert outcomes[invalid]["status"] == "failed" and "image_size" in str(outcomes[invalid]["error"])
    assert set(outcomes[invalid]) == {"generation_id", "status", "media_type", "error"}


@pytest.mark.asyncio
async def test_keep_alive_comments_and_subscriber_count(base_url: str) -> None:
    control(base_url, "POST", "/config", {"keepalive_seconds": 0.1})
    async with event_stream(base_url) as (_, stream):
        assert control(base_url, "GET", "/stats")["events_subscribers"] == 1

        async def first_keepalive() -> str:
            async for event, data in sse_events(stream):
                if event == ":" and data == "keep-alive":
                    return data
            return ""

        assert await asyncio.wait_for(first_keepalive(), 3) == "keep-alive"
    for _ in range(150):  # the server notices the disconnect asynchronously
        if not control(base_url, "GET", "/stats")["events_subscribers"]:
            break
        await asyncio.sleep(0.02)
    assert control(base_url, "GET", "/stats")["events_subscribers"] == 0


@pytest.mark.asyncio
async def test_cancelled_generation_never_completes_or_announces(base_url: str) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 0.2})
    async with event_stream(base_url) as (http, stream):
        cancelled, kept = await aenqueue(http, num_generations=2)
        (await http.delete(f"/api/ai/queue/{cancelled}")).raise_for_status()
        seen = await collect_completions(stream, {kept}, timeout=3)
        await asyncio.sleep(0.1)
        row = (await http.get(f"/api/ai/queue/{cancelled}")).json()
    assert kept in seen and cancelled not in seen
    assert row["status"] == "cancelled" and row["result_url"] is None


@pytest.mark.asyncio
async def test_a_suppressed_event_is_missed_but_the_row_still_ends(base_url: str) -> None:
    """One suppressed event: of two successes one is announced; a failure is suppressed the same way."""
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=5) as http:
        control(base_url, "POST", "/events/suppress", {"count": 1})
        async with http.stream("GET", "/api/events") as stream:
            ids = set(await aenqueue(http, num_generations=2))
            seen = await collect_completions(stream, ids, timeout=1.0)
        assert len(seen) == 1 and seen.keys() < ids
        for gid in ids:
            assert (await http.get(f"/api/ai/queue/{gid}")).json()["status"] == "succeeded"

        control(base_url, "POST", "/events/suppress", {"count": 1})
        async with http.stream("GET", "/api/events") as stream:
            (failing,) = await aenqueue(http, image_size="huge")
            assert await collect_completions(stream, {failing}, timeout=0.8) == {}
        assert (await http.get(f"/api/ai/queue/{failing}")).json()["status"] == "failed"


@pytest.mark.asyncio
async def test_control_drop_cuts_open_streams(base_url: str) -> None:
    async with event_stream(base_url) as (_, stream):
        assert control(base_url, "POST", "/sse/drop") == {"dropped": 1}
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(collect_completions(stream, {"never"}, timeout=3), 4)
