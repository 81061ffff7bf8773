"""The S3 side of the transfer: look at a key, decide whether to write, stream uploads and reads.

Idempotency lives in :func:`plan_write`: every object the transfer writes carries its own
sha256 in its metadata, so a re-run compares checksums with one HEAD request and uploads
nothing that is already there.
"""

from __future__ import annotations

import enum
import hashlib
import io
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_oxen.exceptions import OxenError
from airflow_provider_oxen.transfers.spool import Spool

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

SHA256_META = "sha256"
_READ_CHUNK = 1024 * 1024
# Metadata travels as HTTP headers: ASCII only. Everything printable but '%' is kept as is.
_META_SAFE = "".join(sorted(set(string.punctuation + " ") - {"%"}))


class KeyConflictError(OxenError):
    """The key holds a different object that this transfer does not own, and ``replace`` is off."""


class WriteAction(str, enum.Enum):
    """What happened to one object (the ``action`` of a record and of the task log line)."""

    STORED = "stored"
    SKIPPED = "skipped"
    REPLACED = "replaced"


@dataclass(frozen=True)
class ExistingObject:
    """What a HEAD request says about an object already at the key."""

    size: int
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.metadata.get(SHA256_META)


def s3_metadata(values: Mapping[str, object]) -> dict[str, str]:
    """User metadata from ``values``: ``None`` dropped, everything else as ASCII-safe text."""
    return {name: quote(str(value), safe=_META_SAFE) for name, value in values.items() if value is not None}


def plan_write(
    existing: ExistingObject | None, sha256: str, *, owner: tuple[str, str], replace: bool, uri: str
) -> WriteAction:
    """Decide what to do at a key given what is there (raises KeyConflictError when it must not write).

    Same checksum: nothing to do. Otherwise an object carrying our ``owner`` metadata (the same
    generation id, or the same run's manifest) is ours to rewrite; anything else only with
    ``replace=True``, so a key template that collides with unrelated data fails loudly.
    """
    if existing is None:
        return WriteAction.STORED
    if existing.sha256 == sha256:
        return WriteAction.SKIPPED
    name, value = owner
    if replace or existing.metadata.get(name) == value:
        return WriteAction.REPLACED
    raise KeyConflictError(
        f"{uri} already holds a different object (sha256 {existing.sha256 or 'unknown'}, "
        f"{name} {existing.metadata.get(name) or 'unset'}); pass replace=True to overwrite it, "
        "or change the key template."
    )


class S3ObjectStore:
    """One bucket through the amazon provider's :class:`S3Hook` (its boto3 client and settings)."""

    def __init__(self, hook: S3Hook, bucket: str) -> None:
        self.hook = hook
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def head(self, key: str) -> ExistingObject | None:
        response = self.hook.head_object(key, self.bucket)
        if response is None:
            return None
        metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        return ExistingObject(
            size=int(response.get("ContentLength") or 0),
            content_type=response.get("ContentType"),
            metadata=metadata,
        )

    def upload(self, source: Spool | bytes, key: str, *, content_type: str, metadata: dict[str, str]) -> None:
        """Upload ``source`` with its Content-Type and metadata, streaming it.

        ``S3Hook.load_file_obj`` takes extra upload arguments only from the hook's constructor,
        so per-object Content-Type and metadata go through the hook's own boto3 client, with
        the hook's ``extra_args`` (e.g. encryption settings) and transfer configuration kept.
        A spool on disk is uploaded by path, which boto3 streams part by part.
        """
        client: Any = self.hook.get_conn()
        extra = {**self.hook.extra_args, "ContentType": content_type, "Metadata": metadata}
        config = self.hook.transfer_config
        if isinstance(source, bytes):
            client.upload_fileobj(io.BytesIO(source), self.bucket, key, ExtraArgs=extra, Config=config)
        elif source.path is not None:
            client.upload_file(source.path, self.bucket, key, ExtraArgs=extra, Config=config)
        else:
            source.seek(0)
            client.upload_fileobj(source, self.bucket, key, ExtraArgs=extra, Config=config)
        self._record_lineage(key)

    def read_into(self, key: str, spool: Spool) -> tuple[int, str]:
        """Stream the object at ``key`` into ``spool``; returns its size and sha256."""
        spool.reset()
        response = self.hook.get_conn().get_object(Bucket=self.bucket, Key=key)
        spool.expect(response.get("ContentLength"))
        body = response["Body"]
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                spool.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        spool.flush()
        return size, digest.hexdigest()

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, object],
        owner: tuple[str, str],
        replace: bool,
    ) -> tuple[WriteAction, str]:
        """Write a small generated artifact (manifest, contact sheet) unless it is already there."""
        sha256 = hashlib.sha256(data).hexdigest()
        action = plan_write(self.head(key), sha256, owner=owner, replace=replace, uri=self.uri(key))
        if action is not WriteAction.SKIPPED:
            self.upload(
                data,
                key,
                content_type=content_type,
                metadata=s3_metadata({**metadata, owner[0]: owner[1], SHA256_META: sha256}),
            )
        return action, sha256

    def _record_lineage(self, key: str) -> None:
        # What S3Hook.load_file_obj reports too, so OpenLineage sees the same outputs.
        try:
            from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
        except ImportError:  # pragma: no cover - older amazon provider stacks
            return
        get_hook_lineage_collector().add_output_asset(
            context=self.hook, scheme="s3", asset_kwargs={"bucket": self.bucket, "key": key}
        )
