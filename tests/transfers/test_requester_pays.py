"""A requester-pays hook's ``RequestPayer`` (and its ``extra_args``) reach the transfer's S3 calls."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_oxen.transfers.spool import Spool
from airflow_provider_oxen.transfers.store import S3ObjectStore


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            return {}

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


def test_every_upload_and_head_carries_request_payer(store: tuple[S3ObjectStore, RecordingClient]) -> None:
    s3, client = store
    s3.upload(b"bytes", "k", content_type="image/png", metadata={})
    with Spool(max_memory=4) as spool:  # on disk: uploaded by path
        spool.write(b"0123456789")
        s3.upload(spool, "k", content_type="image/png", metadata={})
    s3.head("k")

    for name in ("upload_fileobj", "upload_file"):
        kwargs = next(k for n, k in client.calls if n == name)
        assert kwargs["ExtraArgs"]["RequestPayer"] == "requester", name
        assert kwargs["ExtraArgs"]["ServerSideEncryption"] == "AES256", name
    head = next(k for n, k in client.calls if n == "head_object")
    assert head["RequestPayer"] == "requester"
