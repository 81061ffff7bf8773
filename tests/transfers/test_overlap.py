"""A large result is uploaded while it downloads (multipart.py, ``upload_while_downloading=True``),
and every invariant still holds.

A loopback server stands in for Oxen (rows and signed files, ``video_helpers.FakeOxen``), here
also able to answer an expired URL, to pace a file (so that the overlap can be seen) and to cut
one off half way. The S3 hook uses 5 MiB parts (S3's smallest), so files of a few MiB are
multipart, as 8 MiB+ files are with boto3's defaults.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_oxen.transfers.fetch import ResultDownloadError
from airflow_provider_oxen.transfers.multipart import StreamingSpool
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from airflow_provider_oxen.transfers.spool import Spool
from airflow_provider_oxen.transfers.store import S3ObjectStore, StoredBytesMismatchError
from tests.transfers.conftest import S3Calls
from tests.transfers.helpers import object_bytes, transfer_context
from tests.transfers.video_helpers import FakeOxen, image_result, noise_png

PART = 5 * 2**20
GENERATION = "gen-large-1"
KEY = f"campaigns/{GENERATION}.png"


class PacedOxen(FakeOxen):
    """FakeOxen whose files can be expired (``?expired=1``: 403), paced (1 MiB blocks, a pause
    between them; when the last was sent is kept) or cut off (``?cut=<bytes>``; with
    ``&once=1`` only the first download of that URL is)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.pause = 0.0
        self.sent_at: float | None = None
        self.cut_once: set[str] = set()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        if not parts.path.startswith("/files/"):
            return super().handle(request)
        query = parse_qs(parts.query)
        if "expired" in query:
            self.requests["expired"] += 1
            return self._send(request, 403, b"expired", "text/plain")
        data = (self.directory / parts.path.rsplit("/", 1)[-1]).read_bytes()
        self.requests["file"] += 1
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        end = int(query["cut"][0]) if "cut" in query else len(data)
        if "once" in query:
            if request.path in self.cut_once:
                end = len(data)
            self.cut_once.add(request.path)
        for start in range(0, end, 2**20):
            request.wfile.write(data[start : min(start + 2**20, end)])
            time.sleep(self.pause)
        request.wfile.flush()
        self.sent_at = time.monotonic()
        if end < len(data):
            request.close_connection = True
        return None


@pytest.fixture
def oxen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PacedOxen]:
    with PacedOxen(tmp_path) as fake:
        monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", fake.connection_json())
        yield fake


@pytest.fixture
def hook(aws_conn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The operator's S3 hook, with 5 MiB parts past 5 MiB."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(
        aws_conn_id="aws_default",
        transfer_config_args={"multipart_threshold": PART, "multipart_chunksize": PART},
    )
    monkeypatch.setattr(OxenGenerationToS3Operator, "s3_hook", lambda self: hook)
    return hook


@pytest.fixture
def large_png(tmp_path: Path, oxen: PacedOxen) -> tuple[dict[str, Any], bytes]:
    """A noise PNG of about 12 MiB (three parts), registered as a finished generation."""
    data = noise_png(tmp_path / "large.png", 2048)
    assert len(data) > 2 * PART
    url = oxen.add(GENERATION, tmp_path / "large.png", media_type="image")
    return image_result(GENERATION, f"{url}?signature=fake", 2048), data


def _run(results: list[dict[str, Any]], bucket: str, **kwargs: Any) -> list[dict[str, Any]]:
    operator = OxenGenerationToS3Operator(
        task_id="store",
        results=results,
        bucket=bucket,
        prefix="campaigns",
        key_template="campaigns/{generation_id}.{ext}",
        **{"upload_while_downloading": True, **kwargs},
    )
    return operator.execute(transfer_context())  # type: ignore[arg-type]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_sealed(s3_client: Any, bucket: str, data: bytes) -> None:
    """Our bytes, our sha256 on record, and S3's full-object SHA-256 of them."""
    head = s3_client.head_object(Bucket=bucket, Key=KEY, ChecksumMode="ENABLED")
    assert object_bytes(s3_client, bucket, KEY) == data
    assert head["Metadata"]["sha256"] == _sha256(data)
    assert head["Metadata"]["generation-id"] == GENERATION
    assert head["ContentType"] == "image/png"
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert "-" not in head["ETag"]  # one object now, not a multipart one with a composite checksum


