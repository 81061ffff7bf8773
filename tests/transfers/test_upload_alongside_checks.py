"""An image spooled to disk is uploaded while it is checked and thumbnailed (real moto S3, real files).

The checks only report (an image is stored whatever they find), and the Content-Type comes
from the image's header, which Pillow reads before any decoding: so the upload need not wait
for the full decode, which takes about as long as the upload for a large image.
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from airflow_provider_oxen.transfers.store import S3ObjectStore
from tests.fixtures import EmulatorControl, connection_json
from tests.transfers.helpers import fresh_url, generate, object_bytes, served_sha256, transfer_context


class Timeline:
    """Which thread uploaded, and whether the analysis saw the upload start before it finished."""

    def __init__(self) -> None:
        # Seconds an analysis waits for the upload to start (the sequential order never does).
        self.wait = 10.0
        self.upload_started = threading.Event()
        self.upload_threads: list[str] = []
        self.analysis_saw_upload: list[bool] = []
        self.analyses_done = 0


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch) -> Timeline:
    line = Timeline()
    upload, analyse = S3ObjectStore.upload, OxenGenerationToS3Operator._analyse

    def recording_upload(self: S3ObjectStore, source: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(source, bytes):  # the image (a spool), not the manifest
            line.upload_threads.append(threading.current_thread().name)
            line.upload_started.set()
        upload(self, source, *args, **kwargs)

    def waiting_analyse(self: OxenGenerationToS3Operator, *args: Any, **kwargs: Any) -> Any:
        line.analysis_saw_upload.append(line.upload_started.wait(line.wait))
        try:
            return analyse(self, *args, **kwargs)
        finally:
            line.analyses_done += 1

    monkeypatch.setattr(S3ObjectStore, "upload", recording_upload)
    monkeypatch.setattr(OxenGenerationToS3Operator, "_analyse", waiting_analyse)
    return line


def _store(results: Any, bucket: str, **kwargs: Any) -> list[dict[str, Any]]:
    operator = OxenGenerationToS3Operator(
        task_id="store", results=results, bucket=bucket, prefix="alongside", contact_sheet=False, **kwargs
    )
    return operator.execute(transfer_context())  # type: ignore[arg-type]


def test_an_image_on_disk_is_uploaded_while_it_is_checked(
    oxen: EmulatorControl, s3_client: Any, bucket: str, timeline: Timeline
) -> None:
    [result] = generate(1)
    # Spooled to disk past 1 KiB: what a large image does past the default 8 MiB.
    [record] = _store([result], bucket, spool_max_bytes=1024)

    assert timeline.analysis_saw_upload == [True]  # the decode ran while the upload was under way
    assert timeline.upload_threads == ["oxen-upload"]
    assert record["action"] == "stored" and record["checks"]["ok"] is True
    body = object_bytes(s3_client, bucket, record["s3_key"])
    assert (
        hashlib.sha256(body).hexdigest()
        == record["sha256"]
        == served_sha256(fresh_url(result["generation_id"]))
    )
    head = s3_client.head_object(Bucket=bucket, Key=record["s3_key"])
    assert head["ContentType"] == "image/jpeg" and len(body) == record["size_bytes"]


def test_an_image_in_memory_is_checked_first_then_uploaded(
    oxen: EmulatorControl, s3_client: Any, bucket: str, timeline: Timeline
) -> None:
    [result] = generate(1)
    timeline.wait = 0.5  # it will not start: no need to wait long to see that
    [record] = _store([result], bucket)  # well under the default 8 MiB spool: stays in memory

    # The in-memory spool is one file object (and boto3 closes what it uploads): one at a time.
    assert timeline.analysis_saw_upload == [False]
    assert timeline.upload_threads == [threading.main_thread().name]
    assert record["checks"]["ok"] is True
    assert s3_client.head_object(Bucket=bucket, Key=record["s3_key"])["ContentType"] == "image/jpeg"


def test_an_upload_that_fails_alongside_is_raised_once_the_checks_are_done(
    oxen: EmulatorControl, bucket: str, timeline: Timeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refused(RuntimeError):
        pass

    def refused_upload(self: S3ObjectStore, *args: Any, **kwargs: Any) -> None:
        timeline.upload_started.set()
        raise Refused("S3 said no")

    monkeypatch.setattr(S3ObjectStore, "upload", refused_upload)
    [result] = generate(1)
    with pytest.raises(Refused, match="S3 said no"):
        _store([result], bucket, spool_max_bytes=1024)
    assert timeline.analysis_saw_upload == [True] and timeline.analyses_done == 1


def test_a_corrupt_image_is_stored_as_what_its_header_says(
    tmp_path: Path, file_server: str, s3_client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OXEN_DEFAULT",
        connection_json(
            "http://127.0.0.1:9",
            download_allowed_hosts=["127.0.0.1"],
            download_allow_http_hosts=["127.0.0.1"],
        ),
    )
    png = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(png, "PNG")
    # Cut mid-data, and served as ".bin" (application/octet-stream); the result asked for a JPEG.
    (tmp_path / "cut.bin").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    result = {
        "generation_id": "gen-cut",
        "status": "succeeded",
        "model": "ideogram-v4",
        "prompt": "cut short",
        "result_url": f"{file_server}/cut.bin?signature=test",
        "output_format": "jpeg",
        "width": 256,
        "height": 256,
    }
    [record] = _store([result], bucket, spool_max_bytes=1024)

    assert record["content_type"] == "image/png"  # the header's word, not the server's or the request's
    assert s3_client.head_object(Bucket=bucket, Key=record["s3_key"])["ContentType"] == "image/png"
    problems = record["checks"]["problems"]
    assert any("corrupt or truncated" in p for p in problems), problems
    assert "format is png, expected jpeg" in problems
