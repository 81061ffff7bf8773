"""Registrations the open event stream covers cost no request (docs/performance.md).

A generation the last listing showed in flight, while the current stream stayed open, can
only finish after the stream opened: its completion event reaches the hub, before or after
its trigger registers. Those registrations need neither a listing nor a read; any other
registered id gets one status read, never a listing. The safety-net listing keeps its
schedule whatever registrations do, and a gap (reconnect) brings the listing back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from airflow_provider_oxen.models import GenerationStatus, OxenEvent
from airflow_provider_oxen.triggers import hub as hub_module
from airflow_provider_oxen.triggers.hub import OxenHub
from airflow_provider_oxen.waiting import StatusTracker
from tests.unit.test_hub_resilience import (
    FakeHook,
    _bare_hub,
    _completion,
    _hub,
    _open_stream,
    _raise,
    _register,
    _row,
    _sequence,
    _succeeded,
    _wait,
)

pytestmark = pytest.mark.asyncio


async def _covered_hub(in_flight: list[str]) -> tuple[OxenHub, FakeHook]:
    """A hub whose stream is open and whose last listing (made while it stayed open) showed
    ``in_flight``; one waited-for id ("first") made that listing happen."""
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, ["first"])
    fake.listing = lambda: {"generations": [_row(i, "processing") for i in ["first", *in_flight]]}
    await hub.reconcile()
    hub._wake.clear()
    return hub, fake


async def test_a_registration_the_stream_covers_wakes_no_round_and_costs_no_request() -> None:
    """Not even when a listing shows it has left the queue: its event is on the way."""
    hub, fake = await _covered_hub(["g1", "g2"])
    lists_before = fake.list_calls
    [waiter] = _register(hub, ["g1"])
    assert not hub._wake.is_set()
    await hub.catch_up()
    fake.listing = lambda: {"generations": [_row("first", "processing")]}  # g1 finished
    await hub.reconcile()
    hub._on_event(_completion("g1", status="succeeded", url="https://r/g1"))
    assert (fake.list_calls - lists_before, sum(fake.reads.values())) == (1, 0)  # the round's own listing
    assert waiter.changed.is_set()


async def test_an_event_that_came_before_its_trigger_registered_completes_it_at_once() -> None:
    hub, fake = await _covered_hub(["late"])
    # The render finished while its task was still deferring: nobody waited for it yet.
    hub._on_event(_completion("late", status="failed", error="NSFW content detected"))
    tracker = StatusTracker(["late"])
    hub.register(tracker, 0.05).drain()
    row = tracker.rows["late"]
    assert row.status is GenerationStatus.FAILED
    assert row.error_message == "NSFW content detected"
    assert (sum(fake.reads.values()), hub._wake.is_set()) == (0, False)


async def test_an_id_the_listing_did_not_show_in_flight_gets_one_read_and_no_listing() -> None:
    hub, fake = await _covered_hub([])
    lists_before = fake.list_calls
    fake.rows["done-early"] = lambda: _succeeded("done-early")
    tracker = StatusTracker(["done-early", "new"])  # "new": enqueued after that listing
    waiter = hub.register(tracker, 0.05)
    assert hub._wake.is_set()
    await hub.catch_up()
    waiter.drain()
    assert (fake.list_calls - lists_before, sum(fake.reads.values())) == (0, 2)
    assert tracker.rows["done-early"].status is GenerationStatus.SUCCEEDED
    assert "new" in hub._covered  # found queued after the stream opened: covered from now on


async def test_an_event_during_a_catch_up_read_is_not_undone_by_the_read() -> None:
    hub, fake = await _covered_hub([])
    gate = asyncio.Event()
    original = fake.get_generation

    async def slow_read(generation_id: str) -> Any:
        await gate.wait()
        return await original(generation_id)  # answers "queued": stale by then

    fake.get_generation = slow_read  # type: ignore[method-assign]
    tracker = StatusTracker(["g1"])
    waiter = hub.register(tracker, 0.05)
    reading = asyncio.ensure_future(hub.catch_up())
    await asyncio.sleep(0)
    hub._on_event(_completion("g1", status="succeeded", url="https://r/g1"))
    gate.set()
    await reading
    waiter.drain()
    assert "g1" not in hub._covered  # a later trigger for g1 reads it instead of waiting for an event gone by
    assert tracker.rows["g1"].status is GenerationStatus.SUCCEEDED


async def test_a_listing_that_lags_behind_the_stream_covers_nothing_already_finished() -> None:
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, ["first"])
    hub._on_event(_completion("g1", status="succeeded", url="https://r/g1"))
    # The listing still shows g1, whose event already came.
    fake.listing = lambda: {"generations": [_row("first", "processing"), _row("g1", "processing")]}
    await hub.reconcile()
    assert "g1" not in hub._covered
    tracker = StatusTracker(["g1"])
    hub.register(tracker, 0.05).drain()
    assert tracker.rows["g1"].status is GenerationStatus.SUCCEEDED


async def test_after_a_reconnect_registrations_are_covered_only_by_a_new_listing() -> None:
    hub, fake = await _covered_hub(["g1", "g2"])
    assert hub._stream_covers()
    hub._stream_open = False  # the stream broke: events of the gap are lost
    _open_stream(hub)
    assert not hub._stream_covers()
    _register(hub, ["g1"])
    assert hub._wake.is_set()  # a round, which lists (see the loop test below)
    fake.listing = lambda: {"generations": [_row("first", "processing"), _row("g2", "processing")]}
    await hub.reconcile()
    assert hub._stream_covers() and "g2" in hub._covered


async def test_finished_events_are_remembered_for_two_listing_rounds_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "FINISHED_MEMORY", 3)
    hub, _ = await _covered_hub([])
    for i in range(5):
        hub._on_event(_completion(f"e{i}", status="succeeded", url=f"https://r/e{i}"))
    assert sorted(hub._finished) == ["e2", "e3", "e4"]
    await hub.reconcile()  # one turn over: still remembered
    assert sorted({**hub._finished, **hub._finished_before}) == ["e2", "e3", "e4"]
    await hub.reconcile()  # two: forgotten (a trigger registering now reads its row)
    assert not {**hub._finished, **hub._finished_before}


def _stream_then_events(
    events: asyncio.Queue[OxenEvent],
) -> Callable[[Callable[[], None]], AsyncIterator[OxenEvent]]:
    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        on_open()
        while True:
            yield await events.get()

    return stream


async def test_a_running_hub_lists_on_schedule_while_covered_registrations_keep_arriving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a real loop, 40 registrations, one every 25 ms: the 20 ids the listings show in
    flight cost nothing, the 20 enqueued later one read each, none a listing of its own; the
    safety net still lists on its own schedule; every wait ends through its event."""
    monkeypatch.setattr(hub_module, "SAFETY_FACTOR", 8.0)  # 0.05 s polling: a listing per 0.4 s
    ids = [f"g{i}" for i in range(40)]
    fake = FakeHook()
    events: asyncio.Queue[OxenEvent] = asyncio.Queue()
    fake.stream = _stream_then_events(events)
    listings: list[float] = []

    def listing() -> Any:
        listings.append(time.monotonic())
        # The 20 enqueued later are listed once they exist (here: once the hub read them).
        return {"generations": [_row(i, "processing") for i in ids if i in ids[:20] or fake.reads[i]]}

    fake.listing = listing
    hub = _hub(fake, mode="events")
    first = asyncio.ensure_future(_wait(hub, ["g0"], timeout=10))
    while not hub._stream_covers():  # noqa: ASYNC110 (no event to wait on: poll the hub's state)
        await asyncio.sleep(0.01)
    started = time.monotonic()
    waits = [first]
    for generation_id in ids[1:]:
        waits.append(asyncio.ensure_future(_wait(hub, [generation_id], timeout=10)))
        await asyncio.sleep(0.025)
    await asyncio.sleep(0.2)  # the last catch-up round reads before the events come
    for generation_id in ids:
        events.put_nowait(_completion(generation_id, status="succeeded", url=f"https://r/{generation_id}"))
    trackers = await asyncio.gather(*waits)
    await hub.close()
    # About a second of registrations: the safety net's 0.4 s schedule, not one per registration.
    since = [t - started for t in listings if t >= started]
    assert 1 <= len(since) <= 4, since
    assert sum(fake.reads.values()) == 20
    assert {t.rows[i].status for t, i in zip(trackers, ids, strict=True)} == {GenerationStatus.SUCCEEDED}


