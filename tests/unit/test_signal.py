"""``Signal``: the sleep-with-timeout every waiting trigger does, at one future and one timer."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_oxen.waiting import Signal


def test_a_cancellation_is_never_swallowed() -> None:
    """Not even one that comes at the very moment the signal is set."""

    async def scenario() -> None:
        signal = Signal()
        task = asyncio.ensure_future(signal.wait(10))
        await asyncio.sleep(0)
        signal.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_timeout_set_and_clear() -> None:
    async def scenario() -> tuple[bool, bool, bool, bool, float]:
        loop = asyncio.get_running_loop()
        signal = Signal()
        timed_out = await signal.wait(0.01)
        signal.set()
        already_set = await signal.wait(10)
        signal.clear()
        cleared = await signal.wait(0.01)
        loop.call_later(0.01, signal.set)
        started = loop.time()
        woke = await signal.wait(30)  # set wakes a sleeper at once, not after its timeout
        return timed_out, already_set, cleared, woke, loop.time() - started

    *states, slept = asyncio.run(scenario())
    assert states == [False, True, False, True] and slept < 5


def test_one_sleeper_at_a_time() -> None:
    async def scenario() -> None:
        signal = Signal()
        first = asyncio.ensure_future(signal.wait(10))
        await asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="already awaited"):
                await signal.wait(10)
        finally:
            signal.set()
            await first

    asyncio.run(scenario())


def test_a_sleep_costs_one_future_and_one_timer_cancelled_when_woken_early() -> None:
    """The point of Signal: thousands of sleeping triggers, each costing one future and one timer."""

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        signals = [Signal() for _ in range(200)]
        tasks_before = len(asyncio.all_tasks())
        sleepers = [asyncio.ensure_future(s.wait(3600)) for s in signals]
        await asyncio.sleep(0)
        during = len(asyncio.all_tasks()) - tasks_before
        for s in signals:
            s.set()
        await asyncio.gather(*sleepers)
        timers = sum(1 for h in loop._scheduled if not h.cancelled() and h.when() > loop.time() + 60)  # type: ignore[attr-defined]
        return during, timers

    # The sleepers themselves, no helper task per sleep; and no timer left once woken.
    assert asyncio.run(scenario()) == (200, 0)


def test_a_timer_fires_while_another_threads_timer_callback_is_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timers of loops in several threads: thread "holder" stays inside its timer callback (so
    inside the context that callback runs in) while this thread's timer fires. A context shared
    by both threads cannot be entered twice: this thread's timer would raise in its loop and its
    sleeper would never wake past its timeout."""
    import threading

    from airflow_provider_oxen import waiting

    entered, release = threading.Event(), threading.Event()
    original = waiting._wake

    def held_wake(future: asyncio.Future[None]) -> None:
        if threading.current_thread().name == "holder":
            entered.set()
            release.wait(10)
        original(future)

    monkeypatch.setattr(waiting, "_wake", held_wake)
    holder = threading.Thread(target=lambda: asyncio.run(Signal().wait(0)), name="holder", daemon=True)
    holder.start()
    try:
        assert entered.wait(10)

        async def sleep_here() -> bool:
            return await asyncio.wait_for(Signal().wait(0.01), 5)

        assert asyncio.run(sleep_here()) is False  # woken by its own timer, not stuck
    finally:
        release.set()
        holder.join(10)
