"""One HTTP client and one status feed per triggerer process and connection, shared by all triggers.

A triggerer runs every trigger as a task on one asyncio loop. Thousands of Oxen triggers
each polling with their own client would cost thousands of sockets and requests per
interval; instead every trigger registers what it waits for with the process's
:class:`OxenHub`, which learns completions once for all of them:

* ``events`` mode: one ``GET /api/events`` subscription; a ``media_generation_completed``
  event for a waited-for id completes it with no further request: ``status: succeeded``
  with its ``url``, ``status: failed`` with its ``error`` text (a status read only if the
  event does not say enough).
* reconciliation (both modes): one ``GET /api/ai/queue`` (in-flight rows) per interval,
  plus one status read per waited-for id that is no longer in flight. It runs after every
  gap (start-up, stream (re)connect, registrations the stream may not cover) and
  periodically as the safety net for missed events and for cancellations, which the stream
  does not report: every ``SAFETY_FACTOR`` polling intervals while the stream is open, every
  polling interval while it is not (``poll`` mode, a reconnect in progress, or the endpoint
  refusing us).
* registrations while the stream is open: a generation the last listing (made while this
  stream stayed open) showed in flight finished, if at all, after the stream opened, so its
  completion event reaches the hub: either it is still to come, or it came before its
  trigger registered and the hub kept it (``FINISHED_MEMORY``). Such a registration costs
  no request. Any other registered id gets one status read ("catch-up"), not a listing:
  at 20,000 waits a listing is megabytes of JSON that stall the loop while it is decoded.
  (More than ``CATCH_UP_READS_MAX`` ids due at once, a burst of fresh deferrals, get one
  listing instead, so the request count stays bounded.)

Failure handling (the hub's loops never end while a trigger waits; anything unexpected is
logged and retried with capped backoff):

* A listing row that cannot be parsed is skipped (that id gets a status read instead).
* The event stream reconnects with capped exponential backoff; the backoff only resets
  after a stream stayed open ``HEALTHY_STREAM_SECONDS``, and connection attempts are never
  closer than ``MIN_RECONNECT_SPACING``, so a stream cut after every event cannot turn into
  a reconnect storm.
* A 401/403/404 on the event stream falls back to polling; the stream is re-probed with
  backoff from ``EVENTS_REPROBE_BASE`` up to ``EVENTS_REPROBE_MAX`` seconds.
* A 401/403 on the queue listing fails every waiter: the listing is one request made with
  the connection's key on behalf of all of them, so the key is rejected for everyone and
  no retry can fix it (the tasks fail without spending their retries).
* A 403 or 404 reading one generation fails only that generation, as a ``failed`` row
  whose ``error_message`` says why (a 404 means "gone": it may well have finished earlier
  and must not be a reason to enqueue it again). A 401 or any other error on one read is
  retried on the next reconciliation (the listing decides whether the key is wrong).

The last trigger to leave closes the stream and the client.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from airflow_provider_oxen.exceptions import (
    OxenAPIStatusError,
    OxenAuthenticationError,
    OxenError,
    OxenRateLimitError,
)
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook
from airflow_provider_oxen.hooks.retry import RetryPolicy, backoff_ceiling, backoff_delay
from airflow_provider_oxen.models import (
    COMPLETION_EVENT,
    Generation,
    GenerationStatus,
    OxenEvent,
)
from airflow_provider_oxen.waiting import ProgressLog, Signal, StatusTracker

log = logging.getLogger(__name__)

# Status reads in flight at once per hub; also the shared client's connection pool size.
READ_CONCURRENCY = 16
# Registrations arriving within this window share one reconciliation.
COALESCE_SECONDS = 0.05
# Reconciliations woken by registrations or reconnects start at least this many times their
# previous duration apart (never more than MAX_RECONCILE_SPACING): with thousands of waits a
# listing is large, and back-to-back listings during a burst of registrations would keep the
# loop busy decoding them while completion events wait.
RECONCILE_SPACING_FACTOR = 2.0
MAX_RECONCILE_SPACING = 2.0
# A listing's scan hands the loop back every this many rows of waited-for ids (events keep flowing).
DELIVERY_CHUNK = 256
# In events mode the safety-net reconciliation runs this many polling intervals apart.
SAFETY_FACTOR = 6.0
# While the stream stays open, at most this many per-id reads per safety interval (see _reads_due).
SAFETY_READS_MAX = 100
# The shortest polling interval a waiter gets: the hub lists the queue at the shortest interval
# any waiter asks for, so one task's ``poll_interval=0`` would list it non-stop for all of them.
MIN_POLL_INTERVAL = 1.0
# More registered ids than this due a catch-up at once (a burst of fresh deferrals): one listing
# answers for all of them instead of a status read each (the request count stays bounded).
CATCH_UP_READS_MAX = 32
# While the stream delivers completion events (one came within this many seconds), the periodic
# safety round waits for a pause, for at most one more safety interval: its listing (megabytes
# of JSON at 50,000 waits, decoded in one piece) would hold up every event behind it, and a
# stream that delivers events is not losing them. Cancellations, which send no event, are
# therefore noticed within two safety intervals (see docs/performance.md).
BURST_QUIET_SECONDS = 0.5
# In events mode the first listing waits up to this long for the stream to open: a listing made
# before it opened covers nothing, and the one after it would list every waited-for id again.
FIRST_STREAM_WAIT = 5.0
# Completion events of generations nobody waited for yet, kept for a trigger that registers
# late (per generation of the memory, which turns over at each listing; oldest dropped first).
FINISHED_MEMORY = 10_000
# A failed queue listing doubles the next interval, up to this factor (the API is in trouble).
MAX_STRETCH = 4.0
# A waiting trigger logs where its batch stands at most this often (and only when it changed).
PROGRESS_INTERVAL = 30.0
# Bound on stopping the hub's own tasks when the last trigger leaves.
CLOSE_TIMEOUT = 5.0
# Silence on the event stream longer than this is treated as a dead connection.
EVENTS_READ_TIMEOUT = 90.0
# Only a stream that stayed open this long resets the reconnect backoff.
HEALTHY_STREAM_SECONDS = 30.0
# Two connection attempts to the event stream never start closer together than this.
MIN_RECONNECT_SPACING = 1.0
# After the events endpoint refused us (401/403/404): first re-probe after about this many
# seconds, doubling per refusal, never more than EVENTS_REPROBE_MAX (jittered down to half).
EVENTS_REPROBE_BASE = 30.0
EVENTS_REPROBE_MAX = 300.0
# Statuses with which the events endpoint refuses us: fall back to polling, re-probe later.
STREAM_REFUSED_STATUSES = frozenset({401, 403, 404})
# Where a completion event carries its result URL and its failure text (not row fields).
_EVENT_ONLY_KEYS = frozenset({"url", "error"})
_IN_FLIGHT = frozenset({GenerationStatus.QUEUED.value, GenerationStatus.PROCESSING.value})


class Waiter:
    """One trigger's registration: rows the hub learnt for it, queued until the trigger reads them.

    The hub only queues; the trigger's own task applies the rows (:meth:`drain`), so the
    status lines it logs land in that trigger's task log, not in whichever task runs the hub.
    """

    # One per waiting trigger, thousands per process: no per-instance __dict__.
    __slots__ = ("_inbox", "_last", "changed", "error", "poll_interval", "tracker")

    def __init__(self, tracker: StatusTracker, poll_interval: float) -> None:
        self.tracker = tracker
        self.poll_interval = poll_interval
        self.changed = Signal()
        self.error: OxenError | None = None
        # Rows, and (id, status) pairs still in flight (see deliver_in_flight).
        self._inbox: list[Generation | tuple[str, str]] = []
        self._last: dict[str, GenerationStatus] = {}

    def deliver_in_flight(self, generation_id: str, status: str) -> None:
        """A status still in flight, as a listing shows it: kept as two strings until the trigger
        applies it. A row object per id would live until then, and tens of thousands of them
        would fill the collector's oldest generation (one full collection stops the loop)."""
        if self._last.get(generation_id) is not GenerationStatus(status):
            self._last[generation_id] = GenerationStatus(status)
            self._inbox.append((generation_id, status))

    def deliver(self, row: Generation) -> None:
        if self._last.get(row.generation_id) is row.status:
            return
        self._last[row.generation_id] = row.status
        self._inbox.append(row)
        # Only an outcome wakes the trigger: "queued" and "processing" end nothing, and are
        # applied with the next row that does or at the trigger's next progress line (within
        # PROGRESS_INTERVAL). A listing made during a burst of completions shows thousands of
        # rows turned "processing": waking every trigger for them held up the events behind it.
        if row.status.is_terminal:
            self.changed.set()

    def drain(self) -> None:
        rows, self._inbox = self._inbox, []
        for row in rows:
            if isinstance(row, tuple):
                row = Generation.model_validate({"generation_id": row[0], "status": row[1]})
            self.tracker.update(row)

    def fail(self, error: OxenError) -> None:
        self.error = error
        self.changed.set()


