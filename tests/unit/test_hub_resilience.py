"""The shared waiting hub under trouble: bad rows, refused or flapping streams, long outages,
rejected keys, cancelled acquirers. The hub runs against a scripted fake hook here; what the
emulator can stage (a refused stream that comes back, a generation gone from Oxen, a failure
event's text in the trigger payload) runs over a real socket in
tests/integration/test_shared_waiting.py instead."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from airflow_provider_oxen.exceptions import OxenAuthenticationError, OxenError
from airflow_provider_oxen.hooks.retry import RetryPolicy
from airflow_provider_oxen.models import COMPLETION_EVENT, GenerationStatus, OxenEvent
from airflow_provider_oxen.triggers import hub as hub_module
from airflow_provider_oxen.triggers.hub import OxenHub, Waiter, reprobe_delay, row_from_event
from airflow_provider_oxen.waiting import StatusTracker

FAST = RetryPolicy(max_retries=0, backoff_base=0.001, backoff_max=0.005)


def _completion(generation_id: str, **data: Any) -> OxenEvent:
    return OxenEvent(event=COMPLETION_EVENT, data={"generation_id": generation_id, **data})


# A stream script: given the on_open callback, an async iterator of events (or raise).
Stream = Callable[[Callable[[], None]], AsyncIterator[OxenEvent]]


def _silent_stream(opens_after: float = 0.0) -> Stream:
    """A stream that opens (after ``opens_after`` seconds of connecting) and then says nothing."""

    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        await asyncio.sleep(opens_after)  # connecting (a busy triggerer, a slow API)
        on_open()
        await asyncio.sleep(3600)
        yield OxenEvent(event="never")

    return stream


class FakeHook:
    """What the hub uses of OxenAsyncHook, scripted: listing bodies, rows and streams."""

    def __init__(self) -> None:
        self.listing: Callable[[], Any] = lambda: {"generations": []}
        self.rows: dict[str, Callable[[], Any]] = {}
        self.stream: Stream = _silent_stream()
        self.list_calls = 0
        self.reads: Counter[str] = Counter()
        self.stream_calls = 0
        # Set once ``stream_calls`` reaches ``stream_target`` (0: never).
        self.stream_target = 0
        self.reached = asyncio.Event()

    async def list_queue_body(self, *, object_hook: Any = None, **filters: Any) -> Any:
        assert not filters
        self.list_calls += 1
        body = self.listing()  # decoded as the hook decodes it
        return json.loads(json.dumps(body), object_hook=object_hook) if object_hook else body

    async def get_generation(self, generation_id: str) -> Any:
        from airflow_provider_oxen.models import Generation

        self.reads[generation_id] += 1
        answer = self.rows.get(generation_id, lambda: {"generation_id": generation_id, "status": "queued"})
        return Generation.model_validate(answer())

    def events(self, *, on_open: Any = None, **options: Any) -> AsyncIterator[OxenEvent]:
        self.stream_calls += 1
        if 0 < self.stream_target <= self.stream_calls:
            self.reached.set()
        return self.stream(on_open)


def _raise(exc: BaseException) -> Callable[[], Any]:
    def answer() -> Any:
        raise exc

    return answer


def _sequence(*answers: Any) -> Callable[[], Any]:
    """Answers in turn (exceptions are raised), the last one forever."""
    remaining = list(answers)

    def answer() -> Any:
        value = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(value, BaseException):
            raise value
        return value

    return answer


def _succeeded(generation_id: str) -> dict[str, Any]:
    return {"generation_id": generation_id, "status": "succeeded", "result_url": f"https://r/{generation_id}"}


def _hub(fake: FakeHook, mode: str = "poll") -> OxenHub:
    hub = OxenHub("oxen_default", mode)
    hub.run(fake, None, FAST)  # type: ignore[arg-type]
    return hub


async def _wait(hub: OxenHub, ids: list[str], timeout: float = 5.0, poll: float = 0.05) -> StatusTracker:
    tracker = StatusTracker(ids)
    await hub.wait(tracker, poll, time.time() + timeout)
    return tracker


def _row(generation_id: str, status: str) -> dict[str, Any]:
    return {"generation_id": generation_id, "status": status}


def _register(hub: OxenHub, ids: list[str]) -> list[Waiter]:
    return [hub.register(StatusTracker([i]), 0.05) for i in ids]


def _open_stream(hub: OxenHub) -> None:
    hub._stream_opened()
    hub._wake.clear()


def _bare_hub(mode: str = "poll", *, stream_open: bool = False) -> tuple[OxenHub, FakeHook]:
    """A hub with no loops running, on a fresh fake hook: the test drives its rounds."""
    hub, fake = OxenHub("oxen_default", mode), FakeHook()
    hub.hook = fake  # type: ignore[assignment]
    if stream_open:
        _open_stream(hub)
    return hub, fake


def _alive(hub: OxenHub) -> bool:
    return bool(hub._tasks) and not any(task.done() for task in hub._tasks)


def _run(
    fake: FakeHook, ids: list[str], mode: str = "poll", poll: float = 0.05
) -> tuple[StatusTracker, bool]:
    """Waits for ``ids`` on a hub running against ``fake``; also says whether its loops still ran."""

    async def scenario() -> tuple[StatusTracker, bool]:
        hub = _hub(fake, mode)
        try:
            tracker = await _wait(hub, ids, poll=poll)
            return tracker, _alive(hub)
        finally:
            await hub.close()

    return asyncio.run(scenario())


# -- 1. completion events: success needs its url, failure carries its error text ---------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"status": "failed", "error": "NSFW content detected"},
            (GenerationStatus.FAILED, None, None, "NSFW content detected"),
        ),
        (
            {"status": "succeeded", "model": "ideogram-v4", "url": "https://r/1"},
            (GenerationStatus.SUCCEEDED, "https://r/1", "ideogram-v4", None),
        ),
        # Without a status, judged by what it carries.
        ({"url": "https://r/1"}, (GenerationStatus.SUCCEEDED, "https://r/1", None, None)),
        ({"error": {"detail": "upstream 502"}}, (GenerationStatus.FAILED, None, None, "upstream 502")),
        # An event that does not say enough is no row: the generation is read instead.
        ({"status": "succeeded"}, None),  # success without its url
        ({"status": "failed"}, None),  # failure without its text: the row read has error_message
        ({"status": "processing", "url": "https://r/1"}, None),  # not terminal
        ({"status": 3, "url": "https://r/1"}, None),  # status of the wrong type
        ({"status": "succeeded", "url": "https://r/1", "media_type": {"not": "a string"}}, None),
        ({}, None),
    ],
)
def test_a_terminal_event_becomes_a_row(data: dict[str, Any], expected: tuple[Any, ...] | None) -> None:
    """Success needs its url, failure carries its error text."""
    row = row_from_event(_completion("g1", **data))
    if expected is None:
        assert row is None
    else:
        assert row is not None
        assert (row.status, row.result_url, row.model_name, row.error_message) == expected


# -- 2. rows that do not parse, and loops that must never die ---------------------------------------


@pytest.mark.asyncio
async def test_listing_rows_are_judged_one_by_one() -> None:
    """Rows that do not parse are skipped alone: their generation gets a status read instead.
    (With the stream open, as the listing also notes which ids it covers.)"""
    hub, fake = _bare_hub("events", stream_open=True)
    fake.listing = lambda: {
        "count": 4,
        "generations": [
            {"status": "queued"},  # no generation_id
            {"generation_id": 7, "status": "queued"},  # id of the wrong type
            {"generation_id": "g1", "status": "failed", "cost": "free"},  # a field that does not parse
            "not a row",
            {"generation_id": "g3", "status": ["queued"]},  # an odd status only reads as unknown
            {"generation_id": "someone-else", "status": {"state": "queued"}},  # nor breaks the round
            {"generation_id": "g2", "status": "processing"},
        ],
    }
    tracker = StatusTracker(["g1", "g2", "g3"])
    waiter = hub.register(tracker, 10.0)
    await hub.reconcile()
    waiter.drain()
    assert dict(fake.reads) == {"g1": 1}
    assert {i: r.status for i, r in tracker.rows.items()} == {
        "g1": GenerationStatus.QUEUED,
        "g2": GenerationStatus.PROCESSING,
        "g3": GenerationStatus.UNKNOWN,
    }


@pytest.mark.parametrize(
    ("body", "listed"),
    [
        ([{"generation_id": "g1", "status": "queued"}], True),
        ({"data": [{"generation_id": "g1", "status": "queued"}]}, True),
        ({"count": 0}, False),
        ({"generations": "oops"}, False),
        ("oops", False),
    ],
)
@pytest.mark.asyncio
async def test_listing_shapes(body: Any, listed: bool) -> None:
    """Both body shapes are understood; an unknown one counts as empty (every id is read)."""
    hub, fake = _bare_hub()
    fake.listing = lambda: body
    hub.register(StatusTracker(["g1"]), 10.0)
    await hub.reconcile()
    assert fake.reads["g1"] == (0 if listed else 1)


def test_the_reconcile_loop_survives_unexpected_errors_and_is_restarted_if_it_crashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rejected key on one read is no reason to fail either: it is read again. Even a bug
    outside the loop's own error handling (here: twice in its schedule) does not end the
    safety net."""
    original = OxenHub._interval
    calls: list[float] = []

    def flaky_interval(self: OxenHub, stretch: float) -> float:
        calls.append(stretch)
        if len(calls) <= 2:
            raise ZeroDivisionError("bug")
        return original(self, stretch)

    monkeypatch.setattr(OxenHub, "_interval", flaky_interval)
    fake = FakeHook()
    fake.listing = _sequence(RuntimeError("boom"), KeyError("x"), {"generations": []})
    refused = OxenAuthenticationError("refused", status_code=401)
    fake.rows["g1"] = _sequence(ValueError("odd row"), refused, OxenError("blip"), _succeeded("g1"))
    tracker, alive = _run(fake, ["g1"])
    assert tracker.done and tracker.rows["g1"].status is GenerationStatus.SUCCEEDED
    assert alive


