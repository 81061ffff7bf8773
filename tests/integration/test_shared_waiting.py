"""Event-driven waiting shared across triggers: gaps, drops and outages never lose a completion."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.models import build_image_request
from airflow_provider_oxen.triggers import hub as hub_module
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
from tests.fixtures import API_KEY, EmulatorControl


def _enqueue(count: int, prompt: str = "shared wait") -> list[str]:
    with OxenHook() as hook:
        return [g.generation_id for g in hook.enqueue(build_image_request("ideogram-v4", prompt), count)]


async def _run_all(triggers: list[OxenGenerationTrigger], during: Any = None) -> list[list[dict[str, Any]]]:
    """Run triggers concurrently the way the triggerer does; collect every event each yields."""

    async def drain(trigger: OxenGenerationTrigger) -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    tasks = [asyncio.create_task(drain(t)) for t in triggers]
    if during is not None:
        await during()
    return await asyncio.gather(*tasks)


def _triggers(
    ids: list[str], per_trigger: int, strategy: str = "events", **kwargs: Any
) -> list[OxenGenerationTrigger]:
    groups = [ids[i : i + per_trigger] for i in range(0, len(ids), per_trigger)]
    defaults = {"poll_interval": 0.3, "deadline": time.time() + 30, "wait_strategy": strategy}
    return [OxenGenerationTrigger(generation_ids=g, **{**defaults, **kwargs}) for g in groups]


def _assert_each_completed_once(ids: list[str], events: list[list[dict[str, Any]]]) -> None:
    assert all(len(per_trigger) == 1 for per_trigger in events), "each trigger fires exactly one event"
    assert {e[0]["status"] for e in events} == {"success"}
    seen = Counter(row["generation_id"] for e in events for row in e[0]["generations"])
    assert seen == Counter(ids)
    assert all(row["status"] == "succeeded" for e in events for row in e[0]["generations"])


def test_many_triggers_share_one_stream_and_one_reconciliation(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=1.5, keepalive_seconds=0.5)
    ids = _enqueue(40)
    subscribers: list[int] = []

    async def watch() -> None:
        await asyncio.sleep(1.0)
        subscribers.append(oxen_conn.stats()["events_subscribers"])

    events = asyncio.run(_run_all(_triggers(ids, per_trigger=1), during=watch))
    _assert_each_completed_once(ids, events)
    assert subscribers == [1]
    gets = oxen_conn.route_count("GET /api/ai/queue/{id}")
    lists = oxen_conn.route_count("GET /api/ai/queue")
    # Completion events carry the result: no status read per generation, a few shared list calls.
    assert gets <= 5, gets
    assert 1 <= lists <= 6, lists
    assert hub_module._HUBS == {}, "the last trigger to leave closes the hub"


def test_a_dropped_stream_loses_no_completion(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=1.0)
    ids = _enqueue(12)

    async def drop_midway() -> None:
        await asyncio.sleep(0.5)
        oxen_conn.drop_streams()
        await asyncio.sleep(0.7)
        oxen_conn.drop_streams()

    events = asyncio.run(_run_all(_triggers(ids, per_trigger=3), during=drop_midway))
    _assert_each_completed_once(ids, events)


def test_a_missed_event_is_caught_by_the_safety_net(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.5)
    oxen_conn.suppress_events(3)
    ids = _enqueue(5)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=1, poll_interval=0.2)))
    _assert_each_completed_once(ids, events)


def test_unavailable_events_endpoint_falls_back_to_polling(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.5, events_enabled=False)
    ids = _enqueue(6)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=2, poll_interval=0.2)))
    _assert_each_completed_once(ids, events)
    assert oxen_conn.route_count("GET /api/events") >= 1


@pytest.mark.parametrize("strategy", ["events", "poll"])
def test_failures_are_reported_by_both_strategies(oxen_conn: EmulatorControl, strategy: str) -> None:
    oxen_conn.configure(render_seconds=0.3)
    oxen_conn.fault(type="generation_failure", error_message="model crashed", count=1)
    ids = _enqueue(3)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=3, strategy=strategy, poll_interval=0.2)))
    [[payload]] = events
    assert payload["status"] == "failed" and "model crashed" in payload["message"]
    assert len(payload["generations"]) == 3
    # The failure's text reaches the row (events: from the completion event itself).
    assert [row["error_message"] for row in payload["generations"] if row["status"] == "failed"] == [
        "model crashed"
    ]


def test_polling_strategy_completes_with_shared_list_calls(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=1.0)
    ids = _enqueue(20)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=1, strategy="poll", poll_interval=0.2)))
    _assert_each_completed_once(ids, events)
    assert oxen_conn.route_count("GET /api/events") == 0
    assert len(ids) <= oxen_conn.route_count("GET /api/ai/queue/{id}") <= len(ids) + 5


def test_queue_listing_errors_back_off_and_lose_nothing(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.5)
    # Every listing fails for a while (after the hook's own retries): the hub backs off, then recovers.
    oxen_conn.fault(type="status", status=503, count=12, method="GET", path="^/api/ai/queue$")
    ids = _enqueue(4)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=2, strategy="poll", poll_interval=0.2)))
    _assert_each_completed_once(ids, events)
    assert oxen_conn.route_count("GET /api/ai/queue") > 12


# -- Resilience of the shared hub (what a fake cannot stage better: tests/unit/test_hub_resilience.py) --


def test_an_unreadable_listing_row_does_not_stop_the_hub(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.6)
    ids = _enqueue(4)
    # The first listings carry rows the hub cannot parse, one of them for an id it waits for.
    bad_listing = {
        "count": 3,
        "generations": [
            {"status": "queued"},
            {"generation_id": ids[0], "status": "processing", "cost": "free"},
            {"generation_id": ids[1], "status": "processing"},
        ],
    }
    oxen_conn.fault(
        type="status", status=200, body=bad_listing, count=3, method="GET", path="^/api/ai/queue$"
    )
    # No cancel at the deadline: a cancel answers with the finished row and would hide a timeout.
    triggers = _triggers(ids, per_trigger=2, strategy="poll", poll_interval=0.2, cancel_on_timeout=False)
    events = asyncio.run(_run_all(triggers))
    _assert_each_completed_once(ids, events)
    assert len(oxen_conn.requests(method="GET", path="/api/ai/queue")) > 3, "the bad listings were served"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_event_stream_falls_back_to_polling_and_comes_back(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setattr(hub_module, "EVENTS_REPROBE_BASE", 0.4)
    oxen_conn.configure(render_seconds=1.5)
    oxen_conn.fault(type="status", status=status, count=1, method="GET", path="^/api/events$")
    ids = _enqueue(4)
    subscribers: list[int] = []

    async def watch() -> None:
        await asyncio.sleep(1.2)
        subscribers.append(oxen_conn.stats()["events_subscribers"])

    events = asyncio.run(_run_all(_triggers(ids, per_trigger=2, poll_interval=0.2), during=watch))
    _assert_each_completed_once(ids, events)
    assert oxen_conn.route_count("GET /api/events") >= 2, "the stream was probed again"
    assert subscribers == [1], "and it came back"


def test_a_forbidden_generation_fails_only_its_own_trigger(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.3)
    ids = _enqueue(3)
    oxen_conn.fault(type="status", status=403, count=-1, method="GET", path=f"^/api/ai/queue/{ids[0]}$")
    forbidden, others = asyncio.run(
        _run_all(
            [
                *_triggers(ids[:1], per_trigger=1, strategy="poll", poll_interval=0.2),
                *_triggers(ids[1:], per_trigger=2, strategy="poll", poll_interval=0.2),
            ]
        )
    )
    [payload] = forbidden
    assert payload["status"] == "failed"
    assert "Access denied" in payload["message"] and "403" in payload["message"]
    _assert_each_completed_once(ids[1:], [others])


def test_a_generation_unknown_to_oxen_fails_as_gone(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.3)
    ids = _enqueue(1)
    unknown = "00000000-0000-4000-8000-000000000000"
    [[payload]] = asyncio.run(_run_all(_triggers([*ids, unknown], per_trigger=2, poll_interval=0.2)))
    assert payload["status"] == "failed"
    rows = {row["generation_id"]: row for row in payload["generations"]}
    assert rows[ids[0]]["status"] == "succeeded"
    assert (rows[unknown]["status"], rows[unknown]["unavailable"]) == ("failed", "gone")
    assert "HTTP 404" in rows[unknown]["error_message"] and "gone" in rows[unknown]["error_message"]
    assert "enqueueing it again" in rows[unknown]["error_message"]
    assert oxen_conn.enqueue_posts() == 1, "a vanished generation is never enqueued again"


def test_a_stream_cut_after_every_event_reconnects_a_bounded_number_of_times_per_second(
    oxen_conn: EmulatorControl,
) -> None:
    oxen_conn.configure(render_seconds=0.1, queue_seconds=0.01)
    # Every stream is cut right after the first completion event it carries.
    oxen_conn.fault(type="drop_events", after_events=1, count=-1)
    ids = _enqueue(3)
    storm_seconds = 3.0

    async def scenario() -> tuple[int, list[list[dict[str, Any]]]]:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            hub_module.SharedHub("oxen_default", "events"),
            httpx.AsyncClient(base_url=oxen_conn.url, headers=auth, timeout=5) as http,
        ):
            await asyncio.sleep(0.2)
            before = oxen_conn.route_count("GET /api/events")

            async def noise() -> None:
                # Someone else's generations complete ten times a second on the same stream.
                loop = asyncio.get_running_loop()
                end = loop.time() + storm_seconds
                while loop.time() < end:
                    response = await http.post(
                        "/api/ai/queue", json={"model": "ideogram-v4", "prompt": "noise"}
                    )
                    response.raise_for_status()
                    await asyncio.sleep(0.1)

            noise_task = asyncio.create_task(noise())
            events = await _run_all(_triggers(ids, per_trigger=3, poll_interval=0.3))
            await noise_task
            return oxen_conn.route_count("GET /api/events") - before, events

    reconnects, events = asyncio.run(scenario())
    _assert_each_completed_once(ids, events)
    # At most one connection attempt per MIN_RECONNECT_SPACING (1 s), plus slack.
    assert reconnects <= storm_seconds / hub_module.MIN_RECONNECT_SPACING + 2, reconnects


def test_cancelling_the_first_trigger_while_the_hub_starts_spares_its_neighbour(
    oxen_conn: EmulatorControl,
) -> None:
    oxen_conn.configure(render_seconds=0.3)
    ids = _enqueue(2)
    first, second = _triggers(ids, per_trigger=1, poll_interval=0.2)

    async def scenario() -> list[dict[str, Any]]:
        cancelled = asyncio.create_task(anext(first.run()))
        neighbour = asyncio.create_task(anext(second.run()))
        await asyncio.sleep(0)  # the first acquirer is now starting the hub
        cancelled.cancel()
        event = await neighbour
        assert cancelled.cancelled()
        return [event.payload]

    [payload] = asyncio.run(scenario())
    assert payload["status"] == "success"
    assert hub_module._HUBS == {}
