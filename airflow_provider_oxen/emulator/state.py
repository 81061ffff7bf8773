"""Generations: the store, a queue row's life (queued -> processing -> terminal), credits, their JSON
form, and what one running emulator holds.

A queue generation waits ``queue_seconds``, then processes: its parameters are checked, its input
images (edit and image-to-video models) are fetched while it renders (``render_seconds``, or the
video render time), and it succeeds, or fails (a bad parameter, an input that cannot be fetched, an
injected fault).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .catalogue import (
    VIDEO_FPS,
    ModelSpec,
    build_catalogue,
    input_urls,
    prompt_shots,
    resolve_duration,
    resolve_format,
    resolve_size,
    resolve_video_size,
    validate_params,
)
from .config import RUNTIME_SETTINGS, EmulatorConfig, money
from .events import COMPLETED_EVENT, EventBroker
from .faults import GENERATION_FAULTS, FaultBook
from .images import ImageSpec
from .inputs import InputError, fetch_inputs
from .signing import UrlSigner
from .video import VideoSpec

LIVE_STATUSES = frozenset({"queued", "processing"})
ALL_STATUSES = LIVE_STATUSES | {"succeeded", "failed", "cancelled"}
ZERO = Decimal(0)
# The (single) emulated user: who triggers everything, and the default target namespace.
USER = "emulator-user"
REQUEST_LOG_SIZE = 200_000
MEDIA_CACHE_BYTES = 256 * 1024 * 1024

Media = ImageSpec | VideoSpec


def iso(timestamp: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix (None stays None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ApiError(Exception):
    """Answered in the API's error envelope: ``status``, with the message as its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class InsufficientCredits(ApiError):
    """A request costs more than the credits left (answered as 402 ``insufficient_credits``)."""

    def __init__(self, needed: Decimal, remaining: Decimal) -> None:
        detail = (
            f"Insufficient credits: this request costs {money(needed)} USD and {money(remaining)} USD remain"
        )
        super().__init__(402, detail)


class MediaCache:
    """Bounded LRU of rendered bytes (images and videos); concurrent first fetches of one result share
    a single render."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Media, bytes] = OrderedDict()
        self._pending: dict[Media, asyncio.Future[bytes]] = {}
        self._bytes = 0

    async def get(self, spec: Media) -> bytes:
        """The result's bytes, rendering in a worker thread on a miss."""
        cached = self._items.get(spec)
        if cached is not None:
            self._items.move_to_end(spec)
            return cached
        pending = self._pending.get(spec)
        if pending is None:
            pending = self._pending[spec] = asyncio.get_running_loop().run_in_executor(None, spec.render)
            pending.add_done_callback(lambda _: self._pending.pop(spec, None))
        data = await asyncio.shield(pending)
        if spec not in self._items:
            self._items[spec] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                self._bytes -= len(self._items.popitem(last=False)[1])
        return data

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


@dataclass(eq=False)
class Generation:
    """One generation row, and what its life needs (its fault, its task)."""

    generation_id: str
    spec: ModelSpec
    parameters: dict[str, Any]
    target_namespace: str
    # What the generation costs: held from the credits when created, refunded if it fails or is
    # cancelled, so it is only ever billed (``cost``) once it succeeded.
    price: Decimal
    enqueued_at: float = field(default_factory=time.time)
    status: str = "queued"
    started_at: float | None = None
    completed_at: float | None = None
    error_message: str | None = None
    retried_from_id: str | None = None
    # True for rows made by the sync endpoint: they are history, not queue rows.
    sync: bool = False
    # The result files (images or videos), in order.
    outputs: list[Media] = field(default_factory=list)
    # The generation fault (failure or stall) taken when it was enqueued.
    fault_type: str | None = None
    fault_message: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def cost(self) -> Decimal:
        """What was billed: the price once succeeded, zero otherwise (in flight, failed, cancelled)."""
        return self.price if self.status == "succeeded" else ZERO


