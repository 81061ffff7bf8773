"""Fixtures for the S3 transfer: a real moto S3 server on loopback, an AWS connection, call counting."""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import FileServer, connection_json, moto_s3_client, moto_s3_server, png_bytes

BUCKET_PREFIX = "oxen-transfer-test"


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def fake_oxen(file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> FileServer:
    """A loopback stand-in for Oxen serving result files a test chose (``FileServer.add_result``),
    emptied for each test; ``oxen_default`` points at it."""
    file_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", connection_json(file_server.url))
    return file_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


def aws_connection_json(endpoint: str) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )


@pytest.fixture
def aws_conn(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``aws_default`` points at the moto server (and nothing from the real environment leaks in)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(moto_endpoint))
    _share_s3_clients(monkeypatch)
    return moto_endpoint


_S3_CLIENTS: dict[tuple[str, ...], Any] = {}


def _share_s3_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every S3Hook builds its boto3 client afresh (botocore's models and Airflow's user agent:
    about half a second of CPU), and the transfer builds a hook per run. Here the hooks of one
    connection and client settings share one client: what they send is unchanged. Each client
    reports its calls to the running test's ``s3_calls`` (if it asked for one)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    original = S3Hook.get_conn

    def get_conn(self: S3Hook) -> Any:
        conn = os.environ.get(f"AIRFLOW_CONN_{str(self.aws_conn_id).upper()}", "")
        key = (str(self.aws_conn_id), conn, *map(repr, (self._region_name, self._config, self._verify)))
        if key not in _S3_CLIENTS:
            _S3_CLIENTS[key] = client = original(self)
            for operation in _COUNTED_OPERATIONS:

                def handler(params: dict[str, Any], _op: str = operation, **_: Any) -> None:
                    for calls in _COUNTING:
                        calls.record(_op, params)

                client.meta.events.register(f"provide-client-params.s3.{operation}", handler)
        return _S3_CLIENTS[key]

    monkeypatch.setattr(S3Hook, "get_conn", get_conn)


@pytest.fixture
def s3_client(aws_conn: str) -> Any:
    return _client(aws_conn)


@functools.cache
def _client(endpoint: str) -> Any:
    return moto_s3_client(endpoint)  # one per server: loading boto3's S3 model costs ~0.3 s a client


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh bucket per test (moto keeps state for the whole session)."""
    name = f"{BUCKET_PREFIX}-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


class S3Calls:
    """Counts S3 API calls made through any S3Hook client (upload calls included)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.keys: dict[str, list[str]] = {}
        self.params: list[tuple[str, dict[str, Any]]] = []  # each call's operation and parameters

    def record(self, operation: str, params: dict[str, Any]) -> None:
        self.counts[operation] += 1
        self.keys.setdefault(operation, []).append(str(params.get("Key")))
        self.params.append((operation, params))

    @property
    def uploads(self) -> int:
        return self.counts["PutObject"] + self.counts["CreateMultipartUpload"]

    @property
    def changes(self) -> int:
        """Requests that write or delete anything."""
        return (
            self.uploads
            + self.counts["CopyObject"]
            + self.counts["DeleteObject"]
            + self.counts["DeleteObjects"]
        )

    def reset(self) -> None:
        self.counts.clear()
        self.keys.clear()
        self.params.clear()


_COUNTED_OPERATIONS = (
    "PutObject",
    "CreateMultipartUpload",
    "GetObject",
    "HeadObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
)


_COUNTING: list[S3Calls] = []  # the running test's counter (clients outlive tests)


@pytest.fixture
def s3_calls(aws_conn: str) -> Iterator[S3Calls]:
    _COUNTING[:] = [S3Calls()]
    yield _COUNTING[0]
    _COUNTING.clear()


@pytest.fixture
def key_visual(s3_client: Any, bucket: str) -> str:
    """An approved image in a private bucket, as the S3 transfer left it (and a draft beside it)."""
    data = png_bytes((320, 180), (200, 120, 40))
    s3_client.put_object(Bucket=bucket, Key="approved/key-visual.png", Body=data)
    s3_client.put_object(Bucket=bucket, Key="drafts/other.png", Body=data)
    return f"s3://{bucket}/approved/key-visual.png"
