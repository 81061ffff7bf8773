"""Result files from a loopback stand-in for Oxen (rows and signed files, ``FileServer.add_result``):
large enough for boto3 to upload in parts, cut off mid-stream, compressed past the download cap.

The S3 hook uses 5 MiB parts (S3's smallest), so files of a few MiB are uploaded in parts, as
8 MiB+ files are with boto3's defaults.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_oxen.exceptions import OxenDownloadRefusedError, OxenResultDownloadError
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from airflow_provider_oxen.transfers.store import S3ObjectStore
from tests.fixtures import FileServer, connection_json, png_bytes
from tests.transfers.conftest import S3Calls
from tests.transfers.helpers import image_result, list_keys, object_bytes, run_transfer, s3_operator

PART = 5 * 2**20
GENERATION = "gen-large-1"
KEY = f"campaigns/{GENERATION}.png"
MAX_BYTES = 1_000_000


@pytest.fixture
def hook(aws_conn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The operator's S3 hook, with 5 MiB parts past 5 MiB, for a requester-pays bucket."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(
        aws_conn_id="aws_default",
        transfer_config_args={"multipart_threshold": PART, "multipart_chunksize": PART},
        requester_pays=True,
    )
    monkeypatch.setattr(OxenGenerationToS3Operator, "s3_hook", lambda self: hook)
    return hook


@pytest.fixture
def large_png(fake_oxen: FileServer) -> tuple[dict[str, Any], bytes]:
    """A noise PNG of about 6.5 MiB (two parts), registered as a finished generation."""
    data = png_bytes((1500, 1500), None)
    assert len(data) > PART
    url = fake_oxen.add_result(GENERATION, data, "large.png", "image")
    return image_result(GENERATION, f"{url}?signature=fake", 1500), data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_file_uploaded_in_parts_keeps_the_hooks_extra_args_and_request_payer_and_a_rerun_skips_it(
    fake_oxen: FileServer,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, data = large_png
    monkeypatch.setattr(
        hook, "_extra_args", {"ServerSideEncryption": "AES256", "StorageClass": "STANDARD_IA"}
    )

    # Checks and the contact sheet on (they read the spool); the spool on disk: uploaded by path.
    [record] = run_transfer(s3_operator([result], bucket, spool_max_bytes=2**20))

    # Stored marked: Oxen's bytes keep their own hash beside the stored one.
    assert record["action"] == "stored" and record["oxen_sha256"] == _sha256(data)
    assert record["checks"]["ok"] is True and record["content_type"] == "image/png"
    assert _sha256(object_bytes(s3_client, bucket, KEY)) == record["sha256"] != record["oxen_sha256"]
    head = s3_client.head_object(Bucket=bucket, Key=KEY)
    assert head["ETag"].endswith('-2"')  # boto3's own multipart upload: a composite checksum
    assert head["Metadata"]["sha256"] == record["sha256"] and head["ContentType"] == "image/png"
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"
    # Every upload (the file by path, manifest and sheet from memory) has the hook's extra_args,
    # and every call the requester-pays hook's RequestPayer.
    uploads = [p for op, p in s3_calls.params if op in ("PutObject", "CreateMultipartUpload")]
    assert len(uploads) == 3 and {p["ServerSideEncryption"] for p in uploads} == {"AES256"}
    assert {p.get("RequestPayer") for _, p in s3_calls.params} == {"requester"}

    # S3's checksum cannot prove a multipart object: it is read back from S3 and hashed, not
    # downloaded from Oxen again, and nothing is written.
    s3_calls.reset()
    downloads = fake_oxen.count("/files/")
    [again] = run_transfer(s3_operator([result], bucket, checks=False, contact_sheet=False))
    assert again["action"] == "skipped" and again["sha256"] == record["sha256"]
    assert again["oxen_sha256"] == _sha256(data)
    assert fake_oxen.count("/files/") == downloads
    assert s3_calls.keys["GetObject"] == [KEY]
    assert KEY not in s3_calls.keys.get("PutObject", []) and s3_calls.counts["CreateMultipartUpload"] == 0
    assert {p.get("RequestPayer") for _, p in s3_calls.params} == {"requester"}  # HEAD and GET too
    # HEAD cannot tell (a composite checksum); reading back tells other bytes apart too.
    store = S3ObjectStore(hook, bucket)
    existing = store.head(KEY)
    assert existing is not None and existing.content_matches(record["sha256"], record["size_bytes"]) is None
    assert store.holds(KEY, existing, "0" * 64, record["size_bytes"]) is False


def test_a_download_that_breaks_off_is_read_again_from_the_start(
    fake_oxen: FileServer, hook: Any, large_png: tuple[dict[str, Any], bytes], s3_client: Any, bucket: str
) -> None:
    """As often as the connection's retries allow (3 here): past them the failure is typed and
    nothing is stored; a download that comes through whole in time is stored."""
    result, data = large_png

    def transfer(query: str) -> list[dict[str, Any]]:
        cut = {**result, "result_url": f"{result['result_url']}&{query}"}
        return run_transfer(s3_operator([cut], bucket, checks=False, contact_sheet=False))

    with pytest.raises(OxenResultDownloadError, match="kept breaking off") as raised:
        transfer(f"cut={PART + 12345}")
    assert raised.value.generation_id == GENERATION
    assert "signature" not in str(raised.value)
    assert fake_oxen.count("/files/") == 4  # the first try and 3 retries, each from the start
    assert list_keys(s3_client, bucket) == []

    [record] = transfer(f"cut={PART + 4321}&once=1")
    assert fake_oxen.count("/files/") == 4 + 2  # broke off once, then whole
    assert record["action"] == "stored" and record["oxen_sha256"] == _sha256(data)
    assert _sha256(object_bytes(s3_client, bucket, KEY)) == record["sha256"]


def test_a_compressed_body_that_decodes_past_the_download_cap_is_refused(
    tmp_path: Path,
    fake_oxen: FileServer,
    hook: Any,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few KB on the wire (under the cap by Content-Length) that decode to 8 MiB: the cap
    (the connection's ``download_max_bytes``) counts what lands in the spool."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OXEN_DEFAULT", connection_json(fake_oxen.url, download_max_bytes=MAX_BYTES)
    )
    url = fake_oxen.add_result("gen-bomb", bytes(8 * 2**20), "bomb.png", "image")
    result = image_result("gen-bomb", f"{url}?signature=fake&gzip=1", 64)

    with pytest.raises(OxenDownloadRefusedError, match=f"download_max_bytes limit of {MAX_BYTES}") as raised:
        run_transfer(s3_operator([result], bucket))

    assert "signature" not in str(raised.value)
    assert fake_oxen.count("/files/") == 1  # a refusal is final: not read again
    assert s3_calls.uploads == 0 and list_keys(s3_client, bucket) == []


def test_a_corrupt_image_is_stored_as_what_its_header_says(
    tmp_path: Path, fake_oxen: FileServer, s3_client: Any, bucket: str
) -> None:
    png = png_bytes((256, 256), None)
    # Cut mid-data, and served as ".bin" (application/octet-stream); the result asked for a JPEG.
    url = fake_oxen.add_result("gen-cut", png[: len(png) // 2], "cut.bin", "image")
    result = {**image_result("gen-cut", f"{url}?signature=test", 256), "output_format": "jpeg"}
    [record] = run_transfer(s3_operator([result], bucket, contact_sheet=False, spool_max_bytes=1024))

    assert record["content_type"] == "image/png"  # the header's word, not the server's or the request's
    assert s3_client.head_object(Bucket=bucket, Key=record["s3_key"])["ContentType"] == "image/png"
    problems = record["checks"]["problems"]
    assert any("corrupt or truncated" in p for p in problems), problems
    assert "format is png, expected jpeg" in problems
