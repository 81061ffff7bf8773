"""What keeps the shared hub cheap with thousands of waits (docs/performance.md).

Listings are scanned for waited-for ids only and parsed only when a status changed, "queued"
wakes nobody, ids that just left the queue are not read while the stream is open (nor while it
delivers their events late), rows of reads are delivered as each read answers, and
reconciliations woken by registrations are spaced.

Registrations the open event stream covers cost no request (the second half of this file): a
generation the last listing showed in flight, while the current stream stayed open, can only
finish after the stream opened, so its completion event reaches the hub, before or after its
trigger registers. Those registrations need neither a listing nor a read; any other registered
id gets one status read, never a listing. The safety-net listing keeps its schedule whatever
registrations do, and a gap (reconnect) brings the listing back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_oxen.models import Generation, GenerationStatus, OxenEvent
from airflow_provider_oxen.triggers import hub as hub_module
from airflow_provider_oxen.triggers.hub import OxenHub, Waiter, overdue_reads
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
    _silent_stream,
    _succeeded,
    _wait,
)

pytestmark = pytest.mark.asyncio


async def test_a_listing_parses_no_row_in_flight_and_delivers_only_changes_past_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    original = Generation.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Generation], data: Any, *args: Any, **kwargs: Any) -> Generation:
        parsed.append(data.get("generation_id") if isinstance(data, dict) else "?")
        return original(cls, data, *args, **kwargs)  # type: ignore[no-any-return]

    hub, fake = _bare_hub()
    g1, g2 = _register(hub, ["g1", "g2"])
    monkeypatch.setattr(Generation, "model_validate", classmethod(counting))
    inboxes = []
    for listing in (
        [_row("g1", "queued"), _row("g2", "queued"), _row("other", "queued")],
        [_row("g1", "queued"), _row("g2", "processing"), _row("other", "processing")],
        [_row("g1", "queued"), _row("g2", "processing")],
    ):
        fake.listing = lambda listing=listing: {"generations": listing}  # type: ignore[misc]
        await hub.reconcile()
        inboxes.append(list(g1._inbox + g2._inbox))
    assert parsed == []  # nor "other", which nobody waits for
    assert inboxes == [[], [("g2", "processing")], [("g2", "processing")]]
    g2.drain()  # the trigger applies "processing" as a row
    assert parsed == ["g2"]


async def test_only_an_outcome_wakes_a_trigger_what_came_before_is_applied_with_it() -> None:
    tracker = StatusTracker(["g1"])
    waiter = Waiter(tracker, 1.0)
    waiter.deliver(Generation.model_validate(_row("g1", "queued")))
    waiter.deliver(Generation.model_validate(_row("g1", "processing")))
    assert not waiter.changed.is_set()
    waiter.deliver(Generation.model_validate(_succeeded("g1")))
    assert waiter.changed.is_set()
    seen: list[GenerationStatus] = []
    original = tracker.update

    def update(row: Generation) -> bool:
        seen.append(row.status)
        return original(row)

    tracker.update = update  # type: ignore[method-assign]
    waiter.drain()
    assert seen == [GenerationStatus.QUEUED, GenerationStatus.PROCESSING, GenerationStatus.SUCCEEDED]


async def test_ids_that_just_left_the_queue_are_not_read_while_the_stream_stays_open() -> None:
    """They are read one round later; ids never seen in flight, and after a reconnect every
    missing id, are read at once."""
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, ["g1", "g2"])
    for generation_id in ("g1", "g2", "late"):
        fake.rows[generation_id] = lambda generation_id=generation_id: _succeeded(generation_id)  # type: ignore[misc]
    fake.listing = lambda: {"generations": [_row("g1", "processing"), _row("g2", "processing")]}
    await hub.reconcile()  # first listing of this stream: a gap round, both in flight anyway
    assert not fake.reads
    _register(hub, ["late"])  # finished before its trigger registered
    fake.listing = lambda: {"generations": [_row("g2", "processing")]}
    await hub.reconcile()  # g1 left the queue: its event is on the way, no read
    assert fake.reads == {"late": 1}
    await hub.reconcile()  # still waited for one round later: now it is read
    assert fake.reads == {"late": 1, "g1": 1}
    fake.listing = lambda: {"generations": []}  # g2 finished too, but across a reconnect
    hub._stream_open = False
    _open_stream(hub)  # a new stream: events of the gap were lost
    await hub.reconcile()
    assert fake.reads == {"late": 1, "g1": 1, "g2": 1}


async def test_a_gap_round_of_an_open_stream_reads_what_is_missing_once_events_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "BURST_QUIET_SECONDS", 0.05)
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, [f"g{i}" for i in range(6)])
    fake.rows["g5"] = lambda: _succeeded("g5")  # finished before the stream opened: no event

    async def burst() -> None:  # events of g0..g4, one every 20 ms
        for i in range(5):
            hub._on_event(_completion(f"g{i}", url=f"https://r/g{i}"))
            await asyncio.sleep(0.02)

    hub._on_event(_completion("other", url="https://r/other"))  # the burst is under way
    await asyncio.gather(burst(), hub.reconcile())  # the listing shows none of them in flight
    assert fake.reads == {"g5": 1}


async def test_a_queued_read_is_dropped_once_its_event_came() -> None:
    hub, fake = _bare_hub("events", stream_open=True)
    hub._reads = asyncio.Semaphore(1)
    _register(hub, ["g1", "g2", "g3"])
    fake.rows["g1"] = lambda: (hub._on_event(_completion("g2", url="https://r/g2")), _succeeded("g1"))[1]
    await hub.reconcile()  # a gap round: all three missing, read one at a time
    assert fake.reads == {"g1": 1, "g3": 1}  # g2's event came during g1's read


async def test_rows_of_reads_are_delivered_as_each_read_answers() -> None:
    hub, fake = _bare_hub()
    slow = asyncio.Event()
    original = fake.get_generation

    async def get_generation(generation_id: str) -> Any:
        if generation_id == "slow":
            await slow.wait()
        return await original(generation_id)

    fake.get_generation = get_generation  # type: ignore[method-assign]
    fake.rows["fast"] = lambda: _succeeded("fast")
    fake.rows["slow"] = lambda: _succeeded("slow")
    waiters = _register(hub, ["slow", "fast"])
    task = asyncio.ensure_future(hub.reconcile())
    assert await waiters[1].changed.wait(2)
    assert not waiters[0].changed.is_set()  # "fast" delivered while "slow" still reads
    slow.set()
    await task


async def test_reconciliations_woken_by_registrations_are_spaced_by_their_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "MAX_RECONCILE_SPACING", 0.6)
    fake = FakeHook()
    starts: list[float] = []

    def listing() -> Any:
        starts.append(time.monotonic())
        time.sleep(0.15)  # an expensive listing (it blocks, like decoding a large body)
        return {"generations": [_row(f"g{i}", "processing") for i in range(50)]}

    fake.listing = listing
    hub = _hub(fake)
    for i in range(50):  # registrations keep arriving: each one wakes the hub
        _register(hub, [f"g{i}"])
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    await hub.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps, "at least two reconciliations"
    # Each starts at least twice the previous one's duration after it ended (0.15 + 0.3).
    assert min(gaps) >= 0.4, gaps


async def test_a_large_listing_hands_the_loop_back_while_delivering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "DELIVERY_CHUNK", 10)
    hub, fake = _bare_hub()
    ids = [f"g{i}" for i in range(100)]
    fake.listing = lambda: {"generations": [_row(i, "processing") for i in ids]}
    _register(hub, ids)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    before = ticks
    await hub.reconcile()
    task.cancel()
    assert ticks - before >= 9


async def test_an_id_is_overdue_once_missed_for_longer_than_twice_the_streams_lag() -> None:
    missing = {"old": 0.0, "recent": 7.0, "new": 10.0}
    assert overdue_reads(missing, now=10.0, lag=0.0) == ["old", "recent"]  # a healthy stream
    assert overdue_reads(missing, now=10.0, lag=2.0) == ["old"]  # events come 2 s late
    assert overdue_reads(missing, now=10.0, lag=6.0) == []  # still delivering ones missed 6 s ago


async def test_a_safety_round_waits_for_a_pause_in_the_events_for_at_most_one_more_interval() -> None:
    hub, _ = _bare_hub("events", stream_open=True)
    _register(hub, ["g1"])
    unchecked, hub._unchecked = hub._unchecked, set()
    hub._listing_epoch, hub._last_event = hub._stream_epoch, 100.0  # listed before: no gap round
    cap = 100.0 + hub._interval(1.0)  # due at 100: one more safety interval
    assert hub._burst_holds(100.0, 100.2)  # events flowing: hold
    assert not hub._burst_holds(100.0, 100.0 + 2 * hub_module.BURST_QUIET_SECONDS)  # a pause: go
    hub._last_event = cap - 0.1
    assert not hub._burst_holds(100.0, cap)  # the cap
    hub._last_event, hub._unchecked = 100.0, unchecked
    assert not hub._burst_holds(100.0, 100.2)  # registrations to check
    hub._unchecked, hub._listing_epoch = set(), None
    assert not hub._burst_holds(100.0, 100.2)  # a gap round


class _Clock:
    """The hub's clock, moved by hand (the event loop keeps the real one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(hub_module, "time", SimpleNamespace(monotonic=lambda: self.now, time=time.time))