class GenerationStore:
    """All generations of the (single) emulated user."""

    def __init__(self, config: EmulatorConfig, faults: FaultBook, broker: EventBroker) -> None:
        self.config = config
        self.catalogue: dict[str, ModelSpec] = build_catalogue()
        self.faults = faults
        self.broker = broker
        self.signer = UrlSigner()
        self.media = MediaCache(MEDIA_CACHE_BYTES)
        self.rows: dict[str, Generation] = {}
        self.live: dict[str, Generation] = {}
        # Completion events still to leave out (``/_emulator/events/suppress``).
        self.suppress_events = 0
        self._reseed_renders()

    def reset(self) -> None:
        """Forget every generation (live ones are stopped)."""
        self.stop_all()
        self.rows.clear()
        self.live.clear()
        self.media.clear()
        self.suppress_events = 0
        self._reseed_renders()

    def stop_all(self) -> None:
        """Stop every live generation's life (reset, server shutdown)."""
        for generation in self.live.values():
            if generation.task is not None:
                generation.task.cancel()

    def _reseed_renders(self) -> None:
        self._render_rng = random.Random(self.config.render_seed)
        self._render_rng_seed = self.config.render_seed

    def render_duration(self) -> float:
        """How long the next queue generation renders: ``render_seconds``, or a seeded uniform draw
        from ``[render_seconds, render_seconds_max]`` when that range is set."""
        low, high = self.config.render_range()
        if high <= low:
            return low
        if self.config.render_seed != self._render_rng_seed:
            self._reseed_renders()
        return self._render_rng.uniform(low, high)

    # --- credits --------------------------------------------------------------------------------

    def _hold(self, amount: Decimal) -> None:
        """Take ``amount`` from the credits, or raise InsufficientCredits and take nothing."""
        remaining = self.config.credits
        if remaining is not None:
            if amount > remaining:
                raise InsufficientCredits(amount, remaining)
            self.config.credits = remaining - amount

    # --- creation and life ----------------------------------------------------------------------

    def _output(self, generation: Generation, index: int, inputs: tuple[bytes, ...]) -> Media:
        """The recipe of one result file (for validated parameters); ``inputs``: fetched input images."""
        spec, params = generation.spec, generation.parameters
        seed = params.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            # The seed used when the request gave none: stable per generation.
            seed = int.from_bytes(hashlib.sha256(generation.generation_id.encode()).digest()[:4], "big")
        if spec.makes_video:
            width, height = resolve_video_size(params)
            audio = params.get("generate_audio", True)
            return VideoSpec(
                shots=tuple(prompt_shots(params)),
                seed=seed + index,
                width=width,
                height=height,
                duration=resolve_duration(spec, params),
                fps=VIDEO_FPS,
                audio=audio if isinstance(audio, bool) else True,
                model=spec.id,
                generation_id=generation.generation_id,
                index=index,
                background=inputs[0] if inputs else None,
            )
        width, height = resolve_size(spec, params)
        return ImageSpec(
            prompt=str(params.get("prompt")),
            seed=seed + index,
            width=width,
            height=height,
            fmt=resolve_format(spec, params),
            model=spec.id,
            generation_id=generation.generation_id,
            index=index,
            inputs=inputs,
        )

    def _add(self, spec: ModelSpec, params: dict[str, Any], namespace: str, price: Decimal) -> Generation:
        generation = Generation(str(uuid.uuid4()), spec, dict(params), namespace, price)
        self.rows[generation.generation_id] = generation
        return generation

    def enqueue(
        self, spec: ModelSpec, params: dict[str, Any], namespace: str, count: int = 1
    ) -> list[Generation]:
        """Create ``count`` queue rows (one result each) and start their lives; ``params`` is
        everything passed through.

        Raises InsufficientCredits (nothing created) when the rows cost more than the credits left.
        """
        price = spec.price(params)
        self._hold(price * count)
        rows = []
        for _ in range(count):
            generation = self._add(spec, params, namespace, price)
            fault = self.faults.take(GENERATION_FAULTS, model=spec.id)
            if fault is not None:
                generation.fault_type, generation.fault_message = fault.type, fault.error_message
            self.live[generation.generation_id] = generation
            generation.task = asyncio.get_running_loop().create_task(self._live(generation))
            rows.append(generation)
        return rows

    def retry(self, generation: Generation) -> Generation:
        """Cancel (if live) and enqueue a fresh row with the same parameters.

        Raises InsufficientCredits, leaving the old row alone, when the fresh one cannot be paid.
        """
        price = generation.spec.price(generation.parameters)
        refundable = generation.price if generation.status in LIVE_STATUSES else ZERO
        remaining = self.config.credits
        if remaining is not None and price > remaining + refundable:
            raise InsufficientCredits(price, remaining + refundable)
        self.cancel(generation)
        (fresh,) = self.enqueue(generation.spec, generation.parameters, generation.target_namespace)
        fresh.retried_from_id = generation.generation_id
        return fresh

    async def _live(self, generation: Generation) -> None:
        """One queue row's life, until it succeeds or fails; ``cancel()`` ends it at any point."""
        queued = self.config.queue_seconds
        await asyncio.sleep(queued)
        # A render service does not wait on this process's loop, which one 20,000-row listing holds
        # for 0.35-0.55 s: a row started late counts from when it was due, or every render due
        # meanwhile would end in one burst of completions.
        generation.status = "processing"
        generation.started_at = min(time.time(), generation.enqueued_at + queued)
        spec, params = generation.spec, generation.parameters
        # The queue does not validate model parameters up front (per the contract): a bad one only
        # surfaces as a failure once the job starts.
        problem = validate_params(spec, params)
        if problem is not None:
            prefix = "" if problem.param == "prompt" else "Invalid parameter "
            self._end(generation, "failed", prefix + problem.message)
            return
        if generation.fault_type == "stall_generation":
            return  # processing until cancelled
        seconds = self.render_duration()
        if spec.makes_video:
            seconds = self.config.video_seconds(seconds)
        seconds -= time.time() - generation.started_at
        urls = input_urls(spec, params)
        try:
            inputs = await self._render(seconds, urls)
        except Exception as exc:
            message = str(exc) if isinstance(exc, InputError) else f"input_image: {type(exc).__name__}"
            self._end(generation, "failed", message)
            return
        if generation.fault_type == "generation_failure":
            self._end(generation, "failed", generation.fault_message)
            return
        generation.outputs = [self._output(generation, 0, inputs)]
        self._end(generation, "succeeded")

    @staticmethod
    async def _render(seconds: float, urls: list[tuple[str, str]]) -> tuple[bytes, ...]:
        """Wait out the render; the inputs are fetched meanwhile, and one that cannot be had
        fails it at once."""
        if not urls:
            # One timer and no task beside it: the benchmarks complete thousands a second, on
            # the cores the client under test needs.
            await asyncio.sleep(seconds)
            return ()
        render = asyncio.ensure_future(asyncio.sleep(seconds))
        try:
            inputs = await fetch_inputs(urls)
            await render
        finally:
            render.cancel()
        return inputs

    def start_sync(
        self, spec: ModelSpec, params: dict[str, Any], namespace: str, count: int, inputs: tuple[bytes, ...]
    ) -> Generation:
        """A sync-endpoint request that is being rendered: paid now (InsufficientCredits if it cannot).

        ``inputs``: its input images, already fetched.
        """
        price = spec.price(params, count)
        self._hold(price)
        generation = self._add(spec, params, namespace, price)
        generation.status, generation.started_at, generation.sync = "processing", generation.enqueued_at, True
        generation.outputs = [self._output(generation, i, inputs) for i in range(count)]
        return generation

    def sync_render_seconds(self, spec: ModelSpec) -> float:
        """How long the sync endpoint renders a request for this model."""
        seconds = self.config.render_seconds
        return self.config.video_seconds(seconds) if spec.makes_video else seconds

    def _end(self, generation: Generation, status: str, error: str | None = None) -> None:
        """Make the row terminal; a queue row that succeeded or failed is announced on the stream."""
        generation.status, generation.error_message, generation.completed_at = status, error, time.time()
        self.live.pop(generation.generation_id, None)
        if status != "succeeded" and self.config.credits is not None:
            self.config.credits += generation.price
        if status == "cancelled" or generation.sync:
            return
        event: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "status": status,
            "media_type": generation.spec.media_type,
        }
        if status == "succeeded":
            event.update(model=generation.spec.id, url=self.result_url(generation))
        else:
            event["error"] = error
        if self.suppress_events > 0:
            # A "missed" event: the row still finishes, subscribers just never hear of it.
            self.suppress_events -= 1
            return
        if not self.broker.subscribers:
            return
        self.broker.publish(COMPLETED_EVENT, event)
        if status == "succeeded":
            # An unrelated event type on the same stream, so clients have to filter by event name.
            remaining = self.config.credits
            self.broker.publish(
                "credits_updated",
                {
                    "credits_remaining": None if remaining is None else money(remaining),
                    "cost": money(generation.price),
                },
            )

    def finish_sync(self, generation: Generation) -> None:
        """The sync render is done (also when the client left meanwhile: the work was done and paid)."""
        self._end(generation, "succeeded")

    def cancel(self, generation: Generation) -> bool:
        """Cancel a live row (no event; its price is refunded); False when it was already terminal."""
        if generation.status not in LIVE_STATUSES:
            return False
        if generation.task is not None:
            generation.task.cancel()
        self._end(generation, "cancelled")
        return True

    # --- reading --------------------------------------------------------------------------------

    def queue_row(self, generation_id: str) -> Generation | None:
        generation = self.rows.get(generation_id)
        return None if generation is None or generation.sync else generation

    def result_url(self, generation: Generation, index: int = 0) -> str:
        """A freshly signed URL for one of the generation's result files."""
        base = self.config.public_url or ""
        name = generation.outputs[index].filename
        return self.signer.sign(base, generation.generation_id, name, self.config.url_ttl_seconds)

    def select(
        self,
        statuses: frozenset[str] | None,
        model: str | None,
        namespace: str | None,
        media_type: str | None,
        include_sync: bool = False,
    ) -> Iterator[Generation]:
        """Rows matching the filters; with no status filter, only live rows."""
        source = self.live.values() if statuses is None else self.rows.values()
        for generation in source:
            if (
                (include_sync or not generation.sync)
                and (statuses is None or generation.status in statuses)
                and model in (None, generation.spec.id)
                and namespace in (None, generation.target_namespace)
                and media_type in (None, generation.spec.media_type)
            ):
                yield generation

    def to_json(self, generation: Generation, details: bool = False) -> dict[str, Any]:
        """The queue row as documented (no cost), or with ``details`` the full metadata of
        ``/api/ai/generations`` (plus cost, who triggered it, and more). A succeeded row's URLs are
        re-signed per read.

        With the ``row_parameters`` setting on, a queue row also carries the request's own parameters
        (seed, image_size, ...) as top-level fields, never replacing a documented one.
        """
        succeeded = generation.status == "succeeded"
        data: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "model_name": generation.spec.id,
            "prompt": generation.parameters.get("prompt"),
            "media_type": generation.spec.media_type,
            "status": generation.status,
            "result_url": self.result_url(generation) if succeeded else None,
            "error_message": generation.error_message,
            "enqueued_at": iso(generation.enqueued_at),
            "started_at": iso(generation.started_at),
            "completed_at": iso(generation.completed_at),
        }
        if details:
            count = len(generation.outputs) if succeeded else 0
            data.update(
                result_urls=[self.result_url(generation, i) for i in range(count)],
                retried_from_id=generation.retried_from_id,
                cost=money(generation.cost),
                currency="USD",
                triggered_by=USER,
                target_namespace=generation.target_namespace,
                source="sync" if generation.sync else "queue",
                parameters=generation.parameters,
            )
            return data
        if generation.retried_from_id is not None:
            data["retried_from_id"] = generation.retried_from_id
        if self.config.row_parameters:
            for key, value in generation.parameters.items():
                data.setdefault(key, value)
        return data


