"""The transfer's small parts: spool, input flattening, content proofs, manifest (what a re-run
writes or refuses over real S3: test_transfer_s3.py; a requester-pays hook's calls: test_downloads.py)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.media.checks import CheckSettings, ImageCheck
from airflow_provider_oxen.redact import redact_text, strip_query, strip_url_queries
from airflow_provider_oxen.transfers.batch import check_result, flatten_results
from airflow_provider_oxen.transfers.manifest import build_manifest, image_record, manifest_bytes
from airflow_provider_oxen.transfers.spool import Spool
from airflow_provider_oxen.transfers.store import ExistingObject, s3_metadata, sha256_base64

# -- spool ------------------------------------------------------------------------------------------


def test_spool_stays_in_memory_up_to_the_threshold_then_moves_to_a_named_file_and_removes_it() -> None:
    spool = Spool(max_memory=10)
    spool.write(b"0123456789")
    assert spool.path is None and spool.tell() == 10
    spool.write(b"abc")
    assert spool.path is not None
    path = spool.path
    with open(path, "rb") as readback:  # readable by path (what boto3 uploads from)
        assert readback.read() == b"0123456789abc"
    assert spool.tell() == 13
    spool.seek(5)
    assert spool.read(3) == b"567"
    spool.reset()
    assert spool.read() == b"" and spool.path == path
    spool.close()
    assert spool.closed and not os.path.exists(path)
    with pytest.raises(ValueError):
        spool.read()


# -- results input ----------------------------------------------------------------------------------

RESULT = {"generation_id": "g1", "status": "succeeded", "result_url": "http://x/1.png"}


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ([RESULT], ["g1"]),
        (RESULT, ["g1"]),
        ([[RESULT], [{**RESULT, "generation_id": "g2"}], None, []], ["g1", "g2"]),
        ((x for x in [[RESULT]]), ["g1"]),
        (json.dumps([RESULT]), ["g1"]),
        (repr([RESULT]), ["g1"]),  # what a "{{ ti.xcom_pull(...) }}" template renders to
        ("g9", ["g9"]),
        (["g9", ["g8"]], ["g9", "g8"]),
        ("", []),
    ],
)
def test_results_are_flattened(value: Any, ids: list[str]) -> None:
    flat = flatten_results(value)
    assert [item if isinstance(item, str) else item["generation_id"] for item in flat] == ids


@pytest.mark.parametrize("value", [42, "[not json nor python", [3.5]])
def test_unusable_results_are_refused(value: Any) -> None:
    with pytest.raises(OxenValidationError):
        flatten_results(value)


# -- write decisions --------------------------------------------------------------------------------

DIGEST = "ab" * 32
OTHER = "cd" * 32


def _checked(checksum: str | None, *, etag: str = '"0f0f"', kind: str | None = None) -> ExistingObject:
    return ExistingObject(
        size=10,
        content_type="image/png",
        metadata={"sha256": DIGEST},
        checksum_sha256=checksum,
        checksum_type=kind,
        etag=etag,
    )


@pytest.mark.parametrize(
    ("existing", "verdict"),
    [
        (_checked(sha256_base64(DIGEST)), True),  # S3's own full-object checksum is the digest
        (_checked(sha256_base64(DIGEST), kind="FULL_OBJECT"), True),
        (_checked(sha256_base64(OTHER)), False),  # S3 says the bytes are different ones
        (_checked(None), None),  # no SHA-256 checksum (written by others): metadata is no proof
        (_checked(f"{sha256_base64(OTHER)}-3"), None),  # composite (multipart): cannot compare
        (_checked(sha256_base64(OTHER), kind="COMPOSITE"), None),
        (_checked(sha256_base64(OTHER), etag='"9a9a-2"'), None),  # multipart, type not reported
    ],
)
def test_content_is_proven_only_by_a_full_object_checksum(
    existing: ExistingObject, verdict: bool | None
) -> None:
    assert existing.content_matches(DIGEST) is verdict
    assert existing.content_matches(DIGEST, size=11) is False  # a different size is proof enough


def test_metadata_is_ascii_and_drops_missing_values() -> None:
    assert s3_metadata({"model": "flux-2-dev", "seed": 42, "prompt-sha256": None, "x": "caf\u00e9\n"}) == {
        "model": "flux-2-dev",
        "seed": "42",
        "x": "caf%C3%A9%0A",
    }


# -- manifest ---------------------------------------------------------------------------------------


def _record(generation_id: str, ok: bool, action: str, **result: Any) -> dict[str, Any]:
    check = ImageCheck(
        ok=ok, problems=[] if ok else ["is 1x1, expected 2x2"], width=1, height=1, format="png"
    )
    return image_record(
        {**RESULT, "generation_id": generation_id, "prompt": "p", **result},
        s3_key=f"p/{generation_id}.png",
        s3_uri=f"s3://b/p/{generation_id}.png",
        s3_prefix="p",
        sha256="0" * 64,
        size_bytes=2048,
        content_type="image/png",
        check=check,
        action=action,
    )


def _manifest(*records: dict[str, Any]) -> bytes:
    document = build_manifest(
        list(records), bucket="b", prefix="p", run_id="r", checks=CheckSettings(), contact_sheet=None
    )
    return manifest_bytes(document)


def test_manifest_describes_storage_not_the_try() -> None:
    def manifest(action: str) -> bytes:
        return _manifest(_record("g1", True, action), _record("g2", False, action))

    first, rerun = manifest("stored"), manifest("skipped")
    assert first == rerun  # so a re-run finds the stored manifest unchanged
    document = json.loads(first)
    assert document["count"] == 2 and document["total_bytes"] == 4096
    assert document["checks"]["passed"] == 1 and document["checks"]["failed"] == 1
    assert document["checks"]["failures"] == [
        {"generation_id": "g2", "s3_key": "p/g2.png", "problems": ["is 1x1, expected 2x2"]}
    ]
    image = document["images"][0]
    assert image["result_url"] == RESULT["result_url"] and image["prompt"] == "p"
    assert "action" not in image and image["checks"]["ok"] is True


# -- signed URLs and the result shape ---------------------------------------------------------------

SIGNED = "https://files.example/files/g1/image-0.png?expires=1767225600&sig=c2VjcmV0LXNpZ25hdHVyZQ"
PRESIGNED = "https://b.s3.amazonaws.com/in.png?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=f00d"


def test_url_queries_are_stripped_from_urls_only() -> None:
    assert strip_query(SIGNED) == "https://files.example/files/g1/image-0.png"
    assert strip_query("https://user:pw@host/x.png?sig=1#f") == "https://host/x.png"
    assert strip_query("not a url?x=1") == "not a url?x=1"
    value = {
        "result_url": SIGNED,
        "parameters": {"input_image": [PRESIGNED], "prompt": f"like {SIGNED} but blue"},
        "seed": 3,
    }
    assert strip_url_queries(value) == {
        "result_url": "https://files.example/files/g1/image-0.png",
        "parameters": {
            "input_image": ["https://b.s3.amazonaws.com/in.png"],
            "prompt": f"like {SIGNED} but blue",  # free text stays as written
        },
        "seed": 3,
    }
    assert redact_text(f"HTTP 500 (GET {SIGNED}): upstream said <{PRESIGNED}>") == (
        "HTTP 500 (GET https://files.example/files/g1/image-0.png): upstream said "
        "<https://b.s3.amazonaws.com/in.png>"
    )


def test_records_and_manifests_keep_no_signed_query() -> None:
    record = _record(
        "g1", True, "stored", result_url=SIGNED, parameters={"input_image": PRESIGNED}, url=SIGNED
    )
    assert record["result_url"] == record["url"] == "https://files.example/files/g1/image-0.png"
    manifest = _manifest(record).decode()
    for secret in ("sig=", "expires=", "X-Amz-Signature", "X-Amz-Credential", "?"):
        assert secret not in manifest and secret not in json.dumps(record)


def test_only_succeeded_images_and_clips_with_an_id_can_be_stored_and_refusals_show_no_signed_query() -> None:
    assert check_result({"generation_id": "g1", "media_type": "image"})["generation_id"] == "g1"
    with pytest.raises(OxenValidationError, match="status 'failed'"):
        check_result({**RESULT, "status": "failed"})
    assert check_result({**RESULT, "media_type": "image"})["media_type"] == "image"
    assert check_result({**RESULT, "media_type": "video"})["media_type"] == "video"
    for media_type in ("audio", None):  # a result without one is refused too (no shape left without it)
        with pytest.raises(
            OxenValidationError, match=rf"media_type {media_type!r}.*images and video clips only"
        ):
            check_result({**RESULT, "media_type": media_type})
    with pytest.raises(OxenValidationError, match="no generation_id") as info:
        check_result({"status": "succeeded", "result_url": SIGNED})
    assert "sig=" not in str(info.value)
