"""Review decisions and the publish step (S3 against a real moto server)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator, regeneration_prompt
from airflow_provider_oxen.operators.review import (
    APPLY,
    APPROVE_ALL,
    NOTE_PARAM,
    REGENERATE_ALL,
    OxenImageReviewOperator,
    decide,
    decision_param_name,
)

RECORDS = [
    {"generation_id": "aaaaaaaa-1111", "prompt": "a mug", "checks": {"ok": True, "problems": []}},
    {"generation_id": "bbbbbbbb-2222", "prompt": "beans", "checks": {"ok": False, "problems": ["too small"]}},
    {"generation_id": "cccccccc-3333", "prompt": "a carafe", "checks": {"ok": True, "problems": []}},
]


def test_defaults_follow_the_automatic_checks() -> None:
    assert decide(RECORDS, [APPLY], {}) == {
        "aaaaaaaa-1111": "approve",
        "bbbbbbbb-2222": "reject",
        "cccccccc-3333": "approve",
    }


def test_per_image_decisions_and_blanket_options() -> None:
    fields = {
        decision_param_name(2, "cccccccc-3333"): "regenerate",
        decision_param_name(0, "aaaaaaaa-1111"): "reject",
    }
    assert decide(RECORDS, [APPLY], fields)["cccccccc-3333"] == "regenerate"
    assert decide(RECORDS, [APPLY], fields)["aaaaaaaa-1111"] == "reject"
    assert set(decide(RECORDS, [APPROVE_ALL], fields).values()) == {"approve"}
    assert set(decide(RECORDS, [REGENERATE_ALL], {}).values()) == {"regenerate"}


def test_review_form_has_one_field_per_image_and_resumes_with_the_answer() -> None:
    operator = OxenImageReviewOperator(task_id="review", records=[RECORDS], aws_conn_id=None)
    operator._prepare(RECORDS)
    names = list(operator.params.keys())
    assert names == [decision_param_name(i, r["generation_id"]) for i, r in enumerate(RECORDS)] + [NOTE_PARAM]
    assert operator.params[decision_param_name(1, "bbbbbbbb-2222")] == "reject"
    body = operator._body(RECORDS)
    assert "too small" in body and "a carafe" in body

    answer = {name: "approve" for name in names[:-1]}
    answer[decision_param_name(1, "bbbbbbbb-2222")] = "regenerate"
    answer[NOTE_PARAM] = "make the bag blue"
    event = {
        "chosen_options": [APPLY],
        "params_input": answer,
        "responded_at": datetime.now(timezone.utc),
        "responded_by_user": {"id": "1", "name": "reviewer"},
    }
    fresh = OxenImageReviewOperator(task_id="review", records=[RECORDS], aws_conn_id=None)
    result = fresh.execute_complete({}, event)
    assert result == {
        "decisions": {"aaaaaaaa-1111": "approve", "bbbbbbbb-2222": "regenerate", "cccccccc-3333": "approve"},
        "note": "make the bag blue",
    }


def test_publish_copies_approved_moves_rejected_and_returns_regenerations(
    s3_client: Any, bucket: str, aws_conn: str
) -> None:
    records = []
    for record in RECORDS:
        key = f"campaigns/run1/{record['generation_id']}.png"
        s3_client.put_object(Bucket=bucket, Key=key, Body=record["generation_id"].encode())
        records.append({**record, "s3_key": key, "parameters": {"image_size": "square_hd"}})
    review = {
        "decisions": {"aaaaaaaa-1111": "approve", "bbbbbbbb-2222": "reject", "cccccccc-3333": "regenerate"},
        "note": "brighter",
    }
    outcome = OxenPublishReviewedOperator(
        task_id="publish",
        records=records,
        review=review,
        bucket=bucket,
        approved_prefix="approved/run1",
        rejected_prefix="rejected/run1",
    ).execute({})
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        "campaigns/run1/aaaaaaaa-1111.png",
        "approved/run1/aaaaaaaa-1111.png",
        "rejected/run1/bbbbbbbb-2222.png",
        "campaigns/run1/cccccccc-3333.png",
    }
    approved = s3_client.get_object(Bucket=bucket, Key="approved/run1/aaaaaaaa-1111.png")["Body"].read()
    assert approved == b"aaaaaaaa-1111"
    assert outcome["approved"] == [f"s3://{bucket}/approved/run1/aaaaaaaa-1111.png"]
    assert outcome["rejected"] == [f"s3://{bucket}/rejected/run1/bbbbbbbb-2222.png"]
    assert outcome["regenerate"] == [
        {
            "prompt": "a carafe (Reviewer note: brighter)",
            "image_size": "square_hd",
            "regenerates": "cccccccc-3333",
        }
    ]


@pytest.mark.parametrize(
    ("prompt", "note", "expected"), [("x", "", "x"), ("x ", " y ", "x (Reviewer note: y)")]
)
def test_regeneration_prompt(prompt: str, note: str, expected: str) -> None:
    assert regeneration_prompt(prompt, note) == expected