def test_the_events_loop_survives_unexpected_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nor does an odd event or an in-flight one make it read the row."""
    monkeypatch.setattr(hub_module, "MIN_RECONNECT_SPACING", 0.0)
    fake = FakeHook()
    fake.listing = lambda: {"generations": [{"generation_id": "g1", "status": "processing"}]}

    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        if fake.stream_calls <= 2:
            raise RuntimeError("unexpected")
        on_open()
        await asyncio.sleep(0.1)
        yield OxenEvent(event=COMPLETION_EVENT, data={"generation_id": None})
        yield _completion("g1", status="processing")  # in flight: no reason to read
        yield _completion("g1", status="succeeded", url="https://r/g1")
        await asyncio.sleep(3600)

    fake.stream = stream
    tracker, alive = _run(fake, ["g1"], "events", poll=10.0)  # only the event can complete it in time
    assert tracker.done and tracker.rows["g1"].result_url == "https://r/g1"
    assert fake.stream_calls == 3
    assert fake.reads["g1"] == 0
    assert alive


@pytest.mark.asyncio
async def test_a_rate_limited_stream_waits_out_its_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_oxen.exceptions import OxenRateLimitError

    monkeypatch.setattr(hub_module, "MIN_RECONNECT_SPACING", 0.0)
    fake = FakeHook()
    times: list[float] = []

    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        times.append(time.monotonic())
        if len(times) == 1:
            raise OxenRateLimitError("slow down", retry_after=0.3, status_code=429)
        on_open()
        await asyncio.sleep(3600)
        yield OxenEvent(event="never")

    fake.stream = stream
    fake.stream_target = 2
    hub = _hub(fake, "events")
    await asyncio.wait_for(fake.reached.wait(), 5)
    await hub.close()
    assert times[1] - times[0] >= 0.3


# -- 3. a rejected key, and the re-probe schedule of a refused stream ---------------------------------


@pytest.mark.asyncio
async def test_a_rejected_key_on_the_queue_listing_fails_every_waiter() -> None:
    """Documented decision: the listing is made with the key for everyone, so its 401 is everyone's."""
    fake = FakeHook()
    fake.listing = _raise(OxenAuthenticationError("Invalid API key", status_code=401))
    hub = _hub(fake)
    results = await asyncio.gather(_wait(hub, ["g1"]), _wait(hub, ["g2"]), return_exceptions=True)
    await hub.close()
    assert all(isinstance(r, OxenAuthenticationError) and r.status_code == 401 for r in results)


