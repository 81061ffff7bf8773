"""OxenGenerateOperator: validate, enqueue (once), wait without a worker slot, return results."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
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
from airflow_provider_oxen.inputs import input_image_value, input_sources, presign, url_expiry
from airflow_provider_oxen.ledger import GenerationLedger, LedgerEntry, request_fingerprint
from airflow_provider_oxen.links.extra_links import OxenImageLink
from airflow_provider_oxen.models import (
    DEFAULT_MAX_OUTPUTS_PER_TASK,
    DEFAULT_MODEL,
    EnqueuedGeneration,
    GenerationStatus,
    ImageGenerationRequest,
    build_image_request,
    check_output_count,
    media_type_of,
)
from airflow_provider_oxen.pricing import estimate_cost, why_unknown
from airflow_provider_oxen.recovery import match_unrecorded
from airflow_provider_oxen.redact import strip_url_queries
from airflow_provider_oxen.results import build_result, generations_from_payload, reported_cost

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

# The trigger enforces ``timeout`` itself (and cancels what is unfinished); Airflow's own
# deferral timeout is only a backstop in case the trigger never reports.
_DEFER_GRACE = timedelta(minutes=5)
# The next_kwargs entry in which a deferring try hands its ledger entry to its resumed self.
CARRIED_LEDGER_KWARG = "oxen_ledger_entry"

# The label of a mapped task instance in the grid: its prompt (shortened) and size. Empty for a
# task that is not mapped (the grid's "Map Index" column would show the prompt).
MAP_INDEX_TEMPLATE = (
    "{% if ti.map_index is not none and ti.map_index >= 0 %}"
    "{{ task.prompt | string | truncate(60, killwords=False, end='…') }}"
    "{% if task.parameters.get('image_size') %} · {{ task.parameters.image_size }}{% endif %}"
    "{% if task.num_outputs | int > 1 %}, {{ task.num_outputs }} images{% endif %}"
    "{% endif %}"
)

# What OxenGenerateVideoOperator uses unless told otherwise (text-to-video).
DEFAULT_VIDEO_MODEL = "kling-video-v2-6-pro-text-to-video"

# An earlier try's generation is waited for again unless it failed or was cancelled.
_REUSABLE = frozenset(GenerationStatus) - {GenerationStatus.FAILED, GenerationStatus.CANCELLED}
# Where an unrecorded enqueue's rows may be listed: in flight (the default listing) or finished.
_RECOVERY_LISTINGS: tuple[str | None, ...] = (None, "succeeded", "failed", "cancelled")


class OxenGenerateOperator(BaseOperator):
    """Generate images or video with any Oxen.ai media model through the async queue.

    The request is validated against the model's schema before anything is paid for, the
    generations are enqueued exactly once per task instance (a retry after a crash resumes
    them instead of paying again), and the task defers while Oxen renders.
    :class:`OxenGenerateImageOperator` and :class:`OxenGenerateVideoOperator` are this
    operator with defaults for images and for video.

    :param prompt: text prompt (templated). A video model may take ``multi_prompt`` (a list of
        shots, in ``parameters``) instead.
    :param model: Oxen model id (templated).
    :param parameters: the model's own parameters, by the names its ``request_schema`` uses
        (templated), e.g. ``{"image_size": "portrait_4_3", "rendering_speed": "TURBO", "seed":
        7}`` for ``ideogram-v4`` or ``{"duration": 5, "aspect_ratio": "16:9"}`` for a video
        model. Checked against that schema before anything is sent: an unknown name is refused
        naming the closest known one, a bad value naming the field and the allowed values.
        Templated text is sent in the type the schema declares (``"4"`` as 4 for an integer).
        What is left out, the model's defaults decide; the results report them.
    :param num_outputs: how many images (or clips) to make: one queue generation each, sent in
        requests of at most 4; 1 to ``max_outputs`` (templated).
    :param max_outputs: the most one task may ask for (default 16): a guard against a
        templating mistake paying for hundreds.
    :param max_cost: refuse before enqueueing when the model's pricing says this task would
        cost more (a decimal, in the unit of the model's prices). Pricing that cannot be read
        (or a per-second price with no ``duration`` in the request or the schema) refuses too.
    :param allow_unknown_cost: with ``max_cost``, run anyway when the pricing cannot be read
        (the budget is then not enforced; a warning says so).
    :param input_images: input image(s) for edit and image-to-video models (templated): ``s3://``
        URIs, URLs, or records of :class:`~airflow_provider_oxen.transfers.s3.OxenGenerationToS3Operator`
        (map over them with ``.expand(input_images=...)``). ``s3://`` objects are presigned with
        ``aws_conn_id`` for as long as the task may wait (``timeout``, at least 6 h) and sent
        as the model's ``input_image`` (one URL, or an array where the model's schema takes
        one); never made public.
    :param aws_conn_id: AWS connection used to presign ``s3://`` inputs. Each is read (HEAD)
        first: a missing or unreadable object is refused before anything is sent.
    :param allowed_input_prefixes: if set, the only places ``s3://`` inputs may come from, as
        ``s3://bucket/prefix`` entries (``s3://bucket`` for a whole bucket); anything else is
        refused before it is presigned. Not templated, so a run's conf cannot widen it.
    :param allow_unlisted_parameters: send a parameter the model's (open) schema does not list
        even when it is a typo away from one it does (refused by default: the model would
        ignore it and render at its default).
    :param force_new_enqueue: when an earlier try died mid-enqueue and its generations cannot
        be identified, enqueue afresh anyway (may pay twice; templated, e.g. from
        ``dag_run.conf``). Off by default: the task stops and says what to check.
    :param oxen_conn_id: connection of type ``oxen``.
    :param poll_interval: seconds between status checks (at least 1 while deferred).
    :param timeout: seconds to wait for the batch; unfinished generations are then cancelled.
    :param deferrable: free the worker slot while waiting (default ``[operators] default_deferrable``).
    :param wait_for_completion: False returns the generation ids at once (pair with
        :class:`~airflow_provider_oxen.sensors.generation.OxenGenerationSensor`).
    :return: (XCom) a list of result dicts (see :func:`~airflow_provider_oxen.results.build_result`),
        or of ids when not waiting.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "model",
        "parameters",
        "num_outputs",
        "max_cost",
        "force_new_enqueue",
        "input_images",
    )
    template_fields_renderers = {"parameters": "json", "prompt": "md"}
    ui_color = "#d9e8ff"
    operator_extra_links = (OxenImageLink(),)

    def __init__(
        self,
        *,
        prompt: str | None = None,
        model: str,
        parameters: dict[str, Any] | None = None,
        num_outputs: int | str = 1,
        max_outputs: int = DEFAULT_MAX_OUTPUTS_PER_TASK,
        max_cost: str | float | Decimal | None = None,
        allow_unknown_cost: bool = False,
        input_images: Any = None,
        aws_conn_id: str | None = "aws_default",
        allowed_input_prefixes: Sequence[str] | None = None,
        allow_unlisted_parameters: bool = False,
        force_new_enqueue: bool | str = False,
        oxen_conn_id: str = OxenHook.default_conn_name,
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_completion: bool = True,
        **kwargs: Any,
    ) -> None:
        # Mapped tasks are listed by what they make, not as 0, 1, 2 (override as usual).
        kwargs.setdefault("map_index_template", MAP_INDEX_TEMPLATE)
        super().__init__(**kwargs)
        self.prompt = prompt
        self.model = model
        self.parameters = parameters or {}
        self.num_outputs = num_outputs
        self.max_outputs = max_outputs
        self.max_cost = max_cost
        self.allow_unknown_cost = allow_unknown_cost
        self.input_images = input_images
        self.aws_conn_id = aws_conn_id
        self.allowed_input_prefixes = allowed_input_prefixes
        self.allow_unlisted_parameters = allow_unlisted_parameters
        self.force_new_enqueue = force_new_enqueue
        self.oxen_conn_id = oxen_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self._in_flight: list[str] = []
        self._carried_ledger_entry: Any = None

    def build_request(self, **extra: Any) -> ImageGenerationRequest:
        """The request from the (rendered) fields; raises OxenValidationError naming a field."""
        if not isinstance(self.parameters, Mapping):
            raise OxenValidationError(
                f"parameters must be a dict of the model's parameters, got {self.parameters!r:.120}",
                field="parameters",
            )
        return build_image_request(self.model, self.prompt or None, **{**self.parameters, **extra})

    def build_request_for(self, hook: OxenHook) -> ImageGenerationRequest:
        """The request with ``input_images`` resolved to what the model takes (presigned URLs)."""
        sources = input_sources(self.input_images)
        if not sources:
            return self.build_request()
        model = hook.get_model(self.model)
        urls = presign(
            sources,
            aws_conn_id=self.aws_conn_id,
            expiry=url_expiry(float(self.timeout)),
            allowed_prefixes=self.allowed_input_prefixes,
        )
        return self.build_request(input_image=input_image_value(model, urls))

    @property
    def hook(self) -> OxenHook:
        return OxenHook(self.oxen_conn_id)

    def execute(self, context: Context) -> Any:
        with self.hook as hook:  # closes its clients whatever happens below
            OxenImageLink.persist(context, self)
            prepared, sent, count = self.check_request(hook)
            ledger = GenerationLedger.for_context(context)
            fingerprint = request_fingerprint(prepared.model_id, prepared.parameters, count)
            previous = ledger.load()
            if (
                previous is not None
                and previous.settled
                and previous.results is not None
                and previous.fingerprint == fingerprint
                and previous.run_max_tries == _max_tries(context)
            ):
                self.log.warning(
                    "An earlier try of this run already got these results; Airflow failed it after it "
                    "returned (e.g. storing its XCom). Returning them again: nothing is enqueued."
                )
                self._lineage = (hook.settings.base_url, previous.results)
                return previous.results
            try:
                ids = self._enqueue_once(hook, prepared, sent, count, ledger, fingerprint, previous)
            except Exception as exc:
                self._give_up_if_final(context, exc, hook, ledger)
                raise
            self._in_flight = ids
            self._lineage = (hook.settings.base_url, ids)

            if not self.wait_for_completion:
                ledger.settle(ids, _max_tries(context))
                self.log.info("Not waiting: returning %d generation id(s) for a downstream sensor.", len(ids))
                return ids

            deadline = time.time() + float(self.timeout)
            if self.deferrable:
                # Imported when deferring: the resumed task and non-deferrable waits never need it.
                from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger

                self.log.info(
                    "Deferring until %d Oxen generation(s) finish (timeout %g s).",
                    len(ids),
                    float(self.timeout),
                )
                self.defer(
                    trigger=OxenGenerationTrigger(
                        generation_ids=ids,
                        oxen_conn_id=self.oxen_conn_id,
                        poll_interval=float(self.poll_interval),
                        deadline=deadline,
                    ),
                    method_name="execute_complete",
                    kwargs={CARRIED_LEDGER_KWARG: ledger.carried()},
                    timeout=timedelta(seconds=float(self.timeout)) + _DEFER_GRACE,
                )
            payload = hook.wait_for_generations(
                ids, deadline=deadline, poll_interval=float(self.poll_interval)
            )
            return self._finish(context, payload, ledger, hook)

    def check_request(
        self, hook: OxenHook, request: ImageGenerationRequest | None = None
    ) -> tuple[PreparedRequest, dict[str, Any], int]:
        """Everything checked before anything is paid: the output count, the request against the
        model's schema, ``max_cost``. Raises naming the field; sends nothing. The cost plan
        (:mod:`airflow_provider_oxen.plan`) runs the same checks."""
        count = check_output_count(self.num_outputs, int(self.max_outputs))
        prepared = hook.prepare(
            request or self.build_request_for(hook), allow_unlisted=bool(self.allow_unlisted_parameters)
        )
        sent = self._sent(prepared)
        self._check_cost(prepared, sent["parameters"], count)
        return prepared, sent, count

    @staticmethod
    def _sent(prepared: PreparedRequest) -> dict[str, Any]:
        """What the results report as asked for: the parameters sent, and the model's defaults for
        the rest (presigned inputs without their signatures). Kept in the ledger, so that the
        resumed task need not read the model's schema again."""
        return {
            "parameters": strip_url_queries({**prepared.model.parameter_defaults, **prepared.parameters}),
            "media_type": media_type_of(prepared.model),
        }

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Resumed after the trigger fired: typed error on failure, results to XCom on success."""
        with self.hook as hook:
            ledger = GenerationLedger.for_context(context)
            # What this try recorded before deferring (None when called directly: then the
            # ledger is read).
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
            pending = [str(i) for i in payload.get("pending") or []]
            if pending and self._is_final(context, exc):
                # The trigger may have stopped before it could cancel (e.g. it could not read
                # the connection): whatever still renders would be paid for and never collected.
                self.log.warning("Giving up: cancelling %d unfinished Oxen generation(s).", len(pending))
                hook.cancel_generations(pending)
            raise
        entry = ledger.current()
        rows = hook.complete_rows(rows)
        # Without a ledger entry (called outside a task), the rows say what they can.
        sent = entry.sent if entry is not None else {}
        media_type, parameters = sent.get("media_type", "image"), sent.get("parameters")
        # As the DAG gave them (s3:// URIs), not as sent (presigned): what provenance and lineage name.
        inputs = input_sources(self.input_images)
        results = [
            build_result(
                row, model=self.model, parameters=parameters, media_type=media_type, input_uris=inputs
            )
            for row in rows
        ]
        ledger.settle(results, _max_tries(context))
        self._lineage = (hook.settings.base_url, results)
        # Exact decimals, noting generations whose cost Oxen did not report.
        total, unknown = reported_cost(results)
        self.log.info(
            "%d %s(s) ready from %s (reported cost %s%s): %s",
            len(results),
            media_type,
            self.model,
            total,
            f"; cost unknown for {unknown}" if unknown else "",
            [r["generation_id"] for r in results],
        )
        return results

    def _is_final(self, context: Context, error: BaseException) -> bool:
        """Whether this failure ends the task for good (no Airflow retry will resume the ledger)."""
        if isinstance(error, OxenUnrecoverableError):
            return True
        try_number = int(getattr(context.get("ti"), "try_number", 0) or 0)
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

    def _check_cost(self, prepared: PreparedRequest, parameters: dict[str, Any], count: int) -> None:
        estimate = estimate_cost(prepared.model, parameters, count)
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
            why = f"the cost of {prepared.model_id} cannot be estimated: {why_unknown(prepared.model)}"
            if not self.allow_unknown_cost:
                raise OxenValidationError(
                    f"max_cost {limit} cannot be enforced, as {why}. Nothing was enqueued; give a "
                    "duration in parameters where the model takes one, or set allow_unknown_cost=True "
                    "to run without a cost check.",
                    field="max_cost",
                )
            self.log.warning("max_cost %s not enforced (allow_unknown_cost): %s.", limit, why)
            return
        if estimate > limit:
            raise OxenCostLimitError(
                f"{count} generation(s) of {prepared.model_id} would cost {estimate} by the model's pricing, "
                f"above max_cost {limit}. Nothing was enqueued; lower num_outputs or raise max_cost.",
                estimate=str(estimate),
                max_cost=str(limit),
            )
        self.log.info("Estimated cost of %d generation(s): %s (max_cost %s)", count, estimate, limit)

    def _enqueue_once(
        self,
        hook: OxenHook,
        prepared: PreparedRequest,
        sent: dict[str, Any],
        count: int,
        ledger: GenerationLedger,
        fingerprint: str,
        previous: LedgerEntry | None,
    ) -> list[str]:
        keep: list[str] = []
        resumed = previous if previous is not None and previous.fingerprint == fingerprint else None
        if previous is not None and not previous.settled:
            if resumed is not None:
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
        missing = count - len(keep)
        # A fresh seed for what is sent now; the kept generation's when nothing is.
        seed = _seed(prepared, count) if missing > 0 else (resumed.seed if resumed is not None else None)
        if seed is not None:
            prepared = replace(prepared, parameters={**prepared.parameters, "seed": seed})
            sent = {**sent, "parameters": {**sent["parameters"], "seed": seed}}
        entry = LedgerEntry(fingerprint=fingerprint, generation_ids=keep, sent=sent, seed=seed)
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
        # The seed the lost request carried, if one was drawn for it.
        seeded = {"seed": previous.seed} if previous.seed is not None else {}
        decision = match_unrecorded(
            rows.values(),
            model=prepared.model_id,
            sent={**prepared.parameters, **seeded},
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

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the ``s3://`` images an edit or clip was made from in, the generations out."""
        from airflow_provider_oxen.lineage import generation_uri, operator_lineage
        from airflow_provider_oxen.results import generation_ids

        base_url, results = getattr(self, "_lineage", ("", []))
        given = [uri for r in results if isinstance(r, Mapping) for uri in r.get("input_uris") or []]
        return operator_lineage(
            given or input_sources(self.input_images),
            [generation_uri(base_url, i) for i in generation_ids(results)],
            results,
        )


