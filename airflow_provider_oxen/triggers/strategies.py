"""How a trigger waits: the seam between "what we wait for" and "how we learn it finished".

A strategy feeds fresh rows into a :class:`StatusTracker` until it is done or the deadline
passes; the trigger does not care which one runs. Both built-in strategies register with
the process's shared :class:`~airflow_provider_oxen.triggers.hub.OxenHub`; they differ in
the hub's mode (event stream plus safety net, or queue polling).
"""

from __future__ import annotations

import time
from typing import Protocol

from airflow_provider_oxen.triggers.hub import OxenHub
from airflow_provider_oxen.waiting import WAIT_STRATEGIES, ProgressLog, StatusTracker

# WAIT_STRATEGIES was defined here before 0.4.0: still importable from here.
__all__ = ["WAIT_STRATEGIES", "SharedHubStrategy", "WaitStrategy"]

# A waiting trigger logs where its batch stands at most this often (and only when it changed).
PROGRESS_INTERVAL = 30.0


class WaitStrategy(Protocol):
    async def wait(self, tracker: StatusTracker, deadline: float) -> None:
        """Return when ``tracker.done`` or ``time.time() >= deadline``; raise on fatal errors."""


class SharedHubStrategy:
    """Wait for the hub to deliver terminal rows for this tracker's generations."""

    def __init__(self, hub: OxenHub, poll_interval: float) -> None:
        self.hub = hub
        self.poll_interval = poll_interval

    async def wait(self, tracker: StatusTracker, deadline: float) -> None:
        waiter = self.hub.register(tracker, self.poll_interval)
        progress = ProgressLog(tracker, tracker.logger, PROGRESS_INTERVAL)
        try:
            while True:
                waiter.drain()
                if waiter.error is not None:
                    raise waiter.error
                remaining = deadline - time.time()
                if tracker.done or remaining <= 0:
                    return
                progress.maybe_log()
                # Wake for the next progress line too, so a quiet batch still reports now and then.
                await waiter.changed.wait(min(remaining, PROGRESS_INTERVAL))
                waiter.changed.clear()
        finally:
            self.hub.unregister(waiter)
