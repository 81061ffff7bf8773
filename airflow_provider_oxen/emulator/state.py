"""Generations: the store, the queued -> processing -> terminal scheduler, and their JSON form."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .catalogue import ModelSpec, build_catalogue, resolve_format, resolve_size, validate_params
from .config import RUNTIME_SETTINGS, EmulatorConfig
from .events import COMPLETED_EVENT, EventBroker
from .faults import FaultBook
from .images import ImageCache, ImageSpec
from .recording import RequestLog
from .signing import UrlSigner

LIVE_STATUSES = frozenset({"queued", "processing"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ALL_STATUSES = LIVE_STATUSES | TERMINAL_STATUSES


def iso(timestamp: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix (None stays None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def derived_seed(generation_id: str) -> int:
    """The seed used when the request gave none: stable per generation."""
    return int.from_bytes(hashlib.sha256(generation_id.encode()).digest()[:4], "big")


@dataclass(eq=False)
class Generation:
    """One generation row; the private fields drive the scheduler and rendering."""

    generation_id: str
    model: str
    prompt: Any
    parameters: dict[str, Any]
    target_namespace: str
    created_at: float
    status: str = "queued"
    started_at: float | None = None
    completed_at: float | None = None
    error_message: str | None = None
    cost: float | None = None
    retried_from_id: str | None = None
    media_type: str = "image"
    # True for rows made by the sync endpoint: they are history, not queue rows.
    sync: bool = False
    images: list[ImageSpec] = field(default_factory=list)
    pending_error: str | None = None
    fault_error: str | None = None
    stall: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class GenerationStore:
    """All generations of the (single) emulated user, plus the counters ``/_emulator/stats`` reports."""

    def __init__(self, config: EmulatorConfig, faults: FaultBook, broker: EventBroker) -> None:
        self.config = config
        self.catalogue: dict[str, ModelSpec] = build_catalogue()
        self.faults = faults
        self.broker = broker
        self.signer = UrlSigner(config.signing_secret)
        self.images = ImageCache(config.image_cache_bytes)
        self.rows: dict[str, Generation] = {}
        self.live: dict[str, Generation] = {}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.generations_created = 0
        self.images_created = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.suppress_events = 0
        self.events_suppressed = 0
        self.credits = self.config.starting_credits

    def reset(self) -> None:
        """Forget every generation (live timers are cancelled) and zero the counters."""
        for generation in self.live.values():
            if generation.timer is not None:
                generation.timer.cancel()
        self.rows.clear()
        self.live.clear()
        self.images.clear()
        self.images.renders = 0
        self._reset_counters()

    # --- creation -------------------------------------------------------------------------------

    def _image_spec(
        self, spec: ModelSpec, generation_id: str, prompt: str, params: dict[str, Any], index: int = 0
    ) -> ImageSpec:
        width, height = resolve_size(spec, params)
        seed = params.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            seed = derived_seed(generation_id)
        return ImageSpec(
            prompt=prompt,
            seed=seed + index,
            width=width,
            height=height,
            fmt=resolve_format(spec, params),
            model=spec.id,
            generation_id=generation_id,
            index=index,
        )

    def enqueue(
        self, spec: ModelSpec, params: dict[str, Any], namespace: str, retried_from_id: str | None = None
    ) -> Generation:
        """Create one queue row and schedule its life; ``params`` is everything passed through."""
        generation_id = str(uuid.uuid4())
        prompt = params.get("prompt")
        generation = Generation(
            generation_id=generation_id,
            model=spec.id,
            prompt=prompt,
            parameters=dict(params),
            target_namespace=namespace,
            created_at=time.time(),
            retried_from_id=retried_from_id,
        )
        # The queue does not validate model parameters up front (per the contract): a bad one is
        # found here but only surfaces as a failure once the job starts.
        if not isinstance(prompt, str) or not prompt.strip():
            generation.pending_error = "Prompt cannot be empty"
        else:
            error = validate_params(spec, params)
            if error is not None:
                generation.pending_error = f"Invalid parameter {error.message}"
            else:
                generation.images = [self._image_spec(spec, generation_id, prompt, params)]
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

    def record_sync(
        self, spec: ModelSpec, params: dict[str, Any], namespace: str, num_images: int, started_at: float
    ) -> Generation:
        """A finished sync-endpoint request, kept so its files can be served and billed."""
        generation_id = str(uuid.uuid4())
        prompt = str(params.get("prompt"))
        now = time.time()
        generation = Generation(
            generation_id=generation_id,
            model=spec.id,
            prompt=prompt,
            parameters=dict(params),
            target_namespace=namespace,
            created_at=started_at,
            status="succeeded",
            started_at=started_at,
            completed_at=now,
            sync=True,
        )
        generation.images = [
            self._image_spec(spec, generation_id, prompt, params, i) for i in range(num_images)
        ]
        generation.cost = round(spec.price_per_image * num_images, 6)
        self.rows[generation_id] = generation
        self.generations_created += 1
        self.images_created += num_images
        self.succeeded += 1
        self.credits -= generation.cost
        return generation

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
            loop = asyncio.get_running_loop()
            generation.timer = loop.call_later(self.config.render_seconds, self._finish, generation)

    def _finish(self, generation: Generation) -> None:
        if generation.status != "processing":
            return
        generation.timer = None
        if generation.fault_error is not None:
            self._fail(generation, generation.fault_error)
            return
        spec = self.catalogue[generation.model]
        generation.status = "succeeded"
        generation.completed_at = time.time()
        generation.cost = spec.price_per_image
        self.live.pop(generation.generation_id, None)
        self.succeeded += 1
        self.images_created += 1
        self.credits -= spec.price_per_image
        if self.suppress_events > 0:
            # A "missed" event: the row still succeeds, subscribers just never hear of it.
            self.suppress_events -= 1
            self.events_suppressed += 1
            return
        if not self.broker.subscribers:
            return
        url = self.result_url(generation)
        self.broker.publish(
            COMPLETED_EVENT,
            {
                "generation_id": generation.generation_id,
                "status": "succeeded",
                "model": generation.model,
                "media_type": generation.media_type,
                "target_namespace": generation.target_namespace,
                "result_url": url,
                "output_url": url,
            },
        )
        # An unrelated event type on the same stream, so clients have to filter by event name.
        self.broker.publish(
            "credits_updated", {"credits_remaining": round(self.credits, 6), "cost": spec.price_per_image}
        )

    def _fail(self, generation: Generation, message: str) -> None:
        generation.status = "failed"
        generation.error_message = message
        generation.completed_at = time.time()
        self.live.pop(generation.generation_id, None)
        self.failed += 1

    def cancel(self, generation: Generation) -> None:
        """Cancel a live row; a terminal row is left as it is (see the DELETE handler)."""
        if generation.status not in LIVE_STATUSES:
            return
        if generation.timer is not None:
            generation.timer.cancel()
            generation.timer = None
        generation.status = "cancelled"
        generation.completed_at = time.time()
        self.live.pop(generation.generation_id, None)
        self.cancelled += 1

    def retry(self, generation: Generation) -> Generation:
        """Cancel (if live) and enqueue a fresh row with the same parameters."""
        self.cancel(generation)
        spec = self.catalogue[generation.model]
        return self.enqueue(
            spec, generation.parameters, generation.target_namespace, retried_from_id=generation.generation_id
        )

    # --- reading --------------------------------------------------------------------------------

    def queue_row(self, generation_id: str) -> Generation | None:
        generation = self.rows.get(generation_id)
        return None if generation is None or generation.sync else generation

    def result_url(self, generation: Generation, index: int = 0) -> str:
        """A freshly signed URL for one of the generation's images."""
        base = self.config.public_url or ""
        return self.signer.sign(
            base, generation.generation_id, generation.images[index].filename, self.config.url_ttl_seconds
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
        """The row as the API shows it; a succeeded row's ``result_url`` is re-signed on every read."""
        succeeded = generation.status == "succeeded"
        data: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "status": generation.status,
            "model": generation.model,
            "prompt": generation.prompt,
            "parameters": generation.parameters,
            "media_type": generation.media_type,
            "created_at": iso(generation.created_at),
            "started_at": iso(generation.started_at),
            "completed_at": iso(generation.completed_at),
            "result_url": self.result_url(generation) if succeeded else None,
            "error_message": generation.error_message,
            "cost": generation.cost,
            "target_namespace": generation.target_namespace,
            "retried_from_id": generation.retried_from_id,
        }
        if succeeded and len(generation.images) > 1:
            data["result_urls"] = [self.result_url(generation, i) for i in range(len(generation.images))]
        return data

    def counters(self) -> dict[str, Any]:
        return {
            "generations_created": self.generations_created,
            "generations_in_flight": len(self.live),
            "generations_succeeded": self.succeeded,
            "generations_failed": self.failed,
            "generations_cancelled": self.cancelled,
            "images_created": self.images_created,
            "images_rendered": self.images.renders,
            "events_published": self.broker.published,
            "events_suppressed": self.events_suppressed,
            "events_subscribers": len(self.broker.subscribers),
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
