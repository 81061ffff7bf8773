"""OxenGenerateImageOperator: validate, enqueue (once), wait without a worker slot, return results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_oxen.exceptions import OxenNotFoundError, OxenRequestMayHaveSucceededError
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.ledger import GenerationLedger, LedgerEntry, request_fingerprint
from airflow_provider_oxen.models import (
    DEFAULT_MODEL,
    EnqueuedGeneration,
    Generation,
    GenerationStatus,
    ImageGenerationRequest,
    build_image_request,
)
from airflow_provider_oxen.results import build_result, generations_from_payload
from airflow_provider_oxen.triggers.generation import WAIT_STRATEGIES, OxenGenerationTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

# The trigger enforces ``timeout`` itself (and cancels what is unfinished); Airflow's own
# deferral timeout is only a backstop in case the trigger never reports.
_DEFER_GRACE = timedelta(minutes=5)
# How far back a row may be dated and still be the answer to an unrecorded enqueue (clock skew).
_RECONCILE_SKEW = 120.0

_REUSABLE = frozenset({GenerationStatus.QUEUED, GenerationStatus.PROCESSING, GenerationStatus.SUCCEEDED})


class OxenGenerateImageOperator(BaseOperator):
    """Generate images with an Oxen.ai model through the async queue.

    The request is validated against the model's schema before anything is paid for, the
    generations are enqueued exactly once per task instance (a retry after a crash resumes
    them instead of paying again), and the task defers while Oxen renders.

    :param prompt: text prompt (templated).
    :param model: Oxen model id (templated), default ``ideogram-v4``.
    :param image_size: preset name or ``{"width": W, "height": H}`` (templated).
    :param rendering_speed: ``TURBO`` | ``BALANCED`` | ``QUALITY`` (ideogram-v4).
    :param expansion_model: ``Medium`` | ``Large`` (ideogram-v4 Magic Prompt).
    :param acceleration: ``none`` | ``low`` | ``regular`` | ``high`` (ideogram-v4).
    :param seed: integer seed for reproducible images.
    :param enable_safety_checker: ideogram-v4 safety checker, default True.
    :param output_format: ``jpeg`` | ``png`` (and whatever else the model accepts).
    :param extra_params: model-specific parameters passed through as-is (templated).
    :param num_images: how many images (queue generations) to make; split into requests of 4.
    :param oxen_conn_id: connection of type ``oxen``.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds to wait for the batch; unfinished generations are then cancelled.
    :param deferrable: free the worker slot while waiting (default ``[operators] default_deferrable``).
    :param wait_for_completion: False returns the generation ids at once (pair with
        :class:`~airflow_provider_oxen.sensors.generation.OxenGenerationSensor`).
    :param wait_strategy: ``"events"`` (default: SSE with a polling safety net) or ``"poll"``.
    :return: (XCom) a list of result dicts (see ``GenerationResult``), or of ids when not waiting.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "model",
        "image_size",
        "rendering_speed",
        "expansion_model",
        "acceleration",
        "seed",
        "output_format",
        "extra_params",
        "num_images",
    )
    template_fields_renderers = {"extra_params": "json", "prompt": "md"}
    ui_color = "#d9e8ff"

    def __init__(
        self,
        *,
        prompt: str,
        model: str = DEFAULT_MODEL,
        image_size: str | dict[str, int] | None = None,
        rendering_speed: str | None = None,
        expansion_model: str | None = None,
        acceleration: str | None = None,
        seed: int | None = None,
        enable_safety_checker: bool | None = None,
        output_format: str | None = None,
        extra_params: dict[str, Any] | None = None,
        num_images: int = 1,
        oxen_conn_id: str = OxenHook.default_conn_name,
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_completion: bool = True,
        wait_strategy: str = "events",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if wait_strategy not in WAIT_STRATEGIES:
            raise ValueError(f"wait_strategy must be one of {sorted(WAIT_STRATEGIES)}, got {wait_strategy!r}")
        self.prompt = prompt
        self.model = model
        self.image_size = image_size
        self.rendering_speed = rendering_speed
        self.expansion_model = expansion_model
        self.acceleration = acceleration
        self.seed = seed
        self.enable_safety_checker = enable_safety_checker
        self.output_format = output_format
        self.extra_params = extra_params or {}
        self.num_images = num_images
        self.oxen_conn_id = oxen_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self.wait_strategy = wait_strategy
        self._in_flight: list[str] = []

    # -- request ----------------------------------------------------------------------------------

    def build_request(self) -> ImageGenerationRequest:
        """The typed request from the (rendered) fields; raises OxenValidationError naming a field."""
        return build_image_request(
            self.model,
            self.prompt,
            image_size=self.image_size,
            rendering_speed=self.rendering_speed,
            expansion_model=self.expansion_model,
            acceleration=self.acceleration,
            seed=int(self.seed) if isinstance(self.seed, str) and self.seed.strip() else self.seed,
            enable_safety_checker=self.enable_safety_checker,
            output_format=self.output_format,
            **dict(self.extra_params or {}),
        )

    @property
    def hook(self) -> OxenHook:
        return OxenHook(self.oxen_conn_id)

    # -- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        request = self.build_request()
        with self.hook as hook:
            return self._execute(context, hook, request)

    def _execute(self, context: Context, hook: OxenHook, request: ImageGenerationRequest) -> Any:
        hook.validate_request(request)
        ledger = GenerationLedger.for_context(context)
        ids = self._enqueue_once(hook, request, ledger)
        self._in_flight = ids

        if not self.wait_for_completion:
            ledger.settle()
            self.log.info("Not waiting: returning %d generation id(s) for a downstream sensor.", len(ids))
            return ids

        deadline = time.time() + float(self.timeout)
        if self.deferrable:
            self.log.info(
                "Deferring until %d Oxen generation(s) finish (timeout %g s, strategy %s).",
                len(ids),
                float(self.timeout),
                self.wait_strategy,
            )
            self.defer(
                trigger=OxenGenerationTrigger(
                    generation_ids=ids,
                    oxen_conn_id=self.oxen_conn_id,
                    poll_interval=float(self.poll_interval),
                    deadline=deadline,
                    wait_strategy=self.wait_strategy,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout)) + _DEFER_GRACE,
            )
        payload = hook.wait_for_generations(ids, deadline=deadline, poll_interval=float(self.poll_interval))
        return self._finish(payload, ledger)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Resumed after the trigger fired: typed error on failure, results to XCom on success."""
        return self._finish(event, GenerationLedger.for_context(context))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except Exception:
            if next_method != "execute_complete":
                # The trigger itself failed or Airflow's backstop timeout fired: the generations
                # are still running on Oxen and nobody will collect them.
                entry = GenerationLedger.for_context(context).load()
                if entry is not None and entry.generation_ids:
                    with self.hook as hook:
                        hook.cancel_generations(entry.generation_ids)
            raise

    def on_kill(self) -> None:
        """Worker-side kill (non-deferrable wait, or before deferring): cancel what is in flight."""
        if self._in_flight:
            self.log.info("Task killed: cancelling %d Oxen generation(s).", len(self._in_flight))
            with self.hook as hook:
                hook.cancel_generations(self._in_flight)

    def _finish(self, payload: dict[str, Any], ledger: GenerationLedger) -> list[dict[str, Any]]:
        rows = generations_from_payload(payload)  # raises the typed error on failure
        with self.hook as hook:
            rows = hook.complete_rows(rows)
        parameters = self.build_request().parameters()
        results = [build_result(row, model=self.model, parameters=parameters).to_xcom() for row in rows]
        ledger.settle()
        total_cost = sum(r["cost"] or 0 for r in results)
        self.log.info(
            "%d image(s) ready from %s (reported cost %.4f): %s",
            len(results),
            self.model,
            total_cost,
            [r["generation_id"] for r in results],
        )
        return results

    # -- exactly-once enqueue -----------------------------------------------------------------------

    def _enqueue_once(
        self, hook: OxenHook, request: ImageGenerationRequest, ledger: GenerationLedger
    ) -> list[str]:
        count = int(self.num_images)
        fingerprint = request_fingerprint(request.model, request.parameters(), count)
        previous = ledger.load()
        keep: list[str] = []
        if previous is not None and not previous.settled:
            if previous.fingerprint == fingerprint:
                keep = self._reusable(hook, request, previous)
            else:
                self.log.warning("The request changed since the last try: cancelling its generations.")
                hook.cancel_generations(previous.generation_ids)
        entry = LedgerEntry(fingerprint=fingerprint, generation_ids=keep)
        missing = count - len(keep)
        if missing <= 0:
            ledger.save(entry)
            return keep[:count]
        entry.mark_sending(missing)
        ledger.save(entry)

        def record(batch: list[EnqueuedGeneration]) -> None:
            entry.mark_received([g.generation_id for g in batch])
            ledger.save(entry)
            self._in_flight = list(entry.generation_ids)

        hook.enqueue(request, missing, validate=False, on_enqueued=record)
        return list(entry.generation_ids)

    def _reusable(self, hook: OxenHook, request: ImageGenerationRequest, previous: LedgerEntry) -> list[str]:
        """Ids from an earlier try worth waiting for, plus any an unrecorded enqueue created."""
        known = list(previous.generation_ids)
        if previous.pending:
            known += self._recover_unrecorded(hook, request, previous)
        keep = []
        for generation_id in known:
            try:
                row = hook.get_generation(generation_id)
            except OxenNotFoundError:
                continue
            if row.status in _REUSABLE:
                keep.append(generation_id)
        replaced = len(known) - len(keep)
        self.log.info(
            "Resuming %d Oxen generation(s) enqueued by an earlier try (%s); %d failed/cancelled to replace.",
            len(keep),
            keep,
            replaced,
        )
        return keep

    def _recover_unrecorded(
        self, hook: OxenHook, request: ImageGenerationRequest, previous: LedgerEntry
    ) -> list[str]:
        """A try died between sending an enqueue and recording its answer: find what it made."""
        since = previous.pending_since or ""
        rows: dict[str, Generation] = {}
        for status in (None, "succeeded"):
            for row in hook.list_queue(model=request.model, status=status):
                rows[row.generation_id] = row
        candidates = sorted(
            (
                row
                for row in rows.values()
                if row.generation_id not in previous.generation_ids
                and row.prompt == request.prompt
                and _not_before(row.created_at, since)
            ),
            key=lambda row: row.created_at or "",
        )
        if candidates:
            found = [row.generation_id for row in candidates[: previous.pending]]
            self.log.warning(
                "Recovered %d generation(s) an earlier try enqueued but never recorded.", len(found)
            )
            return found
        if rows and all(row.prompt is None for row in rows.values()):
            # The queue does not tell us what each row was for, so we cannot prove nothing was
            # enqueued: stop rather than risk paying twice.
            raise OxenRequestMayHaveSucceededError(
                "an earlier try died while enqueueing", method="POST", path="/api/ai/queue"
            )
        return []


def _not_before(created_at: str | None, since: str) -> bool:
    if not created_at or not since:
        return True
    from datetime import datetime

    try:
        created = datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
        start = datetime.fromisoformat(since).timestamp()
    except ValueError:
        return True
    return created >= start - _RECONCILE_SKEW
