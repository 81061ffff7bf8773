"""The S3 side of the transfer: look at a key, decide whether to write, stream uploads and reads.

An object is skipped only when its *content* is proven to be the bytes at hand (S3's own
SHA-256 checksum, asked for on every upload, or reading it back), never on metadata alone:
metadata survives an overwrite (``put_object(..., Metadata=old_metadata)``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import io
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_oxen.exceptions import OxenKeyConflictError
from airflow_provider_oxen.transfers.spool import Spool

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

SHA256_META = "sha256"
# Which generation an image object holds: what makes it the transfer's own (and publishable).
GENERATION_ID_META = "generation-id"
CHECKSUM_ALGORITHM = "SHA256"
FULL_OBJECT = "FULL_OBJECT"
COMPOSITE = "COMPOSITE"
_READ_CHUNK = 1024 * 1024
# Metadata travels as HTTP headers: ASCII only. Everything printable but '%' is kept as is.
_META_SAFE = "".join(sorted(set(string.punctuation + " ") - {"%"}))
# A multipart upload's ETag and composite checksum end in "-<number of parts>".
_PARTS_SUFFIX = re.compile(r"-\d+$")


class WriteAction(str, enum.Enum):
    """What happened to one object (the ``action`` of a record and of the task log line)."""

    STORED = "stored"
    SKIPPED = "skipped"
    REPLACED = "replaced"


def sha256_base64(hex_digest: str) -> str | None:
    """A hex sha256 as S3 writes checksums (base64 of the digest); None if it is not hex."""
    try:
        return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")
    except (ValueError, binascii.Error):
        return None


@dataclass(frozen=True)
class ExistingObject:
    """What a HEAD request says about an object already at the key."""

    size: int
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    # S3's own checksum (``ChecksumMode="ENABLED"``): base64; a composite one ends in "-<parts>".
    checksum_sha256: str | None = None
    checksum_type: str | None = None
    etag: str | None = None

    @property
    def sha256(self) -> str | None:
        """The sha256 the object's metadata *claims* (anyone can write metadata)."""
        return self.metadata.get(SHA256_META)

    @property
    def full_object_checksum(self) -> str | None:
        """S3's SHA-256 of the whole object, or None (no SHA-256 checksum, or a per-part one)."""
        value = self.checksum_sha256
        if not value or self.checksum_type == COMPOSITE or _PARTS_SUFFIX.search(value):
            return None
        multipart = self.etag is not None and _PARTS_SUFFIX.search(self.etag.strip('"')) is not None
        if multipart and self.checksum_type != FULL_OBJECT:
            return None  # a multipart upload whose checksum type S3 did not say: assume composite
        return value

    def content_matches(self, sha256: str, size: int | None = None) -> bool | None:
        """Whether the object holds the bytes with this sha256 (and size); None: HEAD cannot tell."""
        if size is not None and size != self.size:
            return False
        checksum = self.full_object_checksum
        if checksum is None:
            return None
        return checksum == sha256_base64(sha256)

    def is_generation(self, generation_id: object) -> bool:
        """Whether the object's metadata says it holds generation ``generation_id`` (its file, or
        its clip's poster frame): what makes an object the transfer's own."""
        return bool(generation_id) and self.metadata.get(GENERATION_ID_META) == _meta_text(generation_id)


def _meta_text(value: object) -> str:
    return quote(str(value), safe=_META_SAFE)


def s3_metadata(values: Mapping[str, object]) -> dict[str, str]:
    """User metadata from ``values``: ``None`` dropped, everything else as ASCII-safe text."""
    return {name: _meta_text(value) for name, value in values.items() if value is not None}


