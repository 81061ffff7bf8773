"""OxenGenerationTrigger: waits in the triggerer for a batch of generations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oxen.exceptions import OxenError, OxenUnrecoverableError
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook
from airflow_provider_oxen.triggers.hub import SharedHub
from airflow_provider_oxen.waiting import WAIT_STRATEGIES, StatusTracker

# ``airflow dags test`` runs triggers in-process, where (Airflow 3.3) connections stored in the
# metadata database cannot be read: say how to get past it.
_CONNECTION_HINT = (
    " (the triggerer could not read the connection; under `airflow dags test` define it as an "
    "AIRFLOW_CONN_<ID> environment variable: see docs/quickstart.md)"
)
# Bound on cancelling work when the user kills the task (the triggerer has its own bound too).
_CANCEL_TIMEOUT = 20.0


class OxenGenerationTrigger(BaseTrigger):
    """Fires one event when every generation is terminal, or at ``deadline``.

    Only ids, the connection id and timing are serialised (never the API key). ``deadline``
    is absolute (epoch seconds) so a triggerer restart does not extend the timeout. At the
    deadline the unfinished generations are cancelled before the event fires; when a user
    marks the deferred task failed/success or clears it, :meth:`on_kill` cancels them.

    All Oxen triggers of a triggerer process share one HTTP client and one status feed
    (:mod:`.hub`): ``wait_strategy="events"`` listens to the SSE stream with a polling
    safety net, ``"poll"`` polls the queue once per interval for all of them.

    Event payload: ``{"status": "success"|"failed"|"cancelled"|"timeout"|"error",
    "message", "generation_ids", "generations": [row, ...], "pending", "timeout"}``.
    """

    # One logger for every instance: Airflow routes each line to its task's log by the running
    # trigger's context, not by the logger, and building one per trigger (LoggingMixin's default)
    # was 9 % of the triggerer's CPU at 50,000 waits.
    _log = structlog.get_logger(f"{__name__}.OxenGenerationTrigger")

    def __init__(
        self,
        generation_ids: list[str],
        oxen_conn_id: str = OxenAsyncHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        wait_strategy: str = "events",
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        if wait_strategy not in WAIT_STRATEGIES:
            raise ValueError(f"wait_strategy must be one of {sorted(WAIT_STRATEGIES)}, got {wait_strategy!r}")
        self.generation_ids = list(generation_ids)
        self.oxen_conn_id = oxen_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else time.time() + 3600.0
        self.wait_strategy = wait_strategy
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self._tracker: StatusTracker | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "generation_ids": self.generation_ids,
                "oxen_conn_id": self.oxen_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "wait_strategy": self.wait_strategy,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        tracker = self._tracker = StatusTracker(self.generation_ids, logger=self.log)
        timeout = max(0.0, self.deadline - time.time())
        self.log.info(
            "Waiting for %d Oxen generation(s) (%s, %.0f s left): %s",
            len(tracker.order),
            self.wait_strategy,
            timeout,
            tracker.order,
        )
        try:
            async with SharedHub(self.oxen_conn_id, self.wait_strategy) as hub:
                await hub.wait(tracker, self.poll_interval, self.deadline)
                if not tracker.done:
                    # The deadline passed (perhaps while no triggerer held this trigger): what
                    # finished meanwhile is a result, not a timeout. Read each status once.
                    await self._read_once(hub.hook, tracker)
                if tracker.done:
                    payload = tracker.payload()
                else:
                    # The payload names what was unfinished at the deadline (the timeout's subject),
                    # so it is built before the cancellations turn those rows terminal.
                    payload = tracker.payload(timed_out=True, timeout=timeout)
                    if self.cancel_on_timeout:
                        await hub.hook.cancel_generations(tracker.pending)
        except Exception as exc:
            # Never fail the trigger itself: Airflow would then fail the task without resuming
            # it (``airflow dags test`` does), and nobody would cancel the generations. The
            # worker resumes with this payload and decides.
            message = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, AirflowNotFoundException):
                message += _CONNECTION_HINT
            self.log.error("Stopped waiting for Oxen generations: %s", message)
            payload = tracker.payload(error=message, unrecoverable=isinstance(exc, OxenUnrecoverableError))
        yield TriggerEvent(payload)

    async def _read_once(self, hook: OxenAsyncHook, tracker: StatusTracker) -> None:
        async def read(generation_id: str) -> None:
            try:
                tracker.update(await hook.get_generation(generation_id))
            except OxenError as exc:
                self.log.warning("Status of %s unavailable at the deadline: %s", generation_id, exc)

        await asyncio.gather(*(read(i) for i in tracker.pending))

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel what is still rendering."""
        pending = self._tracker.pending if self._tracker is not None else self.generation_ids
        if not pending or not self.cancel_on_kill:
            return
        self.log.info("Task killed while deferred: cancelling %d Oxen generation(s).", len(pending))
        hook = OxenAsyncHook(self.oxen_conn_id)
        try:
            await asyncio.wait_for(hook.cancel_generations(pending), timeout=_CANCEL_TIMEOUT)
        finally:
            await hook.aclose()