def _no_uploads_left(s3_client: Any, bucket: str) -> bool:
    return not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_large_first_store_is_uploaded_while_it_downloads_and_a_rerun_skips_it_unread(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
) -> None:
    result, data = large_png
    oxen.pause = 0.05  # about 0.6 s for the file: parts are seen going up before it ends
    part_times: list[float] = []
    hook.get_conn().meta.events.register(
        "before-call.s3.UploadPart", lambda **_: part_times.append(time.monotonic())
    )

    [record] = _run([result], bucket)  # checks and the contact sheet on: they read the spool

    assert record["action"] == "stored" and record["sha256"] == _sha256(data)
    assert record["checks"]["ok"] is True and record["content_type"] == "image/png"
    assert oxen.sent_at is not None and min(part_times) < oxen.sent_at
    assert s3_calls.counts["CreateMultipartUpload"] == 1 and s3_calls.counts["UploadPart"] == 3
    assert s3_calls.keys["CopyObject"] == [KEY]
    assert KEY not in s3_calls.keys.get("PutObject", [])
    _assert_sealed(s3_client, bucket, data)
    assert _no_uploads_left(s3_client, bucket)

    # S3's checksum proves the object from its HEAD: nothing downloaded, read back or written.
    s3_calls.reset()
    downloads = oxen.requests["file"]
    [again] = _run([result], bucket, checks=False, contact_sheet=False)
    assert again["action"] == "skipped" and again["sha256"] == _sha256(data)
    assert oxen.requests["file"] == downloads
    assert "GetObject" not in s3_calls.counts and "CopyObject" not in s3_calls.counts
    assert KEY not in s3_calls.keys.get("PutObject", [])


def test_a_download_that_keeps_breaking_off_aborts_every_upload_and_fails_typed(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
) -> None:
    result, _ = large_png
    cut = {**result, "result_url": f"{result['result_url']}&cut={2 * PART + 12345}"}

    with pytest.raises(ResultDownloadError, match="kept breaking off") as raised:
        _run([cut], bucket, checks=False, contact_sheet=False)

    assert raised.value.generation_id == GENERATION
    assert "signature" not in str(raised.value)
    # Read again from the start per the connection's retry policy (2 retries in the fixture),
    # each attempt's multipart upload aborted before the next one starts.
    attempts = oxen.requests["file"]
    assert attempts == 3
    assert s3_calls.counts["CreateMultipartUpload"] == attempts
    assert s3_calls.counts["AbortMultipartUpload"] == attempts
    assert _no_uploads_left(s3_client, bucket)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("overlap", [False, True], ids=["download-then-upload", "overlapped"])
def test_a_download_that_broke_off_once_is_read_again_and_stored_whole(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    overlap: bool,
) -> None:
    result, data = large_png
    cut = {**result, "result_url": f"{result['result_url']}&cut={PART + 4321}&once=1"}

    [record] = _run([cut], bucket, checks=False, contact_sheet=False, upload_while_downloading=overlap)

    assert oxen.requests["file"] == 2
    assert record["action"] == "stored" and record["sha256"] == _sha256(data)
    assert object_bytes(s3_client, bucket, KEY) == data
    assert _no_uploads_left(s3_client, bucket)


def test_an_expired_url_is_refreshed_and_the_fresh_download_is_uploaded_as_it_arrives(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
) -> None:
    result, data = large_png
    expired = {**result, "result_url": f"{result['result_url']}&expired=1"}

    [record] = _run([expired], bucket, checks=False, contact_sheet=False)

    assert record["url_refreshed"] is True and record["action"] == "stored"
    assert oxen.requests["expired"] == 1 and oxen.requests["row"] == 1 and oxen.requests["file"] == 1
    assert s3_calls.counts["CreateMultipartUpload"] == 1 and s3_calls.keys["CopyObject"] == [KEY]
    _assert_sealed(s3_client, bucket, data)


