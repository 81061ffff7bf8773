"""Generations: the store, the queued -> processing -> terminal scheduler, credits, and their JSON form.

A queue generation waits ``queue_seconds``, then processes: its input images (edit and image-to-video
models) are fetched while it renders (``render_seconds``, or the video render time), and it succeeds,
or fails (a bad parameter, an input that cannot be fetched, an injected fault).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .catalogue import (
    VIDEO_FPS,
    ModelSpec,
    build_catalogue,
    check_prompt,
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
from .faults import FaultBook
from .images import ImageSpec, MediaCache, MediaSpec
from .inputs import InputError, fetch_inputs
from .recording import RequestLog
from .signing import UrlSigner
from .video import VideoSpec

LIVE_STATUSES = frozenset({"queued", "processing"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ALL_STATUSES = LIVE_STATUSES | TERMINAL_STATUSES
ZERO = Decimal(0)


def iso(timestamp: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix (None stays None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def derived_seed(generation_id: str) -> int:
    """The seed used when the request gave none: stable per generation."""
    return int.from_bytes(hashlib.sha256(generation_id.encode()).digest()[:4], "big")


class InsufficientCredits(Exception):
    """A request costs more than the credits left (answered as 402 ``insufficient_credits``)."""

    def __init__(self, needed: Decimal, remaining: Decimal) -> None:
        super().__init__(
            f"Insufficient credits: this request costs {money(needed)} USD and {money(remaining)} USD remain"
        )


@dataclass(eq=False)
class Generation:
    """One generation row; the private fields drive the scheduler and rendering."""

    generation_id: str
    model: str
    prompt: Any
    parameters: dict[str, Any]
    target_namespace: str
    triggered_by: str
    enqueued_at: float
    # What the generation costs: held from the credits when created, refunded if it fails or is
    # cancelled, so it is only ever billed (``cost``) once it succeeded.
    price: Decimal
    status: str = "queued"
    started_at: float | None = None
    completed_at: float | None = None
    error_message: str | None = None
    retried_from_id: str | None = None
    media_type: str = "image"
    # True for rows made by the sync endpoint: they are history, not queue rows.
    sync: bool = False
    # The result files (images or videos), in order.
    outputs: list[MediaSpec] = field(default_factory=list)
    # Input images still to fetch: (label, url) as input_urls gives them.
    input_urls: list[tuple[str, str]] = field(default_factory=list, repr=False)
    pending_error: str | None = None
    fault_error: str | None = None
    stall: bool = False
    # The render time is over but the inputs are still being fetched: finish once they arrive.
    rendered: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def stop_work(self) -> None:
        """Cancel its pending timer and input fetch, if any."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None

    @property
    def cost(self) -> Decimal:
        """What was billed: the price once succeeded, zero otherwise (in flight, failed, cancelled)."""
        return self.price if self.status == "succeeded" else ZERO


