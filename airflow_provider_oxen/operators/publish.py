"""OxenPublishReviewedOperator: apply review decisions to a stored batch in S3.

Approved images are copied under ``approved_prefix`` (the publish step); rejected ones are
moved under ``rejected_prefix`` (copied, then deleted from where they were stored); images
sent back for regeneration stay where they are and come back as new prompts (the original
prompt with the reviewer's note appended) for the next generation run.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_oxen.operators.review import APPROVE, REGENERATE, REJECT
from airflow_provider_oxen.transfers.batch import flatten_results

if TYPE_CHECKING:
    from airflow.sdk import Context


def regeneration_prompt(prompt: str, note: str) -> str:
    return f"{prompt.rstrip()} (Reviewer note: {note.strip()})" if note.strip() else prompt


class OxenPublishReviewedOperator(BaseOperator):
    """Copy approved images to ``approved_prefix``, move rejected ones aside, list regenerations.

    :param records: records from ``OxenGenerationToS3Operator`` (templated / XComArg).
    :param review: the review operator's result: ``{"decisions": {...}, "note": "..."}``.
    :param bucket: the bucket the records live in (templated).
    :param approved_prefix: where approved images go, e.g. ``approved/{{ params.campaign }}`` (templated).
    :param rejected_prefix: where rejected images go (templated).
    :return: ``{"approved": [uri], "rejected": [uri], "regenerate": [{"prompt", "image_size", ...}]}``;
        the regenerations are also pushed under the XCom key ``regenerate``.
    """

    template_fields: Sequence[str] = ("records", "review", "bucket", "approved_prefix", "rejected_prefix")

    def __init__(
        self,
        *,
        records: Any,
        review: Any,
        bucket: str,
        approved_prefix: str,
        rejected_prefix: str,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.records = records
        self.review = review
        self.bucket = bucket
        self.approved_prefix = approved_prefix
        self.rejected_prefix = rejected_prefix
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, list[Any]]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        review: Mapping[str, Any] = self.review or {}
        decisions: Mapping[str, str] = review.get("decisions") or {}
        note = str(review.get("note") or "")
        outcome: dict[str, list[Any]] = {"approved": [], "rejected": [], "regenerate": []}
        for record in flatten_results(self.records):
            if not isinstance(record, Mapping) or not record.get("s3_key"):
                continue
            generation_id, key = str(record["generation_id"]), str(record["s3_key"])
            # An image nobody decided on is not published.
            decision = decisions.get(generation_id, REJECT)
            name = posixpath.basename(key)
            if decision == APPROVE:
                target = f"{self.approved_prefix.strip('/')}/{name}"
                hook.copy_object(key, target, source_bucket_name=self.bucket, dest_bucket_name=self.bucket)
                outcome["approved"].append(f"s3://{self.bucket}/{target}")
            elif decision == REGENERATE:
                parameters = dict(record.get("parameters") or {})
                outcome["regenerate"].append(
                    {
                        "prompt": regeneration_prompt(
                            str(record.get("prompt") or parameters.get("prompt", "")), note
                        ),
                        "image_size": parameters.get("image_size"),
                        "regenerates": generation_id,
                    }
                )
            else:
                target = f"{self.rejected_prefix.strip('/')}/{name}"
                hook.copy_object(key, target, source_bucket_name=self.bucket, dest_bucket_name=self.bucket)
                hook.delete_objects(self.bucket, [key])
                outcome["rejected"].append(f"s3://{self.bucket}/{target}")
            self.log.info("%s: %s (%s)", generation_id, decision, key)
        ti = context.get("ti")
        if ti is not None:
            # Its own XCom key, so a downstream trigger can take ``publish.output["regenerate"]``.
            ti.xcom_push(key="regenerate", value=outcome["regenerate"])
        self.log.info(
            "Published %d, rejected %d, %d to regenerate.",
            len(outcome["approved"]),
            len(outcome["rejected"]),
            len(outcome["regenerate"]),
        )
        return outcome