def test_a_download_started_again_drops_the_parts_already_uploaded(
    hook: Any, s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    """What fetch_result does on a refreshed URL: reset, then the whole file again."""
    stale, data = os.urandom(2 * PART), os.urandom(2 * PART + 777)
    store = S3ObjectStore(hook, bucket)
    metadata = {"generation-id": GENERATION}
    with (
        Spool(max_memory=2**20) as spool,
        StreamingSpool(spool, store, KEY, content_type="image/png", metadata=metadata, allowed=True) as sink,
    ):
        sink.reset()
        sink.expect(len(stale))
        sink.write(stale[: PART + 1])
        assert sink.streaming
        sink.reset()
        assert not sink.streaming and _no_uploads_left(s3_client, bucket)

        sink.expect(len(data))
        for start in range(0, len(data), 256 * 1024):
            sink.write(data[start : start + 256 * 1024])
        sink.flush()
        sink.save(content_type="image/png", metadata={**metadata, "sha256": _sha256(data)})

    _assert_sealed(s3_client, bucket, data)
    assert s3_calls.counts["AbortMultipartUpload"] == 1 and s3_calls.counts["CreateMultipartUpload"] == 2
    assert _no_uploads_left(s3_client, bucket)


def test_bytes_that_s3_received_differently_are_not_sealed_as_ours(
    hook: Any, s3_client: Any, bucket: str
) -> None:
    """The copy's full-object checksum must be the downloaded sha256: else the run fails."""
    data = os.urandom(PART + 1)
    store = S3ObjectStore(hook, bucket)
    with (
        Spool(max_memory=2**20) as spool,
        StreamingSpool(spool, store, KEY, content_type="image/png", metadata={}, allowed=True) as sink,
    ):
        sink.expect(len(data))
        sink.write(data)
        with pytest.raises(StoredBytesMismatchError, match="next run rewrites it"):
            sink.save(content_type="image/png", metadata={"sha256": "0" * 64})
    # The object carries a sha256 that S3's checksum disproves: a re-run replaces it (see below).
    head = store.head(KEY)
    assert head is not None and head.content_matches(head.sha256 or "") is False


def test_a_crash_between_completing_and_sealing_leaves_an_object_the_next_run_rewrites(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, data = large_png

    def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(S3ObjectStore, "seal", crash)
        with pytest.raises(SystemExit):
            _run([result], bucket, checks=False, contact_sheet=False)
    head = s3_client.head_object(Bucket=bucket, Key=KEY)
    assert head["Metadata"]["generation-id"] == GENERATION and "sha256" not in head["Metadata"]
    assert object_bytes(s3_client, bucket, KEY) == data and _no_uploads_left(s3_client, bucket)

    # Neither a conflict (our generation id) nor skipped (no sha256 on record to prove): rewritten.
    s3_calls.reset()
    [record] = _run([result], bucket, checks=False, contact_sheet=False)
    assert record["action"] == "replaced" and record["sha256"] == _sha256(data)
    assert object_bytes(s3_client, bucket, KEY) == data
    head = s3_client.head_object(Bucket=bucket, Key=KEY)
    assert head["Metadata"]["sha256"] == _sha256(data)
    # Over an existing object the sha256 is needed first: downloaded, then uploaded (no copy).
    assert "CopyObject" not in s3_calls.counts


def test_the_overlap_keeps_the_hooks_extra_args(
    oxen: PacedOxen,
    hook: Any,
    large_png: tuple[dict[str, Any], bytes],
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Encryption and the like (the hook's ``extra_args``) reach the upload and the sealing copy."""
    result, data = large_png
    seen: dict[str, list[dict[str, Any]]] = {}

    def keep(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.setdefault(model.name, []).append(dict(params))

    hook.get_conn().meta.events.register("provide-client-params.s3", keep)
    extra_args = {"ServerSideEncryption": "AES256", "StorageClass": "STANDARD_IA"}
    monkeypatch.setattr(hook, "_extra_args", extra_args)

    _run([result], bucket, checks=False, contact_sheet=False)

    [create], [copy] = seen["CreateMultipartUpload"], seen["CopyObject"]
    for params in (create, copy):
        assert params["ServerSideEncryption"] == "AES256" and params["StorageClass"] == "STANDARD_IA"
    assert all("StorageClass" not in p for p in seen["UploadPart"])
    head = s3_client.head_object(Bucket=bucket, Key=KEY)
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"
    _assert_sealed(s3_client, bucket, data)


def test_small_files_unknown_sizes_and_existing_keys_keep_the_download_then_upload_path(
    hook: Any, s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    store = S3ObjectStore(hook, bucket)
    for size, allowed in ((None, True), (PART - 1, True), (3 * PART, False)):
        with (
            Spool(max_memory=2**20) as spool,
            StreamingSpool(spool, store, KEY, content_type="image/png", metadata={}, allowed=allowed) as sink,
        ):
            sink.expect(size)
            sink.write(b"x" * 4096)
            assert not sink.streaming
    assert s3_calls.counts["CreateMultipartUpload"] == 0


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every part uploader is gone when a transfer ends, however it ended."""
    before = {t.ident for t in threading.enumerate()}
    yield
    started = [t.name for t in threading.enumerate() if t.ident not in before]
    assert not [name for name in started if name.startswith("oxen-part")]