async def test_in_poll_mode_every_registration_still_brings_a_listing() -> None:
    hub, fake = _bare_hub()
    fake.listing = lambda: {"generations": [_row("g1", "processing"), _row("g2", "processing")]}
    _register(hub, ["g1"])
    await hub.reconcile()
    hub._wake.clear()
    _register(hub, ["g2"])
    assert (hub._stream_covers(), hub._wake.is_set()) == (False, True)


def _stream_opening_after(seconds: float) -> Callable[[Callable[[], None]], AsyncIterator[OxenEvent]]:
    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        await asyncio.sleep(seconds)  # connecting (a busy triggerer, a slow API)
        on_open()
        await asyncio.sleep(3600)
        yield OxenEvent(event="never")

    return stream


async def test_the_first_listing_waits_for_the_stream_so_one_listing_covers_the_start() -> None:
    fake = FakeHook()
    fake.stream = _stream_opening_after(0.3)
    fake.listing = lambda: {"generations": [_row("g1", "processing"), _row("g2", "processing")]}
    hub = _hub(fake, mode="events")
    started = time.monotonic()
    hub.register(StatusTracker(["g1"]), 1.0)  # a safety net 6 s away
    while not fake.list_calls:  # noqa: ASYNC110 (the fake records calls; nothing to await)
        await asyncio.sleep(0.01)
    assert time.monotonic() - started >= 0.3
    await asyncio.sleep(0.3)
    hub.register(StatusTracker(["g2"]), 1.0)  # covered by that one listing
    await asyncio.sleep(0.3)
    covered = hub._stream_covers()
    await hub.close()
    assert (fake.list_calls, covered) == (1, True)