async def _streaming_hub(ids: list[str]) -> tuple[OxenHub, FakeHook]:
    """An open stream and two listings (made while it stayed open) that showed ``ids`` in flight."""
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, ids)
    fake.listing = lambda: {"generations": [_row(i, "processing") for i in ids]}
    await hub.reconcile()
    await hub.reconcile()
    fake.listing = lambda: {"generations": []}  # from now on, every one has finished
    return hub, fake


async def test_a_consumer_behind_a_healthy_stream_reads_no_row(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(monkeypatch)
    ids = [f"g{i}" for i in range(300)]
    hub, fake = await _streaming_hub(ids)
    await hub.reconcile()  # the listing misses them all; their events are still unread
    # The loop is behind: each safety interval it works through a third of the backlog.
    for chunk in (ids[:100], ids[100:200], ids[200:]):
        clock.now += 30.0
        for generation_id in chunk:
            hub._on_event(_completion(generation_id, status="succeeded", url="https://r/x"))
        await hub.reconcile()
    assert (sum(fake.reads.values()), bool(hub._waiters)) == (0, False)


async def test_a_lost_event_is_read_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(monkeypatch)
    monkeypatch.setattr(hub_module, "SAFETY_READS_MAX", 40)
    ids = [f"g{i}" for i in range(200)]
    hub, fake = await _streaming_hub(ids)
    for generation_id in ids[:100]:  # their completion events never come
        fake.rows[generation_id] = lambda generation_id=generation_id: _succeeded(generation_id)  # type: ignore[misc]
    await hub.reconcile()
    clock.now += 0.5
    for generation_id in ids[100:]:
        hub._on_event(_completion(generation_id, status="succeeded", url="https://r/x"))
    reads = []
    for _ in range(4):  # one round per safety interval (0.05 s polls: at least 1 s x 6)
        clock.now += 6.0
        before = sum(fake.reads.values())
        await hub.reconcile()
        reads.append(sum(fake.reads.values()) - before)
    assert reads == [40, 40, 20, 0]
    assert not hub._waiters


async def test_a_wait_logs_its_first_progress_line_when_something_changed_not_at_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "PROGRESS_INTERVAL", 0.2)  # "processing" shows at the next line
    lines: list[str] = []
    logger = SimpleNamespace(info=lambda message, *args: lines.append(message % args), warning=print)
    fake = FakeHook()
    ends = time.monotonic() + 0.5
    fake.listing = lambda: {"generations": [_row("g1", "processing")] if time.monotonic() < ends else []}
    fake.rows["g1"] = lambda: _succeeded("g1")
    hub = _hub(fake)
    try:
        await hub.wait(StatusTracker(["g1"], logger=logger), 0.05, time.time() + 5)
    finally:
        await hub.close()
    # One line per wait at registration is thousands at once in a triggerer: the trigger's own
    # "Waiting for" line already says the batch starts queued.
    assert [line for line in lines if line.startswith("Oxen batch progress")] == [
        "Oxen batch progress: 0 of 1 done, 1 rendering, 0 queued"
    ]