def plan_write(
    existing: ExistingObject | None,
    *,
    same_content: bool,
    owner: tuple[str, str],
    replace: bool,
    uri: str,
) -> WriteAction:
    """Decide what to do at a key given what is there: an object is rewritten if it carries our
    ``owner`` metadata or ``replace`` is set; else OxenKeyConflictError."""
    if existing is None:
        return WriteAction.STORED
    if same_content:
        return WriteAction.SKIPPED
    name, value = owner
    if replace or existing.metadata.get(name) == value:
        return WriteAction.REPLACED
    raise OxenKeyConflictError(
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

    @property
    def _requester_pays(self) -> dict[str, str]:
        return {"RequestPayer": "requester"} if getattr(self.hook, "_requester_pays", False) else {}

    def head(self, key: str) -> ExistingObject | None:
        """HEAD with S3's checksum included (``S3Hook.head_object`` does not ask for it); None if absent."""
        from botocore.exceptions import ClientError  # the amazon extra

        client: Any = self.hook.get_conn()
        try:
            response = client.head_object(
                Bucket=self.bucket, Key=key, ChecksumMode="ENABLED", **self._requester_pays
            )
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        return ExistingObject(
            size=int(response.get("ContentLength") or 0),
            content_type=response.get("ContentType"),
            metadata=metadata,
            checksum_sha256=response.get("ChecksumSHA256"),
            checksum_type=response.get("ChecksumType"),
            etag=response.get("ETag"),
        )

    def holds(self, key: str, existing: ExistingObject, sha256: str, size: int | None = None) -> bool:
        """Whether the object at ``key`` is exactly these bytes: S3's checksum decides, else an
        object whose metadata claims this sha256 is read back and hashed."""
        verdict = existing.content_matches(sha256, size)
        if verdict is not None:
            return verdict
        if existing.sha256 != sha256:
            return False
        read_size, read_sha256 = self.read_into(key, None)
        return read_sha256 == sha256 and (size is None or read_size == size)

    def upload(self, source: Spool | bytes, key: str, *, content_type: str, metadata: dict[str, str]) -> None:
        """Upload ``source`` with its Content-Type, metadata and S3's SHA-256 checksum, streaming it.

        Through the hook's boto3 client (``S3Hook.load_file_obj`` takes extra arguments only from
        the hook's constructor), keeping its ``extra_args`` and transfer configuration; a spool
        on disk goes by path, which boto3 streams part by part.
        """
        client: Any = self.hook.get_conn()
        extra = {
            **self.hook.extra_args,
            **self._requester_pays,
            "ContentType": content_type,
            "Metadata": metadata,
            # S3 computes (and checks) it from the bytes: what a re-run compares, see holds().
            "ChecksumAlgorithm": CHECKSUM_ALGORITHM,
        }
        config = self.hook.transfer_config
        if isinstance(source, bytes):
            client.upload_fileobj(io.BytesIO(source), self.bucket, key, ExtraArgs=extra, Config=config)
        elif source.path is not None:
            client.upload_file(source.path, self.bucket, key, ExtraArgs=extra, Config=config)
        else:
            source.seek(0)
            client.upload_fileobj(source, self.bucket, key, ExtraArgs=extra, Config=config)
        self._record_lineage(key)

    def read_into(self, key: str, spool: Spool | None) -> tuple[int, str]:
        """Stream the object at ``key`` into ``spool`` (or only hash it); returns its size and sha256."""
        if spool is not None:
            spool.reset()
        client: Any = self.hook.get_conn()
        response = client.get_object(Bucket=self.bucket, Key=key, **self._requester_pays)
        body = response["Body"]
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                if spool is not None:
                    spool.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return size, digest.hexdigest()

    def copy(self, source_key: str, target_key: str, *, source_etag: str | None = None) -> None:
        """Server-side copy within the bucket, metadata kept; ``source_etag``: only if still that object."""
        extra: dict[str, Any] = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM}
        if source_etag:
            extra["CopySourceIfMatch"] = source_etag
        self.hook.copy_object(
            source_key, target_key, source_bucket_name=self.bucket, dest_bucket_name=self.bucket, **extra
        )

    def delete(self, key: str) -> None:
        self.hook.delete_objects(self.bucket, [key])

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
        """Write a small generated artifact (manifest, contact sheet) unless it is provably there."""
        sha256 = hashlib.sha256(data).hexdigest()
        existing = self.head(key)
        same = existing is not None and self.holds(key, existing, sha256, len(data))
        # The owner's value as its metadata holds it (see s3_metadata).
        mine = (owner[0], _meta_text(owner[1]))
        action = plan_write(existing, same_content=same, owner=mine, replace=replace, uri=self.uri(key))
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
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

        get_hook_lineage_collector().add_output_asset(
            context=self.hook, scheme="s3", asset_kwargs={"bucket": self.bucket, "key": key}
        )