class EmulatorState:
    """Everything one running emulator holds; handlers reach it through the aiohttp app."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.initial_config = config.model_copy()
        self.faults = FaultBook()
        self.broker = EventBroker()
        self.generations = GenerationStore(config, self.faults, self.broker)
        # What the emulator saw: /api requests in arrival order (of the headers only User-Agent is
        # kept, never the API key), and exact per-route counts (``"METHOD /route/{template}"``).
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.route_counts: Counter[str] = Counter()

    def reset(self, restore_config: bool = False) -> None:
        """Clear requests, counters, faults and generations; optionally restore start-up settings."""
        self.requests.clear()
        self.route_counts.clear()
        self.faults.faults.clear()
        self.generations.reset()
        if restore_config:
            for name in RUNTIME_SETTINGS:
                setattr(self.config, name, getattr(self.initial_config, name))

    def stats(self) -> dict[str, Any]:
        """Per-route request counts merged with counts of generations by status and of credits."""
        rows = self.generations.rows.values()
        statuses = Counter(row.status for row in rows)
        # Held (in flight) or billed (succeeded): everything not given back.
        spent = sum((row.price for row in rows if row.status in LIVE_STATUSES | {"succeeded"}), ZERO)
        return {
            **self.route_counts,
            "requests_total": self.route_counts.total(),
            "generations_created": len(rows),
            "generations_in_flight": len(self.generations.live),
            **{f"generations_{status}": statuses[status] for status in sorted(ALL_STATUSES)},
            "events_subscribers": len(self.broker.subscribers),
            "credits_spent": money(spent),
        }
