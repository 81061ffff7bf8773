"""Waiting for generations: the bookkeeping shared by the trigger and the in-worker wait.

:class:`StatusTracker` knows which generations are still pending, logs each status change
with the elapsed time, and builds the final payload. The loops that feed it differ only in
how they fetch statuses (sync hook in a worker, async strategies in the triggerer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from airflow_provider_oxen.exceptions import (
    OxenConnectionError,
    OxenRateLimitError,
    OxenServerError,
)
from airflow_provider_oxen.models import Generation, GenerationStatus
from airflow_provider_oxen.results import wait_payload

# Errors that the hook already retried and that may still clear up before the deadline
# (status reads are never paid, so "may have succeeded" cannot happen here):
# waiting goes on; anything else (auth, not found) ends the wait at once.
TRANSIENT_ERRORS = (OxenServerError, OxenConnectionError, OxenRateLimitError)

log = logging.getLogger(__name__)


class StatusTracker:
    """Tracks a batch of generations until each reaches a terminal status."""

    def __init__(
        self, generation_ids: Iterable[str], *, logger: Any = None, started: float | None = None
    ) -> None:
        self.order = list(dict.fromkeys(generation_ids))
        self.rows: dict[str, Generation] = {}
        self._log = logger or log
        self._started = started if started is not None else time.monotonic()

    @property
    def logger(self) -> Any:
        return self._log

    @property
    def pending(self) -> list[str]:
        return [i for i in self.order if i not in self.rows or not self.rows[i].status.is_terminal]

    @property
    def done(self) -> bool:
        return not self.pending

    def update(self, row: Generation) -> bool:
        """Record a fresh status; returns True if it changed. Terminal rows never go back."""
        previous = self.rows.get(row.generation_id)
        if previous is not None and previous.status.is_terminal:
            return False
        self.rows[row.generation_id] = row
        if previous is not None and previous.status is row.status:
            return False
        elapsed = time.monotonic() - self._started
        remaining = len(self.pending)
        if row.status is GenerationStatus.FAILED:
            self._log.warning(
                "Oxen generation %s failed after %.1f s: %s", row.generation_id, elapsed, row.error_message
            )
        else:
            self._log.info(
                "Oxen generation %s is %s after %.1f s (%d of %d still pending)",
                row.generation_id,
                row.status.value,
                elapsed,
                remaining,
                len(self.order),
            )
        return True

    def progress(self) -> str:
        """``"3 of 8 done (1 failed), 4 rendering, 1 queued"``: where the batch stands."""
        counts: dict[GenerationStatus, int] = {}
        for generation_id in self.order:
            row = self.rows.get(generation_id)
            status = row.status if row is not None else GenerationStatus.QUEUED
            counts[status] = counts.get(status, 0) + 1
        finished = sum(n for status, n in counts.items() if status.is_terminal)
        problems = [
            f"{counts[status]} {status.value}"
            for status in (GenerationStatus.FAILED, GenerationStatus.CANCELLED)
            if counts.get(status)
        ]
        text = f"{finished} of {len(self.order)} done" + (f" ({', '.join(problems)})" if problems else "")
        rendering = counts.get(GenerationStatus.PROCESSING, 0)
        waiting = counts.get(GenerationStatus.QUEUED, 0) + counts.get(GenerationStatus.UNKNOWN, 0)
        return f"{text}, {rendering} rendering, {waiting} queued"

    def payload(
        self,
        *,
        timed_out: bool = False,
        timeout: float | None = None,
        error: str | None = None,
        unrecoverable: bool = False,
    ) -> dict:
        return wait_payload(
            self.order,
            self.rows,
            timed_out=timed_out,
            timeout=timeout,
            error=error,
            unrecoverable=unrecoverable,
        )


class ProgressLog:
    """Logs a batch's progress line when it changed, at most once per ``min_interval`` seconds.

    Per-generation lines already say what changed; this says where the whole batch stands,
    without flooding a long wait's log.
    """

    def __init__(
        self, tracker: StatusTracker, logger: Any, min_interval: float = 30.0, quiet_interval: float = 300.0
    ) -> None:
        self._tracker = tracker
        self._log = logger
        self._min_interval = min_interval
        # An unchanged batch is reported this often, so a long render still shows signs of life.
        self._quiet_interval = quiet_interval
        self._last_line: str | None = None
        self._last_time = float("-inf")

    def maybe_log(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        line = self._tracker.progress()
        since = now - self._last_time
        if since < self._min_interval or (line == self._last_line and since < self._quiet_interval):
            return False
        self._log.info("Oxen batch progress: %s", line)
        self._last_line, self._last_time = line, now
        return True


def next_sleep(poll_interval: float, deadline: float, now: float | None = None) -> float:
    """Sleep until the next poll, but never past the deadline (epoch seconds)."""
    remaining = deadline - (now if now is not None else time.time())
    return max(0.0, min(poll_interval, remaining))


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True if it was set.

    ``asyncio.wait_for`` before Python 3.12 can swallow a cancellation that arrives just as
    the awaited event completes, leaving a task that should have stopped running forever;
    ``asyncio.wait`` never does.
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout))
    finally:
        waiter.cancel()
    return event.is_set()