class GenerationStore:
    """All generations of the (single) emulated user, plus the counters ``/_emulator/stats`` reports."""

    def __init__(self, config: EmulatorConfig, faults: FaultBook, broker: EventBroker) -> None:
        self.config = config
        self.catalogue: dict[str, ModelSpec] = build_catalogue()
        self.faults = faults
        self.broker = broker
        self.signer = UrlSigner(config.signing_secret)
        self.images = MediaCache(config.image_cache_bytes)
        self.rows: dict[str, Generation] = {}
        self.live: dict[str, Generation] = {}
        self._render_rng = random.Random(config.render_seed)
        self._render_rng_seed = config.render_seed
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.generations_created = 0
        self.images_created = 0
        self.videos_created = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.suppress_events = 0
        self.events_suppressed = 0
        self.credits_spent = ZERO
        self.insufficient_credits = 0

    def reset(self) -> None:
        """Forget every generation (live timers are cancelled) and zero the counters."""
        self.stop_all()
        self.rows.clear()
        self.live.clear()
        self.images.clear()
        self.images.renders = 0
        self.images.video_renders = 0
        self._reseed_renders()
        self._reset_counters()

    def stop_all(self) -> None:
        """Cancel every live generation's timer and input fetch (reset, server shutdown)."""
        for generation in self.live.values():
            generation.stop_work()

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
        remaining = self.config.remaining_credits
        if remaining is not None:
            if amount > remaining:
                self.insufficient_credits += 1
                raise InsufficientCredits(amount, remaining)
            self.config.credits = remaining - amount
        self.credits_spent += amount

    def _refund(self, amount: Decimal) -> None:
        remaining = self.config.remaining_credits
        if remaining is not None:
            self.config.credits = remaining + amount
        self.credits_spent -= amount

    # --- creation -------------------------------------------------------------------------------

    def _output_spec(
        self,
        spec: ModelSpec,
        generation_id: str,
        params: dict[str, Any],
        index: int = 0,
        inputs: tuple[bytes, ...] = (),
    ) -> MediaSpec:
        """The recipe of one result file (for validated parameters); ``inputs``: fetched input images."""
        seed = params.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            seed = derived_seed(generation_id)
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
                generation_id=generation_id,
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
            generation_id=generation_id,
            index=index,
            inputs=inputs,
        )

    def _with_inputs(self, generation: Generation, inputs: tuple[bytes, ...]) -> None:
        spec = self.catalogue[generation.model]
        generation.outputs = [
            self._output_spec(spec, generation.generation_id, generation.parameters, output.index, inputs)
            for output in generation.outputs
        ]

    def enqueue(
        self,
        spec: ModelSpec,
        params: dict[str, Any],
        namespace: str,
        count: int = 1,
        retried_from_id: str | None = None,
    ) -> list[Generation]:
        """Create ``count`` queue rows and schedule their lives; ``params`` is everything passed through.

        Raises InsufficientCredits (nothing created) when the rows cost more than the credits left.
        """
        self._hold(spec.price(params) * count)
        return [self._enqueue_one(spec, params, namespace, retried_from_id) for _ in range(count)]

    def _enqueue_one(
        self, spec: ModelSpec, params: dict[str, Any], namespace: str, retried_from_id: str | None
    ) -> Generation:
        generation_id = str(uuid.uuid4())
        prompt = params.get("prompt")
        generation = Generation(
            generation_id=generation_id,
            model=spec.id,
            prompt=prompt,
            parameters=dict(params),
            target_namespace=namespace,
            triggered_by=self.config.default_namespace,
            enqueued_at=time.time(),
            price=spec.price(params),
            retried_from_id=retried_from_id,
            media_type=spec.media_type,
        )
        # The queue does not validate model parameters up front (per the contract): a bad one is
        # found here but only surfaces as a failure once the job starts.
        error = check_prompt(spec, params)
        if error is not None and error.param == "prompt":
            generation.pending_error = error.message
        else:
            error = error or validate_params(spec, params)
            if error is not None:
                generation.pending_error = f"Invalid parameter {error.message}"
            else:
                # One result per queue row: num_generations is the number of rows.
                generation.outputs = [self._output_spec(spec, generation_id, params)]
                generation.input_urls = input_urls(spec, params)
        fault = self.faults.take_generation_fault(spec.id)
        if fault is not None:
            if fault.type == "stall_generation":
                generation.stall = True
            else:
                generation.fault_error = fault.error_message
        self.rows[generation_id] = generation
        self.live[generation_id] = generation
        self.generations_created += 1
        loop = asyncio.get_running_loop()
        generation.timer = loop.call_later(self.config.queue_seconds, self._start, generation)
        return generation

    def start_sync(
        self,
        spec: ModelSpec,
        params: dict[str, Any],
        namespace: str,
        num_images: int,
        inputs: tuple[bytes, ...] = (),
    ) -> Generation:
        """A sync-endpoint request that is being rendered: paid now (InsufficientCredits if it cannot).

        ``inputs``: its input images, already fetched.
        """
        price = spec.price(params, num_images)
        self._hold(price)
        generation_id = str(uuid.uuid4())
        now = time.time()
        generation = Generation(
            generation_id=generation_id,
            model=spec.id,
            prompt=params.get("prompt"),
            parameters=dict(params),
            target_namespace=namespace,
            triggered_by=self.config.default_namespace,
            enqueued_at=now,
            price=price,
            status="processing",
            started_at=now,
            media_type=spec.media_type,
            sync=True,
        )
        generation.outputs = [
            self._output_spec(spec, generation_id, params, i, inputs) for i in range(num_images)
        ]
        self.rows[generation_id] = generation
        self.generations_created += 1
        return generation

    def finish_sync(self, generation: Generation) -> None:
        """The sync render is done (also when the client left meanwhile: the work was done and paid)."""
        if generation.status != "processing":
            return
        generation.status = "succeeded"
        generation.completed_at = time.time()
        self._count_outputs(generation)
        self.succeeded += 1

    def _count_outputs(self, generation: Generation) -> None:
        if generation.media_type == "video":
            self.videos_created += len(generation.outputs)
        else:
            self.images_created += len(generation.outputs)

    def sync_render_seconds(self, spec: ModelSpec) -> float:
        """How long the sync endpoint renders a request for this model."""
        seconds = self.config.effective_sync_render_seconds()
        return self.config.video_seconds(seconds) if spec.makes_video else seconds

    # --- lifecycle ------------------------------------------------------------------------------

    def _start(self, generation: Generation) -> None:
        if generation.status != "queued":
            return
        generation.status = "processing"
        generation.started_at = time.time()
        generation.timer = None
        if generation.pending_error is not None:
            self._fail(generation, generation.pending_error)
        elif not generation.stall:
            seconds = self.render_duration()
            if generation.media_type == "video":
                seconds = self.config.video_seconds(seconds)
            loop = asyncio.get_running_loop()
            generation.timer = loop.call_later(seconds, self._finish, generation)
            if generation.input_urls:
                generation.task = loop.create_task(self._fetch(generation))

    async def _fetch(self, generation: Generation) -> None:
        """Fetch the inputs while the generation renders; an input that cannot be had fails it at once."""
        try:
            inputs = await fetch_inputs(generation.input_urls, self.config.input_timeout_seconds)
        except Exception as exc:
            generation.task = None
            if generation.status == "processing":
                generation.stop_work()
                message = str(exc) if isinstance(exc, InputError) else f"input_image: {type(exc).__name__}"
                self._fail(generation, message)
            return
        generation.task = None
        generation.input_urls = []
        self._with_inputs(generation, inputs)
        if generation.rendered:
            self._finish(generation)

    def _finish(self, generation: Generation) -> None:
        if generation.status != "processing":
            return
        generation.timer = None
        if generation.fault_error is not None:
            generation.stop_work()
            self._fail(generation, generation.fault_error)
            return
        if generation.task is not None:
            # Rendered, but the inputs have not arrived yet: finish when they do.
            generation.rendered = True
            return
        generation.status = "succeeded"
        generation.completed_at = time.time()
        self.live.pop(generation.generation_id, None)
        self.succeeded += 1
        self._count_outputs(generation)
        if self._announce(
            {
                "generation_id": generation.generation_id,
                "status": "succeeded",
                "media_type": generation.media_type,
                "model": generation.model,
                "url": self.result_url(generation),
            }
        ):
            # An unrelated event type on the same stream, so clients have to filter by event name.
            remaining = self.config.remaining_credits
            self.broker.publish(
                "credits_updated",
                {
                    "credits_remaining": None if remaining is None else money(remaining),
                    "cost": money(generation.price),
                },
            )

    def _fail(self, generation: Generation, message: str) -> None:
        generation.status = "failed"
        generation.error_message = message
        generation.completed_at = time.time()
        self.live.pop(generation.generation_id, None)
        self.failed += 1
        self._refund(generation.price)
        self._announce(
            {
                "generation_id": generation.generation_id,
                "status": "failed",
                "media_type": generation.media_type,
                "error": message,
            }
        )

    def _announce(self, data: dict[str, Any]) -> bool:
        """Publish one ``media_generation_completed`` event; False when suppressed or nobody listens."""
        if self.suppress_events > 0:
            # A "missed" event: the row still finishes, subscribers just never hear of it.
            self.suppress_events -= 1
            self.events_suppressed += 1
            return False
        if not self.broker.subscribers:
            return False
        self.broker.publish(COMPLETED_EVENT, data)
        return True

    def cancel(self, generation: Generation) -> bool:
        """Cancel a live row (no event; its price is refunded); False when it was already terminal."""
        if generation.status not in LIVE_STATUSES:
            return False
        generation.stop_work()
        generation.status = "cancelled"
        generation.completed_at = time.time()
        self.live.pop(generation.generation_id, None)
        self.cancelled += 1
        self._refund(generation.price)
        return True

    def retry(self, generation: Generation) -> Generation:
        """Cancel (if live) and enqueue a fresh row with the same parameters.

        Raises InsufficientCredits, leaving the old row alone, when the fresh one cannot be paid.
        """
        spec = self.catalogue[generation.model]
        price = spec.price(generation.parameters)
        refundable = generation.price if generation.status in LIVE_STATUSES else ZERO
        remaining = self.config.remaining_credits
        if remaining is not None and price > remaining + refundable:
            self.insufficient_credits += 1
            raise InsufficientCredits(price, remaining + refundable)
        self.cancel(generation)
        (fresh,) = self.enqueue(
            spec, generation.parameters, generation.target_namespace, retried_from_id=generation.generation_id
        )
        return fresh

    # --- reading --------------------------------------------------------------------------------

    def queue_row(self, generation_id: str) -> Generation | None:
        generation = self.rows.get(generation_id)
        return None if generation is None or generation.sync else generation

    def result_url(self, generation: Generation, index: int = 0) -> str:
        """A freshly signed URL for one of the generation's result files."""
        base = self.config.public_url or ""
        return self.signer.sign(
            base, generation.generation_id, generation.outputs[index].filename, self.config.url_ttl_seconds
        )

    def select(
        self,
        statuses: frozenset[str] | None,
        model: str | None,
        namespace: str | None,
        media_type: str | None,
        include_sync: bool = False,
    ) -> Iterator[Generation]:
        """Rows matching the filters; with no status filter, only live rows."""
        source: Iterable[Generation] = self.live.values() if statuses is None else self.rows.values()
        for generation in source:
            if generation.sync and not include_sync:
                continue
            if statuses is not None and generation.status not in statuses:
                continue
            if model is not None and generation.model != model:
                continue
            if namespace is not None and generation.target_namespace != namespace:
                continue
            if media_type is not None and generation.media_type != media_type:
                continue
            yield generation

    def to_json(self, generation: Generation) -> dict[str, Any]:
        """The queue row as documented (no cost); a succeeded row's ``result_url`` is re-signed per read.

        With the ``row_parameters`` setting on, the request's own parameters (seed, image_size, ...)
        are added as top-level fields, never replacing a documented one.
        """
        succeeded = generation.status == "succeeded"
        data: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "model_name": generation.model,
            "prompt": generation.prompt,
            "media_type": generation.media_type,
            "status": generation.status,
            "result_url": self.result_url(generation) if succeeded else None,
            "error_message": generation.error_message,
            "enqueued_at": iso(generation.enqueued_at),
            "started_at": iso(generation.started_at),
            "completed_at": iso(generation.completed_at),
        }
        if generation.retried_from_id is not None:
            data["retried_from_id"] = generation.retried_from_id
        if self.config.row_parameters:
            for key, value in generation.parameters.items():
                data.setdefault(key, value)
        return data

    def details_json(self, generation: Generation) -> dict[str, Any]:
        """Full metadata (``/api/ai/generations``): the row plus cost, who triggered it, and more."""
        succeeded = generation.status == "succeeded"
        data: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "model_name": generation.model,
            "prompt": generation.prompt,
            "media_type": generation.media_type,
            "status": generation.status,
            "result_url": self.result_url(generation) if succeeded else None,
            "result_urls": (
                [self.result_url(generation, i) for i in range(len(generation.outputs))] if succeeded else []
            ),
            "error_message": generation.error_message,
            "enqueued_at": iso(generation.enqueued_at),
            "started_at": iso(generation.started_at),
            "completed_at": iso(generation.completed_at),
            "retried_from_id": generation.retried_from_id,
            "cost": money(generation.cost),
            "currency": "USD",
            "triggered_by": generation.triggered_by,
            "target_namespace": generation.target_namespace,
            "source": "sync" if generation.sync else "queue",
            "parameters": generation.parameters,
        }
        return data

    def counters(self) -> dict[str, Any]:
        return {
            "generations_created": self.generations_created,
            "generations_in_flight": len(self.live),
            "generations_succeeded": self.succeeded,
            "generations_failed": self.failed,
            "generations_cancelled": self.cancelled,
            "images_created": self.images_created,
            "videos_created": self.videos_created,
            "images_rendered": self.images.renders - self.images.video_renders,
            "videos_rendered": self.images.video_renders,
            "events_published": self.broker.published,
            "events_suppressed": self.events_suppressed,
            "events_subscribers": len(self.broker.subscribers),
            "credits_spent": money(self.credits_spent),
            "insufficient_credits": self.insufficient_credits,
        }


class EmulatorState:
    """Everything one running emulator holds; handlers reach it through the aiohttp app."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.initial_config = config.copy()
        self.faults = FaultBook()
        self.broker = EventBroker()
        self.generations = GenerationStore(config, self.faults, self.broker)
        self.requests = RequestLog(config.request_log_size)

    def reset(self, restore_config: bool = False) -> None:
        """Clear requests, counters, faults and generations; optionally restore start-up settings."""
        self.requests.clear()
        self.faults.clear()
        self.generations.reset()
        self.broker.published = 0
        if restore_config:
            for name in RUNTIME_SETTINGS:
                setattr(self.config, name, getattr(self.initial_config, name))

    def stats(self) -> dict[str, Any]:
        """Per-route request counts (``"METHOD /route/{template}"``) merged with the counters."""
        data: dict[str, Any] = dict(self.requests.route_counts)
        data["requests_total"] = self.requests.total
        data.update(self.generations.counters())
        return data