class OxenHub:
    """Shared client, event stream and reconciliation for one connection in one event loop."""

    def __init__(self, oxen_conn_id: str, mode: str) -> None:
        self.oxen_conn_id = oxen_conn_id
        self.mode = mode
        # False while the events endpoint refuses us (401/403/404): polling until a re-probe works.
        self.events_available = mode == "events"
        self.refs = 0
        self.hook: OxenAsyncHook = OxenAsyncHook(oxen_conn_id)
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters: dict[str, set[Waiter]] = {}
        # The raw status of each waited-for id as last delivered from a listing (or as it stood
        # when found in flight otherwise): a listing row with the same status again is not
        # parsed or delivered (see :meth:`_scan_listing`); an id in here has been seen in flight.
        self._listed: dict[str, str] = {}
        # Ids that left the listing while the event stream stayed open, with when a listing first
        # missed them: their completion event is most likely on its way (a busy loop reads the
        # stream late); and the longest such an event took to come since the last round (the
        # stream's lag). See :func:`overdue_reads`.
        self._missing: dict[str, float] = {}
        self._lag = 0.0
        # When the last completion event came (see BURST_QUIET_SECONDS).
        self._last_event = float("-inf")
        # Per-id reads left in this safety interval while the stream is open, and when it ends.
        self._read_budget = 0
        self._budget_ends = float("-inf")
        # Bumped whenever the event stream (re)opens; the epoch the last listing saw it open in.
        self._stream_epoch = 0
        self._listing_epoch: int | None = None
        self._registered: set[Waiter] = set()
        # Ids the last listing made while the current stream stayed open showed in flight (and
        # ids a catch-up read found in flight since): their completion events reach us.
        self._covered: set[str] = set()
        self._covered_epoch: int | None = None
        # Completion events of ids nobody waited for when they came: this listing round's and
        # the previous one's (see :meth:`_remember`).
        self._finished: OrderedDict[str, OxenEvent] = OrderedDict()
        self._finished_before: OrderedDict[str, OxenEvent] = OrderedDict()
        # Ids delivered terminal this listing round and the previous one: a listing that lags
        # behind them must not cover them again (a second trigger for one would wait in vain).
        self._ended: set[str] = set()
        self._ended_before: set[str] = set()
        # Registered ids whose completion the stream may have missed: read by the next round.
        self._unchecked: set[str] = set()
        self._wake = Signal()
        self._stream_settled = Signal()  # set once the stream first opened or was refused
        self._reads = asyncio.Semaphore(READ_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._policy = RetryPolicy()
        self._stream_open = False
        self._closed = False
        # Holds the start task while it runs: the event loop keeps only a weak reference to a task.
        self._starter: asyncio.Task[None] | None = None

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = await self.hook.get_settings()
        # Completion reads are short; the event stream holds one connection for itself.
        limits = httpx.Limits(
            max_connections=READ_CONCURRENCY + 4, max_keepalive_connections=READ_CONCURRENCY
        )
        client = await self.hook.new_client(limits=limits)
        hook = OxenAsyncHook(self.oxen_conn_id, client=client, settings=settings)
        self.run(hook, client, settings.retry)

    def run(self, hook: OxenAsyncHook, client: httpx.AsyncClient | None, policy: RetryPolicy) -> None:
        """Start the hub's loops with this hook (its client is closed with the hub)."""
        self.hook = hook
        self._client = client
        self._policy = policy
        self._spawn(self._keep_running("reconciliation", self._reconcile_loop))
        if self.mode == "events":
            self._spawn(self._keep_running("event stream", self._events_loop))

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
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, coro: Any) -> None:
        # Hub tasks outlive the trigger that started the hub: they must not inherit its
        # context (Airflow routes log lines to a task's log file through it).
        task = contextvars.Context().run(asyncio.get_running_loop().create_task, coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_running(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` until the hub closes; restart it (after a backoff) if it ever ends."""
        failures = 0
        while not self._closed:
            try:
                await loop()
            except Exception:  # cancellation (BaseException) still stops the hub
                log.exception("Oxen hub %s loop failed unexpectedly: restarting it", name)
            else:
                if self._closed:
                    return
                log.error("Oxen hub %s loop ended unexpectedly: restarting it", name)
            failures += 1
            await asyncio.sleep(max(backoff_delay(failures, self._policy), COALESCE_SECONDS))

    # -- registrations ----------------------------------------------------------------------------

    async def wait(self, tracker: StatusTracker, poll_interval: float, deadline: float) -> None:
        """Feed ``tracker`` what the hub learns until it is done or ``deadline`` (epoch seconds).

        Raises the error that ended every wait (a rejected key on the queue listing).
        """
        waiter = self.register(tracker, poll_interval)
        progress = ProgressLog(tracker, tracker.logger, PROGRESS_INTERVAL)
        woken = False
        try:
            while True:
                waiter.drain()
                if waiter.error is not None:
                    raise waiter.error
                remaining = deadline - time.time()
                if tracker.done or remaining <= 0:
                    return
                if woken:  # before, the trigger's "Waiting for" line says where the batch starts
                    progress.maybe_log()
                # Wake for the next progress line too, so a quiet batch still reports now and then.
                await waiter.changed.wait(min(remaining, PROGRESS_INTERVAL))
                waiter.changed.clear()
                woken = True
        finally:
            self.unregister(waiter)

    def register(self, tracker: StatusTracker, poll_interval: float) -> Waiter:
        waiter = Waiter(tracker, max(MIN_POLL_INTERVAL, poll_interval))
        self._registered.add(waiter)
        covering = self._stream_covers()
        unchecked = False
        for generation_id in tracker.pending:
            self._waiters.setdefault(generation_id, set()).add(waiter)
            event = self._finished.pop(generation_id, None) or self._finished_before.pop(generation_id, None)
            if event is not None:
                self._complete(generation_id, event)  # it finished before its trigger registered
            elif covering and generation_id in self._covered:
                # Seen in flight: its event will come, so a listing that misses it first only
                # means the stream is late (see :meth:`_reads_due`).
                self._listed.setdefault(generation_id, GenerationStatus.QUEUED.value)
            else:
                # Start-up gap: it may have finished before we were listening.
                self._unchecked.add(generation_id)
                unchecked = True
        if unchecked:
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
                    self._listed.pop(generation_id, None)
                    # Left unfinished (a deadline, a kill: cancelled, which sends no event).
                    self._covered.discard(generation_id)

    def _deliver(self, row: Generation) -> None:
        for waiter in list(self._waiters.get(row.generation_id, ())):
            waiter.deliver(row)
        if row.status.is_terminal:
            self._waiters.pop(row.generation_id, None)
            self._listed.pop(row.generation_id, None)
            self._covered.discard(row.generation_id)
            self._ended.add(row.generation_id)

    def _stream_covers(self) -> bool:
        """Whether ``_covered`` describes the open stream (its ids' events reach us)."""
        return self._stream_open and self._covered_epoch == self._stream_epoch

    def _fail_all(self, error: OxenError) -> None:
        for waiter in list(self._registered):
            waiter.fail(error)

    # -- reconciliation ---------------------------------------------------------------------------

    def _interval(self, stretch: float) -> float:
        base = min((w.poll_interval for w in self._registered), default=5.0)
        if self._stream_open:
            return base * SAFETY_FACTOR
        return base * stretch

    async def _reconcile_loop(self) -> None:
        stretch = 1.0
        errors = 0
        took = 0.0
        last_listing = time.monotonic()
        while not self._closed:
            due = last_listing + self._interval(stretch)
            await self._wake.wait(due - time.monotonic())
            self._wake.clear()
            if self._closed:
                return
            await asyncio.sleep(COALESCE_SECONDS)
            if (
                time.monotonic() < due
                and self._stream_covers()
                and len(self._catch_up_due()) <= CATCH_UP_READS_MAX
            ):
                # Woken by registrations the open stream covers but for a few ids: read those.
                try:
                    await self.catch_up()
                except Exception:
                    log.exception("Oxen hub catch-up reads failed unexpectedly (will retry)")
                continue
            await asyncio.sleep(
                max(0.0, min(MAX_RECONCILE_SPACING, took * RECONCILE_SPACING_FACTOR) - COALESCE_SECONDS)
            )
            while self._burst_holds(due, time.monotonic()):
                if await self._wake.wait(BURST_QUIET_SECONDS):
                    break  # a registration, a reconnect or closing: hold no longer
            if self.mode == "events" and self.events_available and not self._stream_settled.is_set():
                await self._stream_settled.wait(FIRST_STREAM_WAIT)
                # Only the first listing waits: a stream that never connects must not hold up polling.
                self._stream_settled.set()
            started = last_listing = time.monotonic()
            try:
                listed = await self.reconcile()
                took = time.monotonic() - started
                errors = 0
            except Exception:
                # A bug or an API surprise: the safety net must outlive it.
                errors += 1
                log.exception("Oxen hub reconciliation failed unexpectedly (will retry)")
                listed = False
                await asyncio.sleep(backoff_delay(errors, self._policy))
            stretch = 1.0 if listed else min(MAX_STRETCH, stretch * 2)

    def _burst_holds(self, due: float, now: float) -> bool:
        """Whether a periodic safety round (due at ``due``) waits for the burst of events to pause.

        Only a round of the open stream with nothing else to do waits: not a gap round (the
        stream (re)opened since the last listing), not one with registrations to check.
        """
        return (
            self._stream_open
            and self._listing_epoch == self._stream_epoch
            and not self._unchecked
            and now - self._last_event < BURST_QUIET_SECONDS
            and now < due + self._interval(1.0)
        )

    async def reconcile(self) -> bool:
        """Re-read what is waited for: one list call, then one read per id no longer in flight.

        Returns False when the queue could not be listed (the caller backs off).
        """
        ids = list(self._waiters)
        # This round checks every id waited for now; if the listing fails they are still due.
        checking, self._unchecked = self._unchecked, set()
        if not ids:
            return True
        epoch = self._stream_epoch if self._stream_open else None
        try:
            # The raw body, not ``hook.list_queue()``: that validates all rows at once, and one row
            # we cannot parse must not hide every other one (see :meth:`_scan_listing`).
            body = await self.hook.list_queue_body(object_hook=in_flight_pair)
        except OxenAuthenticationError as exc:
            self._unchecked |= checking
            self._fail_all(exc)  # the key is rejected for everyone (see the module docstring)
            return False
        except OxenError as exc:
            self._unchecked |= checking
            log.warning("Could not list the Oxen queue (will retry): %s", exc)
            return False
        except BaseException:
            self._unchecked |= checking
            raise
        in_flight, listed_in_flight = await self._scan_listing(body)
        self._note_coverage(listed_in_flight, epoch)
        # Events may have completed some ids while the listing was on its way: no read for those.
        # (Ids registered meanwhile wait for the next round, which their registration triggers.)
        # Each row is delivered as soon as its read answers, not once every read has.
        first_of_stream = epoch is not None and self._listing_epoch != epoch
        gone = self._reads_due([i for i in ids if i not in in_flight and i in self._waiters], epoch)
        if gone and first_of_stream and self._stream_open and self._stream_epoch == epoch:
            # The stream's first listing cannot tell an id that finished before the stream opened
            # (its event lost) from one whose event is still unread: while completion events
            # pour in, the stream is delivering them, so read what is left once they pause.
            await self._events_pause(time.monotonic() + self._interval(1.0))
            gone = [i for i in gone if i in self._waiters]
        await asyncio.gather(*(self._read_and_deliver(i) for i in gone))
        return True

    async def _events_pause(self, deadline: float) -> None:
        """Return once no completion event came for ``BURST_QUIET_SECONDS``, or at ``deadline``."""
        for _ in range(int((deadline - time.monotonic()) / BURST_QUIET_SECONDS) + 1):
            if time.monotonic() - self._last_event >= BURST_QUIET_SECONDS or self._closed:
                return
            await asyncio.sleep(BURST_QUIET_SECONDS)

    def _note_coverage(self, listed_in_flight: list[str], epoch: int | None) -> None:
        """Remember which ids this listing showed in flight, if the stream stayed open around it."""
        if epoch is None or not self._stream_open or self._stream_epoch != epoch:
            self._covered, self._covered_epoch = set(), None
        else:
            # A listing may lag behind the stream: an id whose outcome already came is not in flight.
            ended = (self._finished, self._finished_before, self._ended, self._ended_before)
            self._covered = {i for i in listed_in_flight if not any(i in seen for seen in ended)}
            self._covered_epoch = epoch
        # Outcomes older than the previous listing are forgotten (in every mode, so these stay
        # bounded): a trigger registering later than that is not covered, and reads its id.
        self._finished_before, self._finished = self._finished, OrderedDict()
        self._ended_before, self._ended = self._ended, set()

    async def catch_up(self) -> None:
        """One status read per registered id the open stream does not cover; no listing.

        An id found still in flight is covered from then on: it finishes after the stream opened.
        """
        ids = self._catch_up_due()
        self._unchecked.clear()
        epoch = self._stream_epoch
        await asyncio.gather(*(self._catch_up_read(i, epoch) for i in ids))

    def _catch_up_due(self) -> list[str]:
        return [i for i in self._unchecked if i in self._waiters and i not in self._covered]

    async def _catch_up_read(self, generation_id: str, epoch: int) -> None:
        row = await self._read(generation_id)
        if row is None:
            self._unchecked.add(generation_id)  # read again by the next round
            return
        self._deliver(row)
        # Still waited for after delivering: in flight, and no event came during the read.
        if generation_id in self._waiters and self._stream_open and self._stream_epoch == epoch:
            self._covered.add(generation_id)
            self._listed.setdefault(generation_id, row.status.value)

    def _reads_due(self, gone: list[str], epoch: int | None) -> list[str]:
        """Which of the waited-for ids missing from the listing to read now.

        After a gap (no stream, or it (re)opened since the last listing) every one of them:
        their events may have been lost. While the stream stayed open, an id the hub saw in
        flight before and that has just left the queue has its completion event on the way,
        perhaps still unread in the socket when the loop is busy: it is read only once its
        event is overdue (:func:`overdue_reads`), and at most ``SAFETY_READS_MAX`` of those
        per safety interval (being late is not being lost: reading thousands of rows would
        only take the CPU a loop that is behind lacks). Ids never seen in flight (registered
        after finishing, their event forgotten) are read at once. ``epoch`` is the stream's
        epoch when this listing was requested (None: it was not open).
        """
        unbroken = epoch is not None and self._stream_open and self._stream_epoch == epoch
        streaming = unbroken and self._listing_epoch == epoch
        self._listing_epoch = epoch if unbroken else None
        lag, self._lag = self._lag, 0.0
        if not streaming:
            self._missing = {}
            return gone
        now = time.monotonic()
        if now >= self._budget_ends:
            self._read_budget, self._budget_ends = SAFETY_READS_MAX, now + self._interval(1.0)
        missing = {i: self._missing.get(i, now) for i in gone if i in self._listed}
        overdue = overdue_reads(missing, now, lag)[: self._read_budget]
        self._read_budget -= len(overdue)
        for generation_id in overdue:
            del missing[generation_id]
        self._missing = missing
        return [i for i in gone if i not in self._listed] + overdue

    async def _scan_listing(self, body: Any) -> tuple[set[str], list[str]]:
        """Deliver what the listing says of waited-for ids.

        Returns the waited-for ids it shows in flight, and every id (waited for or not) it
        shows queued or processing.

        Only rows of generations we wait for are looked at. A row in flight is taken as its
        id and status alone (:func:`in_flight_pair`; the listing is decoded that way), never
        parsed, and delivered (:meth:`Waiter.deliver_in_flight`) only when its status changed
        past "queued" since the last listing: every wait starts queued (a trigger counts an id
        it has no row for as queued). Any other row (finished, or of an odd status) is parsed
        whole; one that does not parse is skipped: its generation is not in flight for this
        round and gets a status read. The loop is handed back every ``DELIVERY_CHUNK`` rows of
        waited-for ids, so completion events keep flowing while a large listing is scanned.
        """
        in_flight: set[str] = set()
        listed_in_flight: list[str] = []
        skipped: list[str] = []
        looked = 0
        for item in listing_items(body):
            if isinstance(item, tuple):
                generation_id = item[0]
                listed_in_flight.append(generation_id)
            elif isinstance(item, dict) and isinstance(item.get("generation_id"), str):
                generation_id = item["generation_id"]
            else:
                continue
            if generation_id not in self._waiters:
                continue
            looked += 1
            if looked % DELIVERY_CHUNK == 0:
                await asyncio.sleep(0)  # tens of thousands of rows: let events run meanwhile
                if generation_id not in self._waiters:
                    continue  # finished meanwhile
            if isinstance(item, tuple):
                status = item[1]
                in_flight.add(generation_id)
                if status != GenerationStatus.QUEUED.value and self._listed.get(generation_id) != status:
                    for waiter in self._waiters[generation_id]:
                        waiter.deliver_in_flight(generation_id, status)
                self._listed[generation_id] = status
                continue
            try:
                row = Generation.model_validate(item)
            except Exception as exc:
                in_flight.discard(generation_id)
                skipped.append(f"{generation_id} ({type(exc).__name__})")
                continue
            in_flight.add(generation_id)
            if isinstance(item.get("status"), str):
                self._listed[generation_id] = item["status"]
            self._deliver(row)
        if skipped:
            log.warning(
                "Skipped %d unreadable row(s) of the Oxen queue listing: %s",
                len(skipped),
                ", ".join(skipped[:5]),
            )
        return in_flight, listed_in_flight

    async def _read(self, generation_id: str) -> Generation | None:
        """The row of one generation, a failed row if it is gone or forbidden, None to retry later
        (or, once its turn came, if nobody waits for it any more)."""
        async with self._reads:
            if generation_id not in self._waiters:
                # Its outcome came meanwhile: after a gap, thousands of reads may queue here while
                # the stream delivers the events of most of them (one read saved per event).
                return None
            try:
                return await self.hook.get_generation(generation_id)
            except OxenError as exc:
                if isinstance(exc, OxenAPIStatusError) and exc.status_code == 404:
                    return unavailable_row(
                        generation_id,
                        "Oxen no longer knows this generation (HTTP 404): treated as gone. It may "
                        "have finished earlier (finished rows used to expire after about a day); "
                        "check before enqueueing it again.",
                        reason="gone",
                    )
                if isinstance(exc, OxenAPIStatusError) and exc.status_code == 403:
                    return unavailable_row(
                        generation_id,
                        f"Access denied reading this generation (HTTP 403): {exc.api_message}",
                        reason="access_denied",
                    )
                log.warning("Status of %s unavailable for now: %s", generation_id, exc)
            except Exception as exc:
                # E.g. a row that does not parse: read it again next time.
                log.warning(
                    "Status of %s unreadable for now (%s): %s", generation_id, type(exc).__name__, exc
                )
        return None

    async def _read_and_deliver(self, generation_id: str) -> None:
        row = await self._read(generation_id)
        if row is not None:
            self._deliver(row)

    # -- event stream -----------------------------------------------------------------------------

    async def _events_loop(self) -> None:
        attempt = 0  # connections in a row that did not stay healthy
        refusals = 0  # refusals (401/403/404) in a row
        while not self._closed:
            started = time.monotonic()
            opened_at: float | None = None
            pause = 0.0  # a Retry-After to honour

            def opened() -> None:
                nonlocal opened_at, refusals
                opened_at = time.monotonic()
                refusals = 0
                self._stream_opened()

            try:
                async for event in self.hook.events(
                    read_timeout=EVENTS_READ_TIMEOUT, on_open=opened, only=COMPLETION_EVENT
                ):
                    self._on_event(event)
                reason = "the stream ended"
            except OxenAPIStatusError as exc:
                if opened_at is None and exc.status_code in STREAM_REFUSED_STATUSES:
                    refusals += 1
                    delay = reprobe_delay(refusals)
                    if refusals == 1:
                        log.warning(
                            "Oxen events endpoint refused the stream (HTTP %d): polling the queue instead; "
                            "trying the stream again in %.0f s.",
                            exc.status_code,
                            delay,
                        )
                    else:
                        log.info("Oxen events endpoint still refuses the stream (HTTP %d).", exc.status_code)
                    self._stream_settled.set()
                    if self.events_available:
                        self.events_available = False
                        self._wake.set()
                    await asyncio.sleep(delay)
                    continue
                reason = f"HTTP {exc.status_code}"
                if isinstance(exc, OxenRateLimitError) and exc.retry_after:
                    pause = min(exc.retry_after, EVENTS_REPROBE_MAX)
            except (OxenError, httpx.HTTPError) as exc:
                reason = type(exc).__name__
            except Exception as exc:
                log.exception("Oxen event stream failed unexpectedly")
                reason = type(exc).__name__
            finally:
                self._stream_open = False
            now = time.monotonic()
            if opened_at is not None and now - opened_at >= HEALTHY_STREAM_SECONDS:
                attempt = 0
            delay = max(backoff_delay(attempt, self._policy), MIN_RECONNECT_SPACING - (now - started), pause)
            attempt += 1
            log.warning("Oxen event stream broke (%s): reconnecting in %.1f s.", reason, delay)
            await asyncio.sleep(delay)

    def _stream_opened(self) -> None:
        self._stream_open = True
        self._stream_epoch += 1
        self._stream_settled.set()
        if not self.events_available:
            log.info("Oxen events endpoint available again: back to the event stream.")
            self.events_available = True
        # A gap ends here: re-read what completed while we were not listening.
        self._wake.set()

    def _on_event(self, event: OxenEvent) -> None:
        if event.event != COMPLETION_EVENT:
            return
        generation_id = event.generation_id
        if generation_id is None or event.status in _IN_FLIGHT:
            return  # an in-flight "completion" is not an outcome (undocumented): nothing to read yet
        self._last_event = time.monotonic()
        if generation_id in self._waiters:
            since = self._missing.pop(generation_id, None)
            if since is not None:  # a listing missed it that long ago: how late the stream is
                self._lag = max(self._lag, time.monotonic() - since)
            self._complete(generation_id, event)
        else:
            self._remember(generation_id, event)

    def _remember(self, generation_id: str, event: OxenEvent) -> None:
        # Its trigger may not have registered yet (a busy triggerer, a task still deferring).
        self._covered.discard(generation_id)
        finished = self._finished
        finished[generation_id] = event
        if len(finished) > FINISHED_MEMORY:
            finished.popitem(last=False)  # the oldest

    def _complete(self, generation_id: str, event: OxenEvent) -> None:
        row = row_from_event(event)
        if row is not None:
            self._deliver(row)
        else:
            self._spawn(self._read_and_deliver(generation_id))


def overdue_reads(missing: dict[str, float], now: float, lag: float) -> list[str]:
    """The ids of ``missing`` (id: when a listing first missed it) whose completion event is overdue.

    ``lag`` is the longest an event of such an id took to come since the previous round. A
    stream still delivering events of ids missed that long ago is behind, not losing them:
    an id is overdue once missed for more than twice that (a healthy stream: at the next round).
    """
    return [i for i, since in missing.items() if now - since > 2 * lag]


def reprobe_delay(refusals: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before asking a refusing events endpoint again: doubling, capped, jittered."""
    ceiling = backoff_ceiling(refusals - 1, EVENTS_REPROBE_BASE, EVENTS_REPROBE_MAX)
    return ceiling * (0.5 + 0.5 * rand())


def row_from_event(event: OxenEvent) -> Generation | None:
    """The terminal row a completion event describes, or None if it does not say enough.

    ``{"status": "succeeded", "url": ...}`` and ``{"status": "failed", "error": ...}`` (the
    documented shapes) become rows with ``result_url`` / ``error_message``. Anything else,
    a success without its URL, a failure without its text, a status that is not terminal
    or a payload that does not parse, gives None: the caller reads the row instead.
    Trusting the event saves a status read per generation and the latency of one; the
    worker enriches the row (cost, timestamps) when it resumes. Never raises.
    """
    generation_id = event.generation_id
    if generation_id is None:
        return None
    url, error = event.result_url, event.error
    raw_status = event.data.get("status")
    if raw_status is None or raw_status == "":
        # Not documented, but unambiguous: a URL only comes with success, an error with failure.
        if url and not error:
            raw_status = GenerationStatus.SUCCEEDED.value
        elif error and not url:
            raw_status = GenerationStatus.FAILED.value
        else:
            return None
    if not isinstance(raw_status, str):
        return None
    status = GenerationStatus(raw_status)
    if not status.is_terminal:
        return None
    if status is GenerationStatus.SUCCEEDED and not url:
        return None
    if status is GenerationStatus.FAILED and not error:
        return None
    data = {k: v for k, v in event.data.items() if k not in _EVENT_ONLY_KEYS}
    data.update(
        generation_id=generation_id,
        status=status.value,
        result_url=url if status is GenerationStatus.SUCCEEDED else None,
        error_message=error if status is GenerationStatus.FAILED else None,
    )
    try:
        return Generation.model_validate(data)
    except Exception as exc:  # a field of an unexpected type: the row read will tell
        log.debug("Completion event for %s not usable as a row: %s", generation_id, exc)
        return None


def listing_items(body: Any) -> list[Any]:
    """The raw rows of a ``GET /api/ai/queue`` body (``generations`` or ``data``), unparsed.

    A body of an unknown shape counts as an empty listing: every waited-for id then gets a
    status read (slower, but every wait still completes).
    """
    raw: Any = body
    if isinstance(body, dict):
        raw = next((body[key] for key in ("generations", "data") if body.get(key) is not None), [])
    if not isinstance(raw, list):
        log.warning(
            "Unexpected Oxen queue listing (%s): reading each generation instead.", type(raw).__name__
        )
        return []
    return raw


def in_flight_pair(obj: dict[str, Any]) -> Any:
    """``object_hook`` decoding a queue listing: a row in flight becomes ``(generation_id, status)``.

    The hub needs no more of a row still in flight. Decoded as dicts, the rows of a large
    listing (alive while it is scanned) were promoted into the collector's oldest generation
    at every listing, bringing on full collections that stop the loop for a second and more
    at 50,000 waits; a tuple of two strings is not tracked by the collector at all. Any other
    object (the body, a finished or unreadable row) stays a dict.
    """
    generation_id, status = obj.get("generation_id"), obj.get("status")
    if isinstance(generation_id, str) and isinstance(status, str) and status in _IN_FLIGHT:
        return (generation_id, status)
    return obj


def unavailable_row(generation_id: str, message: str, *, reason: str) -> Generation:
    """A failed row standing for a generation we may not (403) or can no longer (404) read.

    ``unavailable`` (``"gone"`` or ``"access_denied"``) tells it apart from a generation
    Oxen itself reported as failed.
    """
    return Generation.model_validate(
        {
            "generation_id": generation_id,
            "status": GenerationStatus.FAILED.value,
            "error_message": message,
            "unavailable": reason,
        }
    )


_HUBS: dict[tuple[int, str, str], OxenHub] = {}


async def _start_hub(hub: OxenHub, key: tuple[int, str, str]) -> None:
    """Start ``hub`` in a task of its own, so no acquirer's cancellation can interrupt it.

    Every acquirer awaits ``hub.started``: the start's outcome (or its error) reaches all of
    them. If every acquirer left while it started, the hub is closed straight away.
    """
    try:
        await hub.start()
    except BaseException as exc:
        if _HUBS.get(key) is hub:
            del _HUBS[key]
        if isinstance(exc, asyncio.CancelledError):  # the loop is shutting down
            hub.started.cancel()
            raise
        hub.started.set_exception(exc)
        hub.started.exception()  # mark retrieved: acquirers re-raise it themselves
        if not isinstance(exc, Exception):
            raise
        return
    hub.started.set_result(None)
    if hub.refs == 0 and _HUBS.get(key) is hub:
        del _HUBS[key]
        await hub.close()


async def _release(hub: OxenHub, key: tuple[int, str, str]) -> None:
    hub.refs -= 1
    if hub.refs > 0 or _HUBS.get(key) is not hub:
        return
    # A failed or cancelled start already left _HUBS; one still under way is closed by
    # _start_hub once started, seeing nobody left.
    if hub.started.done():
        del _HUBS[key]
        await hub.close()


class SharedHub:
    """``async with SharedHub(conn_id, mode) as hub``: the process's hub for this connection and
    mode in the running loop (created on first use), released on exit.

    A class rather than an ``asynccontextmanager``: one of these is held by every waiting
    trigger, and a slotted object is one GC-tracked object where a generator-based manager
    keeps four (generator, manager, its args and kwargs) for the whole wait.
    """

    __slots__ = ("_hub", "_key", "mode", "oxen_conn_id")

    def __init__(self, oxen_conn_id: str, mode: str) -> None:
        self.oxen_conn_id = oxen_conn_id
        self.mode = mode
        self._hub: OxenHub | None = None
        self._key: tuple[int, str, str] | None = None

    async def __aenter__(self) -> OxenHub:
        key = self._key = (id(asyncio.get_running_loop()), self.oxen_conn_id, self.mode)
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = OxenHub(self.oxen_conn_id, self.mode)
            # A task of its own, so cancelling this acquirer cannot cancel the start its neighbours
            # await. Not in hub._tasks (close() cancels those, and the starter may be the one
            # closing); it copies this trigger's context, as the start did when run inline (the
            # connection lookup may depend on it), while the hub's loops start from a clean one.
            hub._starter = asyncio.get_running_loop().create_task(_start_hub(hub, key))
        hub.refs += 1
        try:
            await asyncio.shield(hub.started)
        except BaseException:
            await _release(hub, key)
            raise
        self._hub = hub
        return hub

    async def __aexit__(self, *exc_info: object) -> None:
        hub, key = self._hub, self._key
        self._hub = None
        if hub is not None and key is not None:
            await _release(hub, key)
