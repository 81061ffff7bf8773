"""Event-driven waiting shared across triggers: gaps, drops and outages never lose a completion."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.models import build_image_request
from airflow_provider_oxen.triggers import hub as hub_module
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
from tests.fixtures import EmulatorControl


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


def test_a_stream_cut_after_some_events_loses_no_completion(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=0.8)
    oxen_conn.fault(type="drop_events", after_events=2, count=3)
    ids = _enqueue(10)
    events = asyncio.run(_run_all(_triggers(ids, per_trigger=2)))
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