# -- registrations the open stream covers ---------------------------------------------------------


async def _covered_hub(in_flight: list[str]) -> tuple[OxenHub, FakeHook]:
    """A hub whose stream is open and whose last listing (made while it stayed open) showed
    ``in_flight``; one waited-for id ("first") made that listing happen."""
    hub, fake = _bare_hub("events", stream_open=True)
    _register(hub, ["first"])
    fake.listing = lambda: {"generations": [_row(i, "processing") for i in ["first", *in_flight]]}
    await hub.reconcile()
    hub._wake.clear()
    return hub, fake


async def test_an_event_during_a_catch_up_read_is_not_undone_by_the_read() -> None:
    hub, fake = await _covered_hub([])
    gate = asyncio.Event()
    original = fake.get_generation

    async def slow_read(generation_id: str) -> Any:
        await gate.wait()
        return await original(generation_id)  # answers "queued": stale by then

    fake.get_generation = slow_read  # type: ignore[method-assign]
    tracker = StatusTracker(["g1", "new"])  # enqueued after the last listing: one read each
    waiter = hub.register(tracker, 0.05)
    reading = asyncio.ensure_future(hub.catch_up())
    await asyncio.sleep(0)
    hub._on_event(_completion("g1", status="succeeded", url="https://r/g1"))
    gate.set()
    await reading
    waiter.drain()
    assert "g1" not in hub._covered  # a later trigger for g1 reads it instead of waiting for an event gone by
    assert tracker.rows["g1"].status is GenerationStatus.SUCCEEDED
    assert "new" in hub._covered  # found queued after the stream opened: its event will come


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


