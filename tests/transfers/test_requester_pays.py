"""A requester-pays hook's ``RequestPayer`` reaches every S3 call the transfer writes with."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_oxen.transfers.store import S3ObjectStore


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            return {"UploadId": "u1", "ETag": '"e"', "CopyObjectResult": {}}

        return call


@pytest.fixture
def store() -> tuple[S3ObjectStore, RecordingClient]:
    from boto3.s3.transfer import TransferConfig

    client = RecordingClient()
    hook = SimpleNamespace(
        get_conn=lambda: client,
        extra_args={"ServerSideEncryption": "AES256"},
        transfer_config=TransferConfig(),
        _requester_pays=True,
    )
    s3 = S3ObjectStore(hook, "bucket")  # type: ignore[arg-type]
    s3._record_lineage = lambda key: None  # type: ignore[method-assign]
    return s3, client


def test_every_write_carries_request_payer(
    store: tuple[S3ObjectStore, RecordingClient], tmp_path: Any
) -> None:
    s3, client = store
    path = tmp_path / "part.bin"
    path.write_bytes(b"x" * 16)

    s3.upload(b"bytes", "k", content_type="image/png", metadata={})
    upload = s3.start_multipart("k", content_type="image/png", metadata={})
    s3.upload_part("k", upload._upload_id, 1, str(path), 0, 16)
    s3.complete_multipart("k", upload._upload_id, [{"PartNumber": 1, "ETag": '"e"'}])
    s3.abort_multipart("k", upload._upload_id)
    s3.seal("k", '"e"', content_type="image/png", metadata={})
    upload.abort()

    upload_call = next(kwargs for name, kwargs in client.calls if name == "upload_fileobj")
    assert upload_call["ExtraArgs"]["RequestPayer"] == "requester"
    for name in (
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
        "abort_multipart_upload",
        "copy_object",
    ):
        kwargs = next(k for n, k in client.calls if n == name)
        assert kwargs.get("RequestPayer") == "requester", name
