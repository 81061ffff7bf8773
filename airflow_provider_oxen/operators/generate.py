"""OxenGenerateImageOperator: validate, enqueue (once), wait without a worker slot, return results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import TaskDeferralTimeout

from airflow_provider_oxen.exceptions import (
    OxenCostLimitError,
    OxenError,
    OxenGenerationGoneError,
    OxenNotFoundError,
    OxenUnrecordedEnqueueError,
    OxenUnrecoverableError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import OxenHook, PreparedRequest
from airflow_provider_oxen.hooks.retry import proves_nothing_created
from airflow_provider_oxen.inputs import DEFAULT_INPUT_URL_EXPIRY, input_image_value, input_sources, presign
from airflow_provider_oxen.ledger import GenerationLedger, LedgerEntry, request_fingerprint
from airflow_provider_oxen.links import OxenImageLink
from airflow_provider_oxen.models import (
    DEFAULT_MAX_IMAGES_PER_TASK,
    DEFAULT_MODEL,
    EnqueuedGeneration,
    GenerationStatus,
    ImageGenerationRequest,
    build_image_request,
    check_image_count,
    media_type_of,
)
from airflow_provider_oxen.pricing import estimate_cost
from airflow_provider_oxen.recovery import match_unrecorded
from airflow_provider_oxen.redact import strip_url_queries
from airflow_provider_oxen.results import build_result, generations_from_payload, pending_of_payload
from airflow_provider_oxen.waiting import WAIT_STRATEGIES

if TYPE_CHECKING:
    from airflow.sdk import Context

# The trigger enforces ``timeout`` itself (and cancels what is unfinished); Airflow's own
# deferral timeout is only a backstop in case the trigger never reports.
_DEFER_GRACE = timedelta(minutes=5)
# The next_kwargs entry in which a deferring try hands its ledger entry to its resumed self.
CARRIED_LEDGER_KWARG = "oxen_ledger_entry"

# The label of a mapped task instance in the grid: its prompt (shortened) and size.
MAP_INDEX_TEMPLATE = (
    "{{ task.prompt | string | truncate(60, killwords=False, end='…') }}"
    "{% if task.image_size %} · {{ task.image_size }}{% endif %}"
    "{% if task.num_images | int > 1 %}, {{ task.num_images }} images{% endif %}"
)

# What OxenGenerateVideoOperator uses unless told otherwise (text-to-video).
DEFAULT_VIDEO_MODEL = "kling-video-v2-6-pro-text-to-video"

_REUSABLE = frozenset(
    {
        GenerationStatus.QUEUED,
        GenerationStatus.PROCESSING,
        GenerationStatus.SUCCEEDED,
        GenerationStatus.UNKNOWN,
    }
)
# Where an unrecorded enqueue's rows may be listed: in flight (the default listing) or finished.
_RECOVERY_LISTINGS: tuple[str | None, ...] = (None, "succeeded", "failed", "cancelled")


class OxenGenerateImageOperator(BaseOperator):
    """Generate images with an Oxen.ai model through the async queue.

    The request is validated against the model's schema before anything is paid for, the
    generations are enqueued exactly once per task instance (a retry after a crash resumes
    them instead of paying again), and the task defers while Oxen renders.

    :param prompt: text prompt (templated).
    :param model: Oxen model id (templated), default ``ideogram-v4``.
    :param image_size: preset name or ``{"width": W, "height": H}`` (templated), for models
        whose schema has ``image_size`` (others name their size parameter in ``extra_params``).
    :param rendering_speed: ``TURBO`` | ``BALANCED`` | ``QUALITY`` (ideogram-v4).
    :param expansion_model: ``Medium`` | ``Large`` (ideogram-v4 Magic Prompt).
    :param acceleration: ``none`` | ``low`` | ``regular`` | ``high`` (ideogram-v4).
    :param seed: integer seed for reproducible images.
    :param enable_safety_checker: ideogram-v4 safety checker, default True.
    :param output_format: ``jpeg`` | ``png`` (and whatever else the model accepts).
    :param extra_params: model-specific parameters, by the names the model's ``request_schema``
        uses (templated). A name the schema does not know is refused before anything is sent.
    :param num_images: how many images to make (one queue generation each, sent in requests
        of at most 4); 1 to ``max_images``.
    :param max_images: the most images one task may ask for (default 16): a guard against a
        templating mistake paying for hundreds.
    :param max_cost: refuse before enqueueing when the model's pricing says this task would
        cost more (a decimal, in the pricing's currency). Unknown pricing does not block.
    :param input_images: input image(s) for edit and image-to-video models (templated): ``s3://``
        URIs, URLs, or records of :class:`~airflow_provider_oxen.transfers.s3.OxenGenerationToS3Operator`
        (map over them with ``.expand(input_images=...)``). ``s3://`` objects are presigned with
        ``aws_conn_id`` for ``input_url_expiry`` seconds and sent as the model's ``input_image``
        (one URL, or an array where the model's schema takes one); never made public.
    :param aws_conn_id: AWS connection used to presign ``s3://`` inputs.
    :param input_url_expiry: lifetime of those presigned URLs (default 6 h: the queue may wait).
    :param force_new_enqueue: when an earlier try died mid-enqueue and its generations cannot
        be identified, enqueue afresh anyway (may pay twice; templated, e.g. from
        ``dag_run.conf``). Off by default: the task stops and says what to check.
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
        "max_cost",
        "force_new_enqueue",
        "input_images",
    )
    template_fields_renderers = {"extra_params": "json", "prompt": "md"}
    ui_color = "#d9e8ff"
    operator_extra_links = (OxenImageLink(),)

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
        max_images: int = DEFAULT_MAX_IMAGES_PER_TASK,
        max_cost: str | float | Decimal | None = None,
        force_new_enqueue: bool | str = False,
        input_images: Any = None,
        aws_conn_id: str | None = "aws_default",
        input_url_expiry: int = DEFAULT_INPUT_URL_EXPIRY,
        oxen_conn_id: str = OxenHook.default_conn_name,
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_completion: bool = True,
        wait_strategy: str = "events",
        **kwargs: Any,
    ) -> None:
        # Mapped tasks are listed by what they make, not as 0, 1, 2 (override as usual).
        kwargs.setdefault("map_index_template", MAP_INDEX_TEMPLATE)
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
        self.max_images = max_images
        self.max_cost = max_cost
        self.force_new_enqueue = force_new_enqueue
        self.input_images = input_images
        self.aws_conn_id = aws_conn_id
        self.input_url_expiry = input_url_expiry
        self.oxen_conn_id = oxen_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self.wait_strategy = wait_strategy
        self._in_flight: list[str] = []
        self._carried_ledger_entry: Any = None

    # -- request ----------------------------------------------------------------------------------

    def build_request(self, **extra: Any) -> ImageGenerationRequest:
        """The typed request from the (rendered) fields; raises OxenValidationError naming a field."""
        return build_image_request(
            self.model,
            self.prompt if self.prompt not in (None, "") or not self._multi_prompt() else None,
            image_size=self.image_size,
            rendering_speed=self.rendering_speed,
            expansion_model=self.expansion_model,
            acceleration=self.acceleration,
            seed=int(self.seed) if isinstance(self.seed, str) and self.seed.strip() else self.seed,
            enable_safety_checker=self.enable_safety_checker,
            output_format=self.output_format,
            **{**self._media_parameters(), **dict(self.extra_params or {}), **extra},
        )

    def _media_parameters(self) -> dict[str, Any]:
        """Typed parameters of other media kinds (the video subclass adds its own)."""
        return {}

    def _multi_prompt(self) -> Any:
        return {**self._media_parameters(), **dict(self.extra_params or {})}.get("multi_prompt")

    def build_request_for(self, hook: OxenHook) -> ImageGenerationRequest:
        """The request with ``input_images`` resolved to what the model takes (presigned URLs)."""
        sources = input_sources(self.input_images)
        if not sources:
            return self.build_request()
        model = hook.get_model(self.model)
        urls = presign(sources, aws_conn_id=self.aws_conn_id, expiry=int(self.input_url_expiry))
        return self.build_request(input_image=input_image_value(model, urls))

    @property
    def image_count(self) -> int:
        return check_image_count(self.num_images, int(self.max_images))

    @property
    def hook(self) -> OxenHook:
        return OxenHook(self.oxen_conn_id)

    # -- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        with self.hook as hook:  # first: the hook warms its TLS context during the round trips below
            OxenImageLink.persist(context, self)
            count = self.image_count
            prepared = hook.prepare(self.build_request_for(hook))
            self._check_cost(prepared, count)
            return self._execute(context, hook, prepared, count)

    @staticmethod
    def _sent(prepared: PreparedRequest) -> dict[str, Any]:
        """What the results report as asked for, kept in the ledger so that the resumed task need
        not read the model's schema again (presigned inputs without their signatures)."""
        return {
            "parameters": strip_url_queries(dict(prepared.parameters)),
            "media_type": media_type_of(prepared.model),
        }

    def _execute(self, context: Context, hook: OxenHook, prepared: PreparedRequest, count: int) -> Any:
        ledger = GenerationLedger.for_context(context)
        try:
            ids = self._enqueue_once(hook, prepared, count, ledger)
        except Exception as exc:
            self._give_up_if_final(context, exc, hook, ledger)
            raise
        self._in_flight = ids

        if not self.wait_for_completion:
            ledger.settle()
            self.log.info("Not waiting: returning %d generation id(s) for a downstream sensor.", len(ids))
            return ids

        deadline = time.time() + float(self.timeout)
        if self.deferrable:
            # Imported when deferring: the resumed task and non-deferrable waits never need it.
            from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger

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
                kwargs={CARRIED_LEDGER_KWARG: ledger.carried()},
                timeout=timedelta(seconds=float(self.timeout)) + _DEFER_GRACE,
            )
        payload = hook.wait_for_generations(ids, deadline=deadline, poll_interval=float(self.poll_interval))
        return self._finish(context, payload, ledger, hook)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Resumed after the trigger fired: typed error on failure, results to XCom on success."""
        with self.hook as hook:
            ledger = GenerationLedger.for_context(context)
            # What this try recorded before deferring (None for a task deferred by an older
            # release, or called directly: then the ledger is read).
            ledger.assume(self._carried_ledger_entry)
            return self._finish(context, event, ledger, hook)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # Taken out here, so that execute_complete keeps its (context, event) signature for subclasses.
        kwargs = dict(next_kwargs or {})
        self._carried_ledger_entry = kwargs.pop(CARRIED_LEDGER_KWARG, None)
        try:
            return super().resume_execution(next_method, kwargs, context)
        except Exception as exc:
            if next_method != "execute_complete":
                # The trigger itself failed, or Airflow's backstop timeout fired (the deadline
                # is long past): nobody may collect the generations still running on Oxen.
                ledger = GenerationLedger.for_context(context)
                with self.hook as hook:
                    if isinstance(exc, TaskDeferralTimeout):
                        self._cancel_recorded(hook, ledger, "the deferral timed out")
                    else:
                        self._give_up_if_final(context, exc, hook, ledger)
            raise

    def on_kill(self) -> None:
        """Worker-side kill (non-deferrable wait, or before deferring): cancel what is in flight."""
        if self._in_flight:
            self.log.info("Task killed: cancelling %d Oxen generation(s).", len(self._in_flight))
            with self.hook as hook:
                hook.cancel_generations(self._in_flight)

    def _finish(
        self, context: Context, payload: dict[str, Any], ledger: GenerationLedger, hook: OxenHook
    ) -> list[dict[str, Any]]:
        try:
            rows = generations_from_payload(payload)  # raises the typed error on failure
        except OxenError as exc:
            self.log.error("%s", exc)
            pending = pending_of_payload(payload)
            if pending and self._is_final(context, exc):
                # The trigger may have stopped before it could cancel (e.g. it could not read
                # the connection): whatever still renders would be paid for and never collected.
                self.log.warning("Giving up: cancelling %d unfinished Oxen generation(s).", len(pending))
                hook.cancel_generations(pending)
            raise
        entry = ledger.current()  # before the first request: the hook's TLS context loads meanwhile
        rows = hook.complete_rows(rows)
        sent = entry.sent if entry is not None else None
        if sent is None:  # a ledger written by an older release
            sent = self._sent(hook.prepare(self.build_request_for(hook)))
        media_type, parameters = sent["media_type"], sent["parameters"]
        results = [
            build_result(row, model=self.model, parameters=parameters, media_type=media_type).to_xcom()
            for row in rows
        ]
        ledger.settle()
        self.log.info(
            "%d %s(s) ready from %s (%s): %s",
            len(results),
            media_type,
            self.model,
            _cost_summary(results),
            [r["generation_id"] for r in results],
        )
        return results

    # -- giving up ---------------------------------------------------------------------------------

    def _is_final(self, context: Context, error: BaseException) -> bool:
        """Whether this failure ends the task for good (no Airflow retry will resume the ledger)."""
        if isinstance(error, OxenUnrecoverableError):
            return True
        ti = context.get("ti") if hasattr(context, "get") else None
        try_number = int(getattr(ti, "try_number", 0) or 0)
        return try_number > int(self.retries or 0)

    def _give_up_if_final(
        self, context: Context, error: BaseException, hook: OxenHook, ledger: GenerationLedger
    ) -> None:
        if self._is_final(context, error):
            self._cancel_recorded(hook, ledger, f"the task is failing for good ({type(error).__name__})")

    def _cancel_recorded(self, hook: OxenHook, ledger: GenerationLedger, why: str) -> None:
        entry = ledger.load()
        if entry is None or entry.settled or not entry.generation_ids:
            return
        self.log.warning("Cancelling %d Oxen generation(s): %s.", len(entry.generation_ids), why)
        hook.cancel_generations(entry.generation_ids)

    # -- cost -------------------------------------------------------------------------------------

    def _check_cost(self, prepared: PreparedRequest, count: int) -> None:
        estimate = estimate_cost(prepared.model, prepared.parameters, count)
        if self.max_cost in (None, ""):
            if estimate is not None:
                self.log.info("Estimated cost of %d generation(s): %s", count, estimate)
            return
        try:
            limit = Decimal(str(self.max_cost).strip())
        except InvalidOperation:
            raise OxenValidationError(
                f"max_cost must be a decimal number, got {self.max_cost!r}", field="max_cost"
            ) from None
        if estimate is None:
            self.log.warning(
                "Model %s does not publish pricing this provider understands: max_cost %s not enforced.",
                prepared.model_id,
                limit,
            )
            return
        if estimate > limit:
            raise OxenCostLimitError(
                f"{count} generation(s) of {prepared.model_id} would cost {estimate} by the model's "
                f"pricing, above max_cost {limit}. Nothing was enqueued; lower num_images or raise max_cost.",
                estimate=str(estimate),
                max_cost=str(limit),
            )
        self.log.info("Estimated cost of %d generation(s): %s (max_cost %s)", count, estimate, limit)

    # -- exactly-once enqueue -----------------------------------------------------------------------

    def _enqueue_once(
        self, hook: OxenHook, prepared: PreparedRequest, count: int, ledger: GenerationLedger
    ) -> list[str]:
        # Presigned inputs are signed afresh on every try: the fingerprint keeps them unsigned.
        fingerprint = request_fingerprint(prepared.model_id, strip_url_queries(prepared.parameters), count)
        previous = ledger.load()
        keep: list[str] = []
        if previous is not None and not previous.settled:
            if previous.fingerprint == fingerprint:
                keep = self._reusable(hook, prepared, previous)
            else:
                self.log.warning("The request changed since the last try: cancelling its generations.")
                if previous.pending:
                    self.log.warning(
                        "An earlier try of the old request died mid-enqueue; its %d generation(s) "
                        "were never recorded and cannot be cancelled from here.",
                        previous.pending,
                    )
                hook.cancel_generations(previous.generation_ids)
        entry = LedgerEntry(fingerprint=fingerprint, generation_ids=keep, sent=self._sent(prepared))
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

        try:
            hook.enqueue(prepared, missing, on_enqueued=record)
        except OxenError as exc:
            if proves_nothing_created(exc):
                # A definite refusal: the next try needs no recovery scan.
                entry.clear_pending()
                ledger.save(entry)
            raise
        return list(entry.generation_ids)

    def _reusable(self, hook: OxenHook, prepared: PreparedRequest, previous: LedgerEntry) -> list[str]:
        """Ids from an earlier try worth waiting for, plus any an unrecorded enqueue created."""
        known = list(previous.generation_ids)
        if previous.pending:
            known += self._recover_unrecorded(hook, prepared, previous)
        keep = []
        for generation_id in known:
            try:
                row = hook.get_generation(generation_id)
            except OxenNotFoundError:
                if self._forced():
                    self.log.warning(
                        "Generation %s is gone (404); force_new_enqueue replaces it.", generation_id
                    )
                    continue
                raise OxenGenerationGoneError(generation_id) from None
            if row.status in _REUSABLE:
                keep.append(generation_id)
        self.log.info(
            "Resuming %d Oxen generation(s) enqueued by an earlier try (%s); %d failed/cancelled to replace.",
            len(keep),
            keep,
            len(known) - len(keep),
        )
        return keep

    def _forced(self) -> bool:
        value = self.force_new_enqueue
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    def _recover_unrecorded(
        self, hook: OxenHook, prepared: PreparedRequest, previous: LedgerEntry
    ) -> list[str]:
        """A try died between sending an enqueue and recording its answer: find what it made."""
        if self._forced():
            self.log.warning(
                "An earlier try died mid-enqueue (%d generation(s) unrecorded); force_new_enqueue is set, "
                "so they are not looked for and new ones are enqueued (this may pay twice).",
                previous.pending,
            )
            return []
        rows, complete = {}, True
        for status in _RECOVERY_LISTINGS:
            listing = hook.queue_listing(model=prepared.model_id, status=status)
            complete = complete and listing.is_complete
            rows.update({row.generation_id: row for row in listing.generations})
        decision = match_unrecorded(
            rows.values(),
            model=prepared.model_id,
            sent=prepared.parameters,
            sent_at=previous.pending_since,
            missing=previous.pending,
            known_ids=previous.generation_ids,
            listings_complete=complete,
        )
        if decision.adopt is not None:
            if decision.adopt:
                self.log.warning(
                    "Recovered %d generation(s) an earlier try enqueued but never recorded (%s): %s",
                    len(decision.adopt),
                    decision.reason,
                    decision.adopt,
                )
            else:
                self.log.info("An earlier try died mid-enqueue, but %s.", decision.reason)
            return decision.adopt
        raise OxenUnrecordedEnqueueError(
            f"An earlier try of this task died while enqueueing {previous.pending} generation(s) of "
            f"{prepared.model_id} (sent at {previous.pending_since}) and their ids were never recorded. "
            f"They cannot be identified safely: {decision.reason}. Candidate generation(s) on Oxen: "
            f"{decision.candidates or 'none visible'}. Check them (GET /api/ai/queue/{{id}} or the Oxen "
            "dashboard) and cancel any that are not wanted. To enqueue afresh anyway (paying again if "
            "they were this task's), set force_new_enqueue=True on this task (it is templated, e.g. "
            "\"{{ dag_run.conf.get('oxen_force_new_enqueue', False) }}\") and clear it.",
            candidates=decision.candidates,
        )


def _cost_summary(results: list[dict[str, Any]]) -> str:
    """ "reported cost 0.1200" (exact decimals), noting generations whose cost Oxen did not report."""
    total, unknown = Decimal(0), 0
    for result in results:
        try:
            total += Decimal(str(result["cost"])) if result.get("cost") is not None else 0
            unknown += result.get("cost") is None
        except InvalidOperation:
            unknown += 1
    text = f"reported cost {total}"
    return f"{text}; cost unknown for {unknown}" if unknown else text


class OxenGenerateVideoOperator(OxenGenerateImageOperator):
    """Generate video clips (text-to-video, or image-to-video with ``input_images``) through the queue.

    The same operator as :class:`OxenGenerateImageOperator` — validation before spend,
    exactly-once enqueue, deferrable waiting, cancellation — with video's defaults: a video
    model, a long ``timeout`` (clips take minutes) and a slower ``poll_interval``. Each
    "image" of ``num_images`` is one clip; results carry ``media_type: "video"``.

    :param duration: clip length in seconds, as the model's schema allows (templated).
    :param aspect_ratio: e.g. ``"16:9"``, ``"9:16"``, ``"1:1"`` (templated).
    :param generate_audio: ask for a soundtrack where the model can make one.
    :param multi_prompt: a list of prompts (one per shot) instead of ``prompt`` (templated).
    """

    template_fields: Sequence[str] = (
        *OxenGenerateImageOperator.template_fields,
        "duration",
        "aspect_ratio",
        "multi_prompt",
    )
    ui_color = "#e3d9ff"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        model: str = DEFAULT_VIDEO_MODEL,
        duration: int | str | None = None,
        aspect_ratio: str | None = None,
        generate_audio: bool | None = None,
        multi_prompt: list[str] | None = None,
        timeout: float = 7200.0,
        poll_interval: float = 15.0,
        **kwargs: Any,
    ) -> None:
        # ``prompt`` may be left out for a ``multi_prompt``; the request check says which is missing.
        super().__init__(prompt=prompt, model=model, timeout=timeout, poll_interval=poll_interval, **kwargs)  # type: ignore[arg-type]
        self.duration = duration
        self.aspect_ratio = aspect_ratio
        self.generate_audio = generate_audio
        self.multi_prompt = multi_prompt

    def _media_parameters(self) -> dict[str, Any]:
        duration = self.duration
        if isinstance(duration, str) and duration.strip().isdigit():
            duration = int(duration)
        return {
            "duration": duration,
            "aspect_ratio": self.aspect_ratio,
            "generate_audio": self.generate_audio,
            "multi_prompt": self.multi_prompt or None,
        }
