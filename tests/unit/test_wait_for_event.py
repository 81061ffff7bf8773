from __future__ import annotations

import asyncio
import sys

import pytest

from airflow_provider_oxen.waiting import wait_for_event


async def _cancel_as_the_event_fires(waiting: object) -> bool:
    """Cancel a task at the very moment the event it waits for is set; True if it still ran on."""
    event = asyncio.Event()
    task = asyncio.ensure_future(waiting(event))  # type: ignore[operator]
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return False
    return True


def test_a_cancellation_is_never_swallowed() -> None:
    assert asyncio.run(_cancel_as_the_event_fires(lambda e: wait_for_event(e, 10))) is False


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in Python 3.12's wait_for")
def test_wait_for_would_have_swallowed_it() -> None:
    """The bug the helper exists for: the hub's loop kept running after close() and hung the trigger."""
    assert asyncio.run(_cancel_as_the_event_fires(lambda e: asyncio.wait_for(e.wait(), 10))) is True


def test_timeout_and_set() -> None:
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_for_event(event, 0.01)
        event.set()
        return timed_out, await wait_for_event(event, 10)

    assert asyncio.run(scenario()) == (False, True)
