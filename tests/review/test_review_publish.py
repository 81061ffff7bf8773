"""Review decisions and the publish step (S3 against a real moto server)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import pytest

from airflow_provider_oxen.exceptions import (
    OxenKeyConflictError,
    OxenKeyError,
    OxenPublishError,
    OxenValidationError,
)
from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator, regeneration_prompt
from airflow_provider_oxen.operators.review import (
    APPLY,
    APPROVE_ALL,
    REGENERATE_ALL,
    decide,
    decision_param_name,
)
from tests.transfers.conftest import S3Calls

RECORDS: list[Mapping[str, Any]] = [
    {"generation_id": "aaaaaaaa-1111", "prompt": "a mug", "checks": {"ok": True, "problems": []}},
    {"generation_id": "bbbbbbbb-2222", "prompt": "beans", "checks": {"ok": False, "problems": ["too small"]}},
    {"generation_id": "cccccccc-3333", "prompt": "a carafe", "checks": {"ok": True, "problems": []}},
]


def test_decisions_default_to_the_automatic_checks_and_blanket_options_override_them() -> None:
    # A field left out, or cleared in the form (its select's x sends null), means the default.
    cleared = {decision_param_name(i, r["generation_id"]): None for i, r in enumerate(RECORDS)}
    for answer in ({}, cleared):
        assert decide(RECORDS, [APPLY], answer) == {
            "aaaaaaaa-1111": "approve",
            "bbbbbbbb-2222": "reject",
            "cccccccc-3333": "approve",
        }
    fields = {
        decision_param_name(2, "cccccccc-3333"): "regenerate",
        decision_param_name(0, "aaaaaaaa-1111"): "reject",
    }
    assert decide(RECORDS, [APPLY], fields)["cccccccc-3333"] == "regenerate"
    assert decide(RECORDS, [APPLY], fields)["aaaaaaaa-1111"] == "reject"
    assert set(decide(RECORDS, [APPROVE_ALL], fields).values()) == {"approve"}
    assert set(decide(RECORDS, [REGENERATE_ALL], {}).values()) == {"regenerate"}


PREFIX = "campaigns/run1"
REVIEW = {
    "decisions": {"aaaaaaaa-1111": "approve", "bbbbbbbb-2222": "reject", "cccccccc-3333": "regenerate"},
    "note": "brighter",
}


def _store(s3_client: Any, bucket: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """An image as the transfer stores it (metadata + S3's SHA-256 checksum), and its record."""
    generation_id = record["generation_id"]
    key = f"{PREFIX}/{generation_id}.png"
    data = f"image of {generation_id}".encode()
    digest = hashlib.sha256(data).hexdigest()
    s3_client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ChecksumAlgorithm="SHA256",
        Metadata={"generation-id": generation_id, "sha256": digest},
    )
    return {
        **record,
        "s3_key": key,
        "s3_uri": f"s3://{bucket}/{key}",
        "s3_prefix": PREFIX,
        "sha256": digest,
        "size_bytes": len(data),
        "parameters": {"image_size": "square_hd"},
    }


def _publish(records: Any, bucket: str, review: Any = REVIEW, **kwargs: Any) -> dict[str, Any]:
    prefixes = {"approved_prefix": "approved/run1", "rejected_prefix": "rejected/run1"}
    operator = OxenPublishReviewedOperator(
        task_id="publish", records=records, review=review, bucket=bucket, **{**prefixes, **kwargs}
    )
    return operator.execute({})


