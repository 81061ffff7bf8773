"""One HTTP client and one status feed per triggerer process and connection, shared by all triggers.

A triggerer runs every trigger as a task on one asyncio loop. Thousands of Oxen triggers
each polling with their own client would cost thousands of sockets and requests per
interval; instead every trigger registers what it waits for with the process's
:class:`OxenHub`, which learns completions once for all of them:

* ``events`` mode: one ``GET /api/events`` subscription; a ``media_generation_completed``
  event for a waited-for id completes it with no further request (a status read only if
  the event lacks the result URL). The stream reconnects with backoff.
* reconciliation (both modes): one ``GET /api/ai/queue`` (in-flight rows) per interval,
  plus one status read per waited-for id that is no longer in flight. It runs after every
  gap — start-up (new registrations), stream (re)connect — and periodically as the safety
  net for missed events and for failures/cancellations, which the stream does not report.
* ``poll`` mode, or events unavailable (404): reconciliation alone, at the polling
  interval, backing off (x2 per failed listing, up to 4x) while the API is in trouble.

The last trigger to leave closes the stream and the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from airflow_provider_oxen.exceptions import OxenAuthenticationError, OxenError, OxenNotFoundError
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook
from airflow_provider_oxen.hooks.retry import backoff_delay
from airflow_provider_oxen.models import COMPLETION_EVENT, Generation, GenerationStatus, OxenEvent
from airflow_provider_oxen.waiting import StatusTracker, wait_for_event

log = logging.getLogger(__name__)

# Status reads in flight at once per hub; also the shared client's connection pool size.
READ_CONCURRENCY = 16
# Registrations arriving within this window share one reconciliation.
COALESCE_SECONDS = 0.05
# In events mode the safety-net reconciliation runs this many polling intervals apart.
SAFETY_FACTOR = 6.0
# A failed queue listing doubles the next interval, up to this factor (the API is in trouble).
MAX_STRETCH = 4.0
# Bound on stopping the hub's own tasks when the last trigger leaves.
CLOSE_TIMEOUT = 5.0
# Silence on the event stream longer than this is treated as a dead connection.
EVENTS_READ_TIMEOUT = 90.0


class Waiter:
    """One trigger's registration: rows the hub learnt for it, queued until the trigger reads them.

    The hub only queues; the trigger's own task applies the rows (:meth:`drain`), so the
    status lines it logs land in that trigger's task log, not in whichever task runs the hub.
    """

    def __init__(self, tracker: StatusTracker, poll_interval: float) -> None:
        self.tracker = tracker
        self.poll_interval = poll_interval
        self.changed = asyncio.Event()
        self.error: OxenError | None = None
        self._inbox: list[Generation] = []
        self._last: dict[str, GenerationStatus] = {}

    def deliver(self, row: Generation) -> None:
        if self._last.get(row.generation_id) is row.status:
            return
        self._last[row.generation_id] = row.status
        self._inbox.append(row)
        self.changed.set()

    def drain(self) -> None:
        rows, self._inbox = self._inbox, []
        for row in rows:
            self.tracker.update(row)

    def fail(self, error: OxenError) -> None:
        self.error = error
        self.changed.set()


class OxenHub:
    """Shared client, event stream and reconciliation for one connection in one event loop."""

    def __init__(self, oxen_conn_id: str, mode: str) -> None:
        self.oxen_conn_id = oxen_conn_id
        self.mode = mode
        self.events_available = mode == "events"
        self.refs = 0
        self.hook: OxenAsyncHook = OxenAsyncHook(oxen_conn_id)
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters: dict[str, set[Waiter]] = {}
        self._registered: set[Waiter] = set()
        self._wake = asyncio.Event()
        self._reads = asyncio.Semaphore(READ_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = await self.hook.get_settings()
        kwargs = self.hook.client_kwargs(settings)
        # Completion reads are short; the event stream holds one connection for itself.
        kwargs["limits"] = httpx.Limits(
            max_connections=READ_CONCURRENCY + 4, max_keepalive_connections=READ_CONCURRENCY
        )
        # Building the client loads CA certificates: keep that off the triggerer's event loop.
        client = await asyncio.to_thread(httpx.AsyncClient, **kwargs)
        self.hook = OxenAsyncHook(self.oxen_conn_id, client=client, settings=settings)
        self._client = client
        self._policy = settings.retry
        self._spawn(self._reconcile_loop())
        if self.mode == "events":
            self._spawn(self._events_loop())

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            if stuck:
                log.warning("%d Oxen hub task(s) did not stop within %.0f s", len(stuck), CLOSE_TIMEOUT)
        await self._client.aclose()

    def _spawn(self, coro: Any) -> None:
        # Hub tasks outlive the trigger that started the hub: they must not inherit its
        # context (Airflow routes log lines to a task's log file through it).
        task = contextvars.Context().run(asyncio.get_running_loop().create_task, coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- registrations ----------------------------------------------------------------------------

    def register(self, tracker: StatusTracker, poll_interval: float) -> Waiter:
        waiter = Waiter(tracker, poll_interval)
        self._registered.add(waiter)
        for generation_id in tracker.pending:
            self._waiters.setdefault(generation_id, set()).add(waiter)
        # Start-up gap: a generation may have finished before we were listening.
        self._wake.set()
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        self._registered.discard(waiter)
        for generation_id in waiter.tracker.order:
            waiters = self._waiters.get(generation_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[generation_id]

    def _deliver(self, row: Generation) -> None:
        for waiter in list(self._waiters.get(row.generation_id, ())):
            waiter.deliver(row)
        if row.status.is_terminal:
            self._waiters.pop(row.generation_id, None)

    def _fail_all(self, error: OxenError) -> None:
        for waiter in list(self._registered):
            waiter.fail(error)

    # -- reconciliation ---------------------------------------------------------------------------

    def _interval(self, stretch: float) -> float:
        base = min((w.poll_interval for w in self._registered), default=5.0)
        if self.events_available:
            return base * SAFETY_FACTOR
        return base * stretch

    async def _reconcile_loop(self) -> None:
        stretch = 1.0
        while not self._closed:
            await wait_for_event(self._wake, self._interval(stretch))
            self._wake.clear()
            if self._closed:
                return
            await asyncio.sleep(COALESCE_SECONDS)
            listed = await self.reconcile()
            stretch = 1.0 if listed else min(MAX_STRETCH, stretch * 2)

    async def reconcile(self) -> bool:
        """Re-read what is waited for: one list call, then one read per id no longer in flight.

        Returns False when the queue could not be listed (the caller backs off).
        """
        ids = list(self._waiters)
        if not ids:
            return True
        try:
            in_flight = {row.generation_id: row for row in await self.hook.list_queue()}
        except OxenAuthenticationError as exc:
            self._fail_all(exc)
            return False
        except OxenError as exc:
            log.warning("Could not list the Oxen queue (will retry): %s", exc)
            return False
        for generation_id in ids:
            if generation_id in in_flight:
                self._deliver(in_flight[generation_id])
        gone = [i for i in ids if i not in in_flight]
        for row in await asyncio.gather(*(self._read(i) for i in gone)):
            if row is not None:
                self._deliver(row)
        return True

    async def _read(self, generation_id: str) -> Generation | None:
        async with self._reads:
            try:
                return await self.hook.get_generation(generation_id)
            except OxenNotFoundError:
                return Generation(
                    generation_id=generation_id,
                    status=GenerationStatus.FAILED,
                    error_message="Oxen does not know this generation (HTTP 404)",
                )
            except OxenAuthenticationError as exc:
                self._fail_all(exc)
            except OxenError as exc:
                log.warning("Status of %s unavailable for now: %s", generation_id, exc)
        return None

    async def _read_and_deliver(self, generation_id: str) -> None:
        row = await self._read(generation_id)
        if row is not None:
            self._deliver(row)

    # -- event stream -----------------------------------------------------------------------------

    async def _events_loop(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                async for event in self.hook.events(read_timeout=EVENTS_READ_TIMEOUT, on_open=self._wake.set):
                    attempt = 0
                    if event.event == COMPLETION_EVENT and event.generation_id in self._waiters:
                        row = row_from_event(event)
                        if row is not None:
                            self._deliver(row)
                        else:
                            self._spawn(self._read_and_deliver(event.generation_id or ""))
            except OxenNotFoundError:
                log.warning("Oxen events endpoint unavailable: falling back to polling the queue.")
                self.events_available = False
                self._wake.set()
                return
            except OxenAuthenticationError as exc:
                self._fail_all(exc)
                return
            except (OxenError, httpx.HTTPError) as exc:
                log.warning("Oxen event stream broke (%s): reconnecting.", type(exc).__name__)
            await asyncio.sleep(backoff_delay(attempt, self._policy))
            attempt += 1


def row_from_event(event: OxenEvent) -> Generation | None:
    """The terminal row a completion event describes, or None if it does not say enough.

    Trusting the event saves a status read per generation and the latency of one; the
    worker enriches the row (cost, timestamps) when it resumes.
    """
    status = GenerationStatus(event.data.get("status") or GenerationStatus.SUCCEEDED.value)
    url = event.result_url
    if not status.is_terminal or (status is GenerationStatus.SUCCEEDED and not url):
        return None
    return Generation.model_validate({**event.data, "status": status.value, "result_url": url})


_HUBS: dict[tuple[int, str, str], OxenHub] = {}


@contextlib.asynccontextmanager
async def shared_hub(oxen_conn_id: str, mode: str) -> AsyncIterator[OxenHub]:
    """The process's hub for this connection and mode in the running loop (created on first use)."""
    key = (id(asyncio.get_running_loop()), oxen_conn_id, mode)
    hub = _HUBS.get(key)
    if hub is None:
        hub = _HUBS[key] = OxenHub(oxen_conn_id, mode)
        hub.refs += 1
        try:
            await hub.start()
        except BaseException as exc:
            _HUBS.pop(key, None)
            hub.started.set_exception(exc)
            hub.started.exception()  # mark retrieved: concurrent acquirers re-raise it themselves
            raise
        hub.started.set_result(None)
    else:
        hub.refs += 1
        try:
            await asyncio.shield(hub.started)
        except BaseException:
            hub.refs -= 1
            raise
    try:
        yield hub
    finally:
        hub.refs -= 1
        if hub.refs == 0 and _HUBS.get(key) is hub:
            del _HUBS[key]
            await hub.close()