def test_reprobe_delays_double_and_stay_capped() -> None:
    assert reprobe_delay(1, rand=lambda: 1.0) == hub_module.EVENTS_REPROBE_BASE
    assert reprobe_delay(2, rand=lambda: 1.0) == 2 * hub_module.EVENTS_REPROBE_BASE
    assert reprobe_delay(10**6, rand=lambda: 1.0) == hub_module.EVENTS_REPROBE_MAX
    assert reprobe_delay(10**6, rand=lambda: 0.0) == hub_module.EVENTS_REPROBE_MAX / 2


# -- 4. a stream cut after every event does not reconnect in a storm --------------------------------


def _one_event_streams(hold: float = 0.0) -> Stream:
    async def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        on_open()
        yield _completion("someone-else", status="succeeded", url="https://r/x")
        await asyncio.sleep(hold)
        raise httpx.RemoteProtocolError("peer closed connection")

    return stream


@pytest.mark.asyncio
async def test_only_a_stream_that_stayed_open_long_enough_resets_the_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(The backoff itself never overflows, however long the outage: test_retry_policy.py.)"""
    attempts: list[int] = []  # recorded, and not waited for
    monkeypatch.setattr(hub_module, "backoff_delay", lambda attempt, policy: attempts.append(attempt) or 0.0)
    monkeypatch.setattr(hub_module, "MIN_RECONNECT_SPACING", 0.0)
    monkeypatch.setattr(hub_module, "HEALTHY_STREAM_SECONDS", 0.2)

    fake = FakeHook()
    short, healthy = _one_event_streams(), _one_event_streams(hold=0.3)

    def stream(on_open: Callable[[], None]) -> AsyncIterator[OxenEvent]:
        return (healthy if fake.stream_calls == 4 else short)(on_open)

    fake.stream = stream
    fake.stream_target = 6
    hub = _hub(fake, "events")
    await asyncio.wait_for(fake.reached.wait(), 10)
    await hub.close()
    # Three short-lived streams back off further each time; the healthy fourth resets it.
    assert attempts[:5] == [0, 1, 2, 0, 1]


# -- 5. acquirers that leave or fail while the hub starts (one cancelled beside a neighbour: the
# emulator test test_cancelling_the_first_trigger_while_the_hub_starts_spares_its_neighbour) -------


@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """OxenHub.start takes 0.2 s, then runs against a fake hook (or fails, if told to)."""
    control: dict[str, Any] = {"starts": 0, "error": None, "hubs": []}

    async def start(self: OxenHub) -> None:
        control["starts"] += 1
        control["hubs"].append(self)
        await asyncio.sleep(0.2)
        if control["error"] is not None:
            raise control["error"]
        self.run(FakeHook(), None, FAST)  # type: ignore[arg-type]

    monkeypatch.setattr(OxenHub, "start", start)
    return control


async def _acquire(mode: str, hold: float) -> None:
    async with hub_module.SharedHub("oxen_default", mode):
        await asyncio.sleep(hold)


@pytest.mark.asyncio
async def test_a_hub_everybody_left_while_it_started_is_closed(slow_start: dict[str, Any]) -> None:
    task = asyncio.create_task(_acquire("poll", 1.0))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.3)  # the start finishes on its own, then closes the hub
    hub = slow_start["hubs"][0]
    assert hub._closed and not hub._tasks
    assert hub_module._HUBS == {}


@pytest.mark.asyncio
async def test_a_start_failure_reaches_every_acquirer(slow_start: dict[str, Any]) -> None:
    slow_start["error"] = OxenError("no such connection")
    tasks = [asyncio.create_task(_acquire("events", 0.0)) for _ in range(3)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["no such connection"] * 3
    assert slow_start["starts"] == 1
    assert hub_module._HUBS == {}
