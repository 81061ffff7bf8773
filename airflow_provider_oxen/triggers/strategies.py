"""How a trigger waits: the seam between "what we wait for" and "how we learn it finished".

A strategy feeds fresh rows into a :class:`StatusTracker` until it is done or the deadline
passes. The trigger does not care which one runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from airflow_provider_oxen.exceptions import OxenNotFoundError
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook
from airflow_provider_oxen.waiting import TRANSIENT_ERRORS, StatusTracker, next_sleep

# Concurrent status requests per trigger: enough to poll a big batch quickly, small enough
# not to trip the API's rate limit.
POLL_CONCURRENCY = 8


class WaitStrategy(Protocol):
    async def wait(self, tracker: StatusTracker, deadline: float) -> None:
        """Return when ``tracker.done`` or ``time.time() >= deadline``; raise on fatal errors."""


class PollingStrategy:
    """Fixed-interval status polling of every pending generation, concurrently."""

    def __init__(self, hook: OxenAsyncHook, poll_interval: float, *, logger: Any) -> None:
        self.hook = hook
        self.poll_interval = poll_interval
        self.log = logger
        self._limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def _refresh(self, tracker: StatusTracker, generation_id: str) -> None:
        async with self._limit:
            try:
                tracker.update(await self.hook.get_generation(generation_id))
            except OxenNotFoundError:
                raise
            except TRANSIENT_ERRORS as exc:
                self.log.warning("Status of %s unavailable for now: %s", generation_id, exc)

    async def refresh_all(self, tracker: StatusTracker) -> None:
        await asyncio.gather(*(self._refresh(tracker, i) for i in tracker.pending))

    async def wait(self, tracker: StatusTracker, deadline: float) -> None:
        while True:
            await self.refresh_all(tracker)
            if tracker.done or time.time() >= deadline:
                return
            await asyncio.sleep(next_sleep(self.poll_interval, deadline))