def _max_tries(context: Context) -> int | None:
    """The task instance's ``max_tries``: the same for every retry of a run, raised by a clear."""
    value = getattr(context.get("ti"), "max_tries", None)
    return value if isinstance(value, int) else None


def _seed(prepared: PreparedRequest, count: int) -> int | None:
    """A seed to send where the model takes one and the task set none: recorded before sending, it
    makes this request's queue rows provably its own should the try die before recording their
    ids (see recovery.py). Not for several outputs: with one seed they could all be one image."""
    spec = ((prepared.model.request_schema or {}).get("properties") or {}).get("seed")
    if (
        count != 1
        or "seed" in prepared.parameters
        or not (isinstance(spec, dict) and spec.get("type") == "integer")
    ):
        return None
    low, high = spec.get("minimum", 0), spec.get("maximum", 2**31 - 1)
    return random.randint(low, high) if isinstance(low, int) and isinstance(high, int) else None


class OxenGenerateImageOperator(OxenGenerateOperator):
    """Generate images (text-to-image, or edits of ``input_images``) through the queue.

    :class:`OxenGenerateOperator` with ``ideogram-v4`` as the default model.
    """

    def __init__(self, *, model: str = DEFAULT_MODEL, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)


class OxenGenerateVideoOperator(OxenGenerateOperator):
    """Generate video clips (text-to-video, or image-to-video with ``input_images``) through the queue.

    :class:`OxenGenerateOperator` with video's defaults: a video model, a long ``timeout``
    (clips take minutes) and a slower ``poll_interval``. Each of ``num_outputs`` is one clip;
    results carry ``media_type: "video"``. Clip length, shape and sound go in ``parameters``
    by the model's names (e.g. ``{"duration": 5, "aspect_ratio": "9:16"}``).
    """

    ui_color = "#e3d9ff"

    def __init__(
        self,
        *,
        model: str = DEFAULT_VIDEO_MODEL,
        timeout: float = 7200.0,
        poll_interval: float = 15.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, timeout=timeout, poll_interval=poll_interval, **kwargs)
