"""OxenImageReviewOperator: a person approves, rejects or asks to regenerate each stored image.

Built on Airflow's Human-in-the-loop operator (standard provider, Airflow >= 3.1): the
required-action form shows the batch (contact sheet and a link per image, with the
automatic check results) and one decision field per image. Images that failed the
automatic checks default to ``reject``; the rest to ``approve``. With a
``response_timeout``, nobody answering means the defaults apply (that is how the demo
answers), through Airflow's own HITL timeout handling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airflow_provider_oxen.links import OxenContactSheetLink
from airflow_provider_oxen.transfers.batch import flatten_results

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVE, REJECT, REGENERATE = "approve", "reject", "regenerate"
DECISIONS = [APPROVE, REJECT, REGENERATE]
APPLY, APPROVE_ALL, REJECT_ALL, REGENERATE_ALL = (
    "Apply per-image decisions",
    "Approve all",
    "Reject all",
    "Regenerate all",
)
NOTE_PARAM = "note"


def decision_param_name(index: int, generation_id: str) -> str:
    """Form field per image: sortable and recognisable (``image_01_0b6c1f2a``)."""
    return f"image_{index + 1:02d}_{generation_id.replace('-', '')[:8]}"


def _checks_ok(record: Mapping[str, Any]) -> bool:
    checks = record.get("checks")
    return not isinstance(checks, Mapping) or bool(checks.get("ok", True))


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
        decisions[generation_id] = (
            value if value in DECISIONS else (APPROVE if _checks_ok(record) else REJECT)
        )
    return decisions


class OxenImageReviewOperator(HITLOperator):
    """Human review of a stored batch; returns ``{"decisions": {generation_id: decision}, "note": ...}``.

    :param records: the records returned by ``OxenGenerationToS3Operator`` (templated / XComArg).
    :param contact_sheet_uri: ``s3://`` URI of the batch's contact sheet (templated).
    :param aws_conn_id: used to presign links so a reviewer can open each image.
    :param link_expiry: how long the presigned links stay valid.
    :param response_timeout: with no answer by then, the per-image defaults apply.
    """

    template_fields: Sequence[str] = ("subject", "body", "records", "contact_sheet_uri")
    operator_extra_links = (OxenContactSheetLink(),)

    def __init__(
        self,
        *,
        records: Any,
        contact_sheet_uri: str | None = None,
        aws_conn_id: str | None = "aws_default",
        link_expiry: timedelta = timedelta(days=2),
        subject: str = "Review the generated images",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("options", [APPLY, APPROVE_ALL, REJECT_ALL, REGENERATE_ALL])
        kwargs.setdefault("defaults", [APPLY])
        super().__init__(subject=subject, **kwargs)
        self.records = records
        self.contact_sheet_uri = contact_sheet_uri
        self.aws_conn_id = aws_conn_id
        self.link_expiry = link_expiry

    def _records(self) -> list[Mapping[str, Any]]:
        return [r for r in flatten_results(self.records) if isinstance(r, Mapping)]

    def _prepare(self, records: list[Mapping[str, Any]]) -> None:
        """The per-image form fields; rebuilt identically when the task resumes."""
        fields: dict[str, Any] = {}
        for index, record in enumerate(records):
            problems = (record.get("checks") or {}).get("problems") or []
            description = f"{str(record.get('prompt') or '')[:120]}"
            if problems:
                description += f" — failed checks: {'; '.join(problems)}"
            fields[decision_param_name(index, str(record["generation_id"]))] = Param(
                APPROVE if _checks_ok(record) else REJECT, enum=DECISIONS, description=description
            )
        fields[NOTE_PARAM] = Param(
            "", type="string", description="Note appended to the prompt of regenerations"
        )
        self.params = ParamsDict(fields)

    def _link(self, uri: str | None) -> str | None:
        if not uri or not uri.startswith("s3://") or not self.aws_conn_id:
            return None
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, _, key = uri[len("s3://") :].partition("/")
        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        return hook.generate_presigned_url(
            "get_object",
            params={"Bucket": bucket, "Key": key},
            expires_in=int(self.link_expiry.total_seconds()),
        )

    def _body(self, records: list[Mapping[str, Any]]) -> str:
        lines = [f"**{len(records)} image(s)** to review. Decide per image below, or pick a blanket option."]
        sheet = self._link(self.contact_sheet_uri)
        if sheet:
            lines += ["", f"![contact sheet]({sheet})", "", f"[Open the contact sheet]({sheet})"]
        lines += ["", "| # | image | prompt | checks |", "|---|---|---|---|"]
        for index, record in enumerate(records):
            uri = record.get("s3_uri")
            link = self._link(uri)
            label = f"[{record['generation_id']}]({link})" if link else f"`{uri or record['generation_id']}`"
            checks = (
                "ok" if _checks_ok(record) else "; ".join((record.get("checks") or {}).get("problems") or [])
            )
            prompt = str(record.get("prompt") or "").replace("|", "/")[:100]
            lines.append(f"| {index + 1} | {label} | {prompt} | {checks} |")
        return "\n".join(lines)

    def execute(self, context: Context) -> Any:
        OxenContactSheetLink.persist(context, self)
        records = self._records()
        if not records:
            self.log.info("Nothing to review.")
            return {"decisions": {}, "note": ""}
        self._prepare(records)
        self.subject = f"{self.subject} ({len(records)} image(s))"
        self.body = self._body(records)
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
        return {"decisions": decisions, "note": str(params_input.get(NOTE_PARAM) or "")}
