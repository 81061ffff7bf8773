"""Waiting for generations: the bookkeeping shared by the trigger and the in-worker wait.

:class:`StatusTracker` knows which generations are still pending, logs each status change
with the elapsed time, and builds the final payload. The loops that feed it differ only in
how they fetch statuses (sync hook in a worker, the shared hub in the triggerer).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
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

# Names accepted by ``wait_strategy`` (each is also the triggerer hub's mode). Here, not in the
# hub, so that a task process validating its arguments does not import the triggerer side.
WAIT_STRATEGIES = frozenset({"events", "poll"})


class StatusTracker:
    """Tracks a batch of generations until each reaches a terminal status."""

    def __init__(self, generation_ids: Iterable[str], *, logger: Any = None) -> None:
        self.order = list(dict.fromkeys(generation_ids))
        self.rows: dict[str, Generation] = {}
        self.logger = logger or log
        self._started = time.monotonic()
        # Kept by update(): the hub asks ``done`` after every row, and a triggerer holding thousands
        # of waits cannot rebuild ``pending`` for each completion.
        self._unfinished = len(self.order)

    @property
    def pending(self) -> list[str]:
        return [i for i in self.order if i not in self.rows or not self.rows[i].status.is_terminal]

    @property
    def done(self) -> bool:
        return self._unfinished == 0

    def update(self, row: Generation) -> bool:
        """Record a fresh status; returns True if it changed. Terminal rows never go back."""
        previous = self.rows.get(row.generation_id)
        if previous is not None and previous.status.is_terminal:
            return False
        self.rows[row.generation_id] = row
        if row.status.is_terminal and row.generation_id in self.order:
            self._unfinished -= 1
        if previous is not None and previous.status is row.status:
            return False
        elapsed = time.monotonic() - self._started
        if row.status is GenerationStatus.FAILED:
            self.logger.warning(
                "Oxen generation %s failed after %.1f s: %s", row.generation_id, elapsed, row.error_message
            )
        else:
            # Every outcome is logged, the last too: a trigger's log names each generation it saw end.
            self.logger.info(
                "Oxen generation %s is %s after %.1f s (%d of %d still pending)",
                row.generation_id,
                row.status.value,
                elapsed,
                self._unfinished,
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

    def payload(self, **outcome: Any) -> dict[str, Any]:
        """The batch as :func:`~airflow_provider_oxen.results.wait_payload` describes it (``outcome``:
        its keyword arguments, e.g. ``timed_out=True``)."""
        return wait_payload(self.order, self.rows, **outcome)


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
        since = now - self._last_time
        if since < self._min_interval:
            return False  # before building the line: this runs at every wake of every waiting trigger
        line = self._tracker.progress()
        if line == self._last_line and since < self._quiet_interval:
            return False
        self._log.info("Oxen batch progress: %s", line)
        self._last_line, self._last_time = line, now
        return True


# Wake-up timers run their callback in an empty context of their thread: ``call_at`` would
# otherwise copy the sleeping task's context once per sleep, for each of thousands of waiting
# triggers. One per thread, because a context cannot be entered by two threads at once (two
# event loops in two threads may fire timers at the same moment); a loop runs its callbacks
# one after the other, so one context serves all of a thread's timers.
_timer_contexts = threading.local()


def _timer_context() -> contextvars.Context:
    context: contextvars.Context | None = getattr(_timer_contexts, "context", None)
    if context is None:
        context = _timer_contexts.context = contextvars.Context()
    return context


class Signal:
    """A flag that one task sleeps on with a timeout, and any code on its event loop may raise
    (:meth:`set`; from another thread, use ``loop.call_soon_threadsafe(signal.set)``).

    What an :class:`asyncio.Event` plus a timeout does, at the cost a triggerer holding
    thousands of waits can afford: a sleep is one future and one timer, where
    ``asyncio.wait_for(event.wait(), t)`` or ``asyncio.wait({...}, timeout=t)`` add a helper
    task, its context and three coroutines, all of which every full GC pass scans. It also
    never swallows a cancellation (``wait_for`` before Python 3.12 can, when the event is set
    just as the sleeper is cancelled): cancelling the sleeper cancels only its own future.
    """

    __slots__ = ("_future", "_is_set")

    def __init__(self) -> None:
        self._is_set = False
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        self._is_set = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self, timeout: float) -> bool:
        """Sleep until :meth:`set` or ``timeout`` seconds; True if set. One sleeper at a time."""
        if self._is_set:
            return True
        if self._future is not None:
            raise RuntimeError("Signal.wait() is already awaited by another task")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_at(loop.time() + max(0.0, timeout), _wake, future, context=_timer_context())
        self._future = future
        try:
            await future
        finally:
            timer.cancel()
            self._future = None
        return self._is_set


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
