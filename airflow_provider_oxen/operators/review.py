"""OxenImageReviewOperator: a person approves, rejects or asks to regenerate each stored image or clip.

Built on Airflow's Human-in-the-loop operator; the form is described in
:mod:`airflow_provider_oxen.review_form`. The body is stored in Airflow's metadata DB and shown to
everyone who can see the task, so it holds presigned S3 URLs of *our* bucket only (expiring with
``link_expiry``), never an Oxen result URL or its signed query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.definitions.param import ParamsDict

from airflow_provider_oxen.links.extra_links import OxenContactSheetLink
from airflow_provider_oxen.review_form import (
    APPROVE,
    DECISIONS,
    NOTE_PARAM,
    REGENERATE,
    REJECT,
    count_text,
    decision_param,
    decision_param_name,
    default_decision,
    note_param,
    review_body,
)
from airflow_provider_oxen.transfers.batch import flatten_results

if TYPE_CHECKING:
    from airflow.sdk import Context

APPLY, APPROVE_ALL, REJECT_ALL, REGENERATE_ALL = (
    "Apply per-image decisions",
    "Approve all",
    "Reject all",
    "Regenerate all",
)
# SigV4 presigned URLs are valid for at most 7 days.
MAX_LINK_EXPIRY = timedelta(days=7)
# Links outlive the review window by this much (a reviewer who opens the form at the last minute).
LINK_EXPIRY_MARGIN = timedelta(hours=1)


def link_expiry_for(link_expiry: timedelta | None, response_timeout: timedelta | None) -> timedelta:
    """How long the form's presigned links stay valid: ``link_expiry``, else the review window
    (``response_timeout``) plus an hour, else 7 days; never more than 7 days (SigV4's limit)."""
    if link_expiry is not None:
        if link_expiry <= timedelta(0) or link_expiry > MAX_LINK_EXPIRY:
            raise ValueError(f"link_expiry must be more than 0 and at most 7 days, got {link_expiry}")
        return link_expiry
    if response_timeout is not None and response_timeout > timedelta(0):
        return min(response_timeout + LINK_EXPIRY_MARGIN, MAX_LINK_EXPIRY)
    return MAX_LINK_EXPIRY


def decide(
    records: Sequence[Mapping[str, Any]], chosen: Sequence[str], params_input: Mapping[str, Any]
) -> dict[str, str]:
    """Each image's decision from the chosen option and the per-image fields."""
    blanket = {APPROVE_ALL: APPROVE, REJECT_ALL: REJECT, REGENERATE_ALL: REGENERATE}
    option = next((o for o in chosen if o in blanket), None)
    decisions: dict[str, str] = {}
    for index, record in enumerate(records):
        generation_id = str(record["generation_id"])
        if option is not None:
            decisions[generation_id] = blanket[option]
            continue
        value = params_input.get(decision_param_name(index, generation_id))
        decisions[generation_id] = value if value in DECISIONS else default_decision(record)
    return decisions


class OxenImageReviewOperator(HITLOperator):
    """Human review of a stored batch; returns ``{"decisions": {generation_id: decision}, "note": ...}``.

    One row and one decision field per image or video clip (a clip shows its poster frame).

    :param records: the records returned by ``OxenGenerationToS3Operator`` (templated / XComArg).
    :param contact_sheet_uri: ``s3://`` URI of the batch's contact sheet (templated).
    :param labels: what each image shows, for its title (``Image 1 — <label>, 16:9``): a mapping
        from prompt (or generation id) to a short name such as the product (templated /
        XComArg). Without one, the title uses the start of the prompt, cut at a word.
    :param aws_conn_id: used to presign the previews and links; None: no previews, S3 URIs only.
    :param link_expiry: how long presigned links stay valid; default: ``response_timeout`` plus
        an hour, at most 7 days (SigV4's limit), 7 days without a timeout.
    :param max_inline_images: previews shown in the body (the rest are listed without one);
        keeps the stored body small.
    :param response_timeout: with no answer by then, the per-image defaults apply.
    """

    template_fields: Sequence[str] = ("subject", "body", "records", "contact_sheet_uri", "labels")
    operator_extra_links = (OxenContactSheetLink(),)

    def __init__(
        self,
        *,
        records: Any,
        contact_sheet_uri: str | None = None,
        labels: Mapping[str, str] | Any | None = None,
        aws_conn_id: str | None = "aws_default",
        link_expiry: timedelta | None = None,
        max_inline_images: int = 20,
        subject: str = "Review the generated images",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("options", [APPLY, APPROVE_ALL, REJECT_ALL, REGENERATE_ALL])
        kwargs.setdefault("defaults", [APPLY])
        super().__init__(subject=subject, **kwargs)
        self.records = records
        self.contact_sheet_uri = contact_sheet_uri
        self.labels = labels
        self.aws_conn_id = aws_conn_id
        # Checked now (a DAG with a 30-day expiry fails to parse rather than at review time).
        self.link_expiry = link_expiry_for(link_expiry, self.response_timeout)
        self.max_inline_images = max_inline_images
        self._s3_hook: Any = None

    def _records(self) -> list[Mapping[str, Any]]:
        return [r for r in flatten_results(self.records) if isinstance(r, Mapping)]

    def _labels(self) -> dict[str, str]:
        labels = self.labels
        if not isinstance(labels, Mapping):
            return {}
        return {str(k): str(v) for k, v in labels.items() if v}

    def _prepare(self, records: list[Mapping[str, Any]]) -> None:
        """The per-image form fields; rebuilt identically when the task resumes."""
        labels = self._labels()
        fields: dict[str, Any] = {
            decision_param_name(index, str(record["generation_id"])): decision_param(index, record, labels)
            for index, record in enumerate(records)
        }
        fields[NOTE_PARAM] = note_param()
        self.params = ParamsDict(fields)

    def _link(self, uri: str | None) -> str | None:
        """A presigned GET of one object of the transfer's bucket (an image, a clip, a poster frame), or
        None (no connection, not S3)."""
        if not uri or not uri.startswith("s3://") or not self.aws_conn_id:
            return None
        if self._s3_hook is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._s3_hook = S3Hook(aws_conn_id=self.aws_conn_id)
        bucket, _, key = uri[len("s3://") :].partition("/")
        url = self._s3_hook.generate_presigned_url(
            "get_object",
            params={"Bucket": bucket, "Key": key},
            expires_in=int(self.link_expiry.total_seconds()),
        )
        return str(url) if url else None

    def _body(self, records: list[Mapping[str, Any]], now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        return review_body(
            records,
            labels=self._labels(),
            link=self._link,
            contact_sheet_uri=self.contact_sheet_uri or None,
            links_expire_at=now + self.link_expiry if self.aws_conn_id else None,
            max_inline_images=self.max_inline_images,
            options=self.options,
        )

    def execute(self, context: Context) -> Any:
        OxenContactSheetLink.persist(context, self)
        records = self._records()
        if not records:
            self.log.info("Nothing to review.")
            return {"decisions": {}, "note": ""}
        self._prepare(records)
        self.subject = f"{self.subject} ({count_text(records)})"
        self.body = self._body(records)
        if self.response_timeout is not None and self.link_expiry < self.response_timeout:
            self.log.warning(
                "The form's links expire after %s, before the review window (%s) closes.",
                self.link_expiry,
                self.response_timeout,
            )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        records = self._records()
        self._prepare(records)
        response = super().execute_complete(context, event)
        params_input = dict(response["params_input"] or {})
        decisions = decide(records, response["chosen_options"], params_input)
        summary = {d: sum(1 for v in decisions.values() if v == d) for d in DECISIONS}
        self.log.info(
            "Review (%s by %s): %s", response["chosen_options"], response["responded_by_user"], summary
        )
        return {"decisions": decisions, "note": str(params_input.get(NOTE_PARAM) or "").strip()}