async def test_the_first_listing_waits_for_the_stream_so_one_listing_covers_the_start() -> None:
    fake = FakeHook()
    fake.stream = _silent_stream(opens_after=0.3)
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
    fake.stream = _silent_stream(opens_after=3600)
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


# -- covered registrations: review fixes ------------------------------------------------------------


@pytest.mark.parametrize("waited", [True, False], ids=["its-trigger-waited", "nobody-waited-yet"])
async def test_an_id_that_ended_while_the_listing_was_on_its_way_is_not_covered_by_it(waited: bool) -> None:
    """The listing lags behind the stream: it still shows g1 in flight, whose event came. A
    trigger for g1 registering afterwards does not wait for an event gone by. If nobody waited
    yet (the render finished while its task was still deferring), the event remembered
    completes it at once, with its error text, at no cost; if a trigger took the event (a
    sensor registering after it, say), g1 is read."""
    hub, fake = await _covered_hub([])
    if waited:
        _register(hub, ["g1"])
    gate = asyncio.Event()

    async def slow_listing(*, object_hook: Any) -> Any:
        await gate.wait()
        stale = {"generations": [_row("first", "processing"), _row("g1", "processing")]}
        return json.loads(json.dumps(stale), object_hook=object_hook)  # decoded as the hook does

    fake.list_queue_body = slow_listing  # type: ignore[method-assign]
    listing = asyncio.ensure_future(hub.reconcile())
    await asyncio.sleep(0)
    hub._on_event(_completion("g1", status="failed", error="NSFW content detected"))
    gate.set()
    await listing
    assert "g1" not in hub._covered
    fake.rows["g1"] = lambda: {
        "generation_id": "g1",
        "status": "failed",
        "error_message": "NSFW content detected",
    }
    hub._wake.clear()
    tracker = StatusTracker(["g1"])
    waiter = hub.register(tracker, 0.05)
    assert hub._wake.is_set() is waited  # no round for what the event already told
    await hub.catch_up()
    waiter.drain()
    row = tracker.rows["g1"]
    assert (row.status, row.error_message) == (GenerationStatus.FAILED, "NSFW content detected")
    assert fake.reads["g1"] == int(waited)


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