def _keys(s3_client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_publish_copies_approved_moves_rejected_and_returns_regenerations(
    s3_client: Any, bucket: str, aws_conn: str
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    outcome = _publish(records, bucket)
    assert _keys(s3_client, bucket) == {
        "campaigns/run1/aaaaaaaa-1111.png",
        "approved/run1/aaaaaaaa-1111.png",
        "rejected/run1/bbbbbbbb-2222.png",
        "campaigns/run1/cccccccc-3333.png",
    }
    approved = s3_client.get_object(Bucket=bucket, Key="approved/run1/aaaaaaaa-1111.png")["Body"].read()
    assert approved == b"image of aaaaaaaa-1111"
    assert outcome["approved"] == [f"s3://{bucket}/approved/run1/aaaaaaaa-1111.png"]
    assert outcome["rejected"] == [f"s3://{bucket}/rejected/run1/bbbbbbbb-2222.png"]
    assert outcome["regenerate"] == [
        {
            "prompt": "a carafe (Reviewer note: brighter)",
            "image_size": "square_hd",
            "regenerates": "cccccccc-3333",
        }
    ]


def test_publish_rerun_is_a_no_op_that_returns_the_same_outcome(
    s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    first = _publish(records, bucket)
    keys = _keys(s3_client, bucket)
    s3_calls.reset()

    assert _publish(records, bucket) == first  # the rejected original is gone: recognised as moved
    assert s3_calls.changes == 0 and _keys(s3_client, bucket) == keys

    # A try that died between copying a rejected image and deleting its original: finish the move.
    s3_client.copy_object(
        Bucket=bucket,
        Key=records[1]["s3_key"],
        CopySource={"Bucket": bucket, "Key": "rejected/run1/bbbbbbbb-2222.png"},
        ChecksumAlgorithm="SHA256",
    )
    s3_calls.reset()
    assert _publish(records, bucket) == first
    assert s3_calls.counts["CopyObject"] == 0 and s3_calls.counts["DeleteObjects"] == 1
    assert _keys(s3_client, bucket) == keys


def test_publish_follows_the_current_decision_after_a_re_review(
    s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    a, b, c = (r["generation_id"] for r in records)
    # Not ours (another generation's file): never removed, whatever the decision.
    s3_client.put_object(
        Bucket=bucket, Key=f"rejected/run1/{c}.png", Body=b"x", Metadata={"generation-id": "zz"}
    )
    _publish(records, bucket, review={"decisions": {a: "approve", b: "reject", c: "approve"}})

    again = {"decisions": {a: "reject", b: "approve", c: "regenerate"}, "note": ""}
    outcome = _publish(records, bucket, review=again)
    assert _keys(s3_client, bucket) == {
        f"rejected/run1/{a}.png",  # approved, then rejected: no longer published
        f"approved/run1/{b}.png",  # rejected, then approved: moved over from rejected/
        f"{PREFIX}/{c}.png",  # approved, then sent back: no longer published
        f"rejected/run1/{c}.png",
    }
    assert (
        s3_client.get_object(Bucket=bucket, Key=f"approved/run1/{b}.png")["Body"].read()
        == f"image of {b}".encode()
    )
    assert outcome["approved"] == [f"s3://{bucket}/approved/run1/{b}.png"]
    assert outcome["rejected"] == [f"s3://{bucket}/rejected/run1/{a}.png"]
    s3_calls.reset()
    assert _publish(records, bucket, review=again) == outcome
    assert s3_calls.changes == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"s3_key": "elsewhere/aaaaaaaa-1111.png"}, "'elsewhere/aaaaaaaa-1111.png' is outside the prefix"),
        ({"s3_key": "campaigns/run1/../../etc/x.png"}, "'campaigns/run1/../../etc/x.png' has a '..'"),
        ({"s3_key": "campaigns/run10/aaaaaaaa-1111.png"}, "'campaigns/run10/aaaaaaaa-1111.png' is outside"),
        ({"s3_uri": "s3://another-bucket/campaigns/run1/aaaaaaaa-1111.png"}, "s3://another-bucket/"),
    ],
)
def test_publish_refuses_records_outside_the_transfers_prefix_or_bucket(
    s3_client: Any, bucket: str, s3_calls: S3Calls, change: dict[str, str], message: str
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    s3_client.put_object(Bucket=bucket, Key="elsewhere/aaaaaaaa-1111.png", Body=b"not the transfer's")
    keys = _keys(s3_client, bucket)
    records[0] = {**records[0], **change}
    if "s3_key" in change:
        records[0]["s3_uri"] = f"s3://{bucket}/{change['s3_key']}"
    s3_calls.reset()
    with pytest.raises(OxenKeyError, match=re.escape(message)):
        _publish(records, bucket)
    # Refused before anything was asked of S3, let alone changed.
    assert sum(s3_calls.counts.values()) == 0 and _keys(s3_client, bucket) == keys


def test_publish_confines_to_the_prefix_given_or_recorded(s3_client: Any, bucket: str) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    older = [{k: v for k, v in r.items() if k != "s3_prefix"} for r in records]
    with pytest.raises(OxenValidationError, match=r"no s3_prefix.*pass prefix="):
        _publish(older, bucket)
    with pytest.raises(OxenKeyError, match="outside the prefix 'campaigns/run2/'"):
        _publish(records, bucket, prefix="campaigns/run2")
    mixed = [records[0], {**records[1], "s3_prefix": "campaigns"}]
    with pytest.raises(OxenValidationError, match="several prefixes"):
        _publish(mixed, bucket)
    assert _publish(older, bucket, prefix=PREFIX)["approved"] == [
        f"s3://{bucket}/approved/run1/aaaaaaaa-1111.png"
    ]
    # A record that does not say which bytes it stored is not the transfer's: nothing is published.
    with pytest.raises(OxenValidationError, match="names no sha256"):
        _publish([{**records[1], "sha256": None}], bucket)


def test_publish_refuses_objects_the_transfer_did_not_store_for_the_record(
    s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    manifest_key = f"{PREFIX}/manifest-run1.json"
    s3_client.put_object(Bucket=bucket, Key=manifest_key, Body=b"{}", Metadata={"kind": "oxen-manifest"})
    keys = _keys(s3_client, bucket)
    # A record naming the manifest (inside the prefix, not an image of that generation): not deleted.
    bogus = {**records[1], "s3_key": manifest_key, "s3_uri": f"s3://{bucket}/{manifest_key}"}
    s3_calls.reset()
    with pytest.raises(
        OxenKeyConflictError, match=re.escape(f"s3://{bucket}/{manifest_key} is not the image")
    ):
        _publish([records[0], bogus, records[2]], bucket)
    assert s3_calls.changes == 0 and _keys(s3_client, bucket) == keys

    # An image overwritten since it was stored (its metadata kept) is not published either.
    s3_client.put_object(
        Bucket=bucket,
        Key=records[0]["s3_key"],
        Body=b"somebody else's picture",
        Metadata={"generation-id": "aaaaaaaa-1111", "sha256": records[0]["sha256"]},
    )
    with pytest.raises(OxenPublishError, match="no longer holds the bytes record aaaaaaaa-1111 describes"):
        _publish(records, bucket)
    assert s3_calls.changes == 0 and _keys(s3_client, bucket) == keys

    # Something unrelated already at the target is not overwritten.
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    s3_client.put_object(Bucket=bucket, Key="approved/run1/aaaaaaaa-1111.png", Body=b"older poster")
    with pytest.raises(
        OxenKeyConflictError, match=re.escape("approved/run1/aaaaaaaa-1111.png already holds")
    ):
        _publish(records, bucket)
    assert s3_client.get_object(Bucket=bucket, Key="approved/run1/aaaaaaaa-1111.png")["Body"].read() == (
        b"older poster"
    )


def test_publish_refuses_a_missing_image_that_was_not_published(s3_client: Any, bucket: str) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    s3_client.delete_object(Bucket=bucket, Key=records[1]["s3_key"])
    with pytest.raises(
        OxenPublishError, match=re.escape(f"s3://{bucket}/{records[1]['s3_key']} (record bbbbbbbb-2222)")
    ):
        _publish(records, bucket)
    assert "approved/run1/aaaaaaaa-1111.png" not in _keys(s3_client, bucket)  # checked before any copy


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        ({"approved_prefix": PREFIX}, "which is a stored file of record"),  # onto the originals
        ({"approved_prefix": ""}, "approved_prefix must not be empty"),
        ({"approved_prefix": "published", "rejected_prefix": "published/"}, "both 'published'"),
    ],
)
def test_publish_refuses_target_prefixes_that_would_overwrite_originals_or_each_other(
    s3_client: Any, bucket: str, prefixes: dict[str, str], message: str
) -> None:
    records = [_store(s3_client, bucket, record) for record in RECORDS]
    keys = _keys(s3_client, bucket)
    with pytest.raises(OxenValidationError, match=message):
        _publish(records, bucket, **prefixes)
    assert _keys(s3_client, bucket) == keys


@pytest.mark.parametrize(
    ("prompt", "note", "expected"), [("x", "", "x"), ("x ", " y ", "x (Reviewer note: y)")]
)
def test_regeneration_prompt(prompt: str, note: str, expected: str) -> None:
    assert regeneration_prompt(prompt, note) == expected