async def test_a_stream_that_never_connects_holds_up_only_the_first_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "FIRST_STREAM_WAIT", 0.2)
    fake = FakeHook()
    fake.stream = _stream_opening_after(3600)
    listings: list[float] = []
    fake.listing = lambda: listings.append(time.monotonic()) or {"generations": []}  # type: ignore[func-returns-value]
    hub = _hub(fake, mode="events")
    started = time.monotonic()
    _register(hub, ["g1"])  # polled every 0.05 s while the stream is not open
    await asyncio.sleep(0.6)
    await hub.close()
    assert listings[0] - started >= 0.2
    assert len(listings) >= 3, listings  # then the polling interval, with no wait for the stream


async def test_one_waiter_asking_for_no_interval_cannot_make_the_hub_list_non_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub lists at the shortest interval any waiter asks for: it is clamped to the floor."""
    monkeypatch.setattr(hub_module, "MIN_POLL_INTERVAL", 0.5)
    fake = FakeHook()
    fake.listing = lambda: {"generations": [_row("g1", "queued"), _row("g2", "queued")]}
    hub = _hub(fake, mode="poll")
    hub.register(StatusTracker(["g1"]), 0.0)
    hub.register(StatusTracker(["g2"]), 5.0)
    await asyncio.sleep(1.2)
    await hub.close()
    assert 2 <= fake.list_calls <= 3  # at 0, 0.5 and 1.0 s (not every 50 ms)


# -- review fixes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [["queued"], {"state": "queued"}, 3, None])
async def test_a_listing_row_with_an_odd_status_does_not_break_the_round(status: Any) -> None:
    hub, fake = await _covered_hub([])
    fake.rows["g1"] = lambda: _succeeded("g1")
    tracker = StatusTracker(["g1"])
    waiter = hub.register(tracker, 0.05)
    fake.listing = lambda: {"generations": [{"generation_id": "someone-else", "status": status}]}
    assert await hub.reconcile() is True  # g1 is not listed: read, and delivered
    waiter.drain()
    assert tracker.rows["g1"].status is GenerationStatus.SUCCEEDED


async def test_an_id_that_ended_while_the_listing_was_on_its_way_is_not_covered_by_it() -> None:
    hub, fake = await _covered_hub([])
    _register(hub, ["g1"])
    gate = asyncio.Event()

    async def slow_listing(**filters: Any) -> Any:
        await gate.wait()
        return {"generations": [_row("first", "processing"), _row("g1", "processing")]}  # stale

    fake.list_queue_body = slow_listing  # type: ignore[method-assign]
    listing = asyncio.ensure_future(hub.reconcile())
    await asyncio.sleep(0)
    hub._on_event(_completion("g1", status="succeeded", url="https://r/g1"))  # its trigger's
    gate.set()
    await listing
    assert "g1" not in hub._covered
    # A second trigger for g1 (a sensor, say) registers afterwards: it reads g1, it does not
    # wait for an event that has gone by.
    fake.rows["g1"] = lambda: _succeeded("g1")
    _register(hub, ["g1"])
    await hub.catch_up()
    assert fake.reads["g1"] == 1


async def test_an_id_left_unfinished_loses_its_coverage() -> None:
    hub, _ = await _covered_hub(["g1"])
    [waiter] = _register(hub, ["g1"])
    hub.unregister(waiter)  # a deadline: the trigger cancelled it, and no event will come
    assert "g1" not in hub._covered


async def test_what_a_failure_left_unchecked_is_checked_again() -> None:
    """A failed listing keeps registrations due; a catch-up read that failed is read again."""
    from airflow_provider_oxen.exceptions import OxenServerError

    busy = OxenServerError("busy", status_code=503)
    hub, fake = _bare_hub()
    _register(hub, ["g0"])
    fake.listing = _raise(busy)
    assert await hub.reconcile() is False
    assert set(hub._unchecked) == {"g0"}
    hub, fake = await _covered_hub([])
    fake.rows["g1"] = _sequence(busy, _succeeded("g1"))
    tracker = StatusTracker(["g1"])
    waiter = hub.register(tracker, 0.05)
    await hub.catch_up()  # 503: kept due
    await hub.catch_up()
    waiter.drain()
    assert (fake.reads["g1"], tracker.rows["g1"].status) == (2, GenerationStatus.SUCCEEDED)


async def test_what_ended_is_forgotten_after_two_listings_in_poll_mode_too() -> None:
    hub, fake = _bare_hub()
    sizes = []
    for i in range(3):
        _register(hub, [f"g{i}", "keep"])  # "keep" keeps the hub listing
        fake.rows[f"g{i}"] = lambda i=i: _succeeded(f"g{i}")  # type: ignore[misc]
        fake.listing = lambda: {"generations": [_row("keep", "processing")]}
        await hub.reconcile()
        sizes.append(len(hub._ended) + len(hub._ended_before))
    assert sizes == [1, 2, 2]


async def test_a_burst_of_uncovered_registrations_gets_one_listing_not_a_read_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of fresh deferrals (enqueued after the last listing) would cost a status read
    each: past ``CATCH_UP_READS_MAX`` at once the loop lists the queue instead, once."""
    monkeypatch.setattr(hub_module, "CATCH_UP_READS_MAX", 5)
    fresh = [f"fresh{i}" for i in range(40)]
    fake = FakeHook()
    fake.stream = _stream_then_events(asyncio.Queue())
    # The fresh ones are enqueued after the first listing: the later ones show them.
    fake.listing = lambda: {
        "generations": [_row(i, "processing") for i in ["g0", *(fresh if fake.list_calls > 1 else [])]]
    }
    hub = _hub(fake, mode="events")
    hub.register(StatusTracker(["g0"]), 1.0)  # a safety net 6 s away
    while not hub._stream_covers():  # noqa: ASYNC110 (no event to wait on: poll the hub's state)
        await asyncio.sleep(0.01)
    lists_before = fake.list_calls
    for generation_id in fresh:  # all at once, none in the last listing
        hub.register(StatusTracker([generation_id]), 1.0)
    await asyncio.sleep(0.5)
    covered = all(i in hub._covered for i in fresh)
    await hub.close()
    assert (fake.list_calls - lists_before, sum(fake.reads.values())) == (1, 0)
    assert covered
