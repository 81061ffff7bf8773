"""Input images for edit and image-to-video models: from stored records or ``s3://`` URIs to URLs.

Oxen fetches ``input_image`` itself, so it must be a URL Oxen can reach. Objects the S3
transfer stored are private: each is handed over as a presigned GET URL that expires (never
a public bucket). The signature is a credential, so it is sent to Oxen and nowhere else: the
ledger fingerprint, the results in XCom and the logs keep the URL without its query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.models import OxenModel

# A presigned input must outlive the generation's wait in the queue, which the task's timeout
# bounds (and nothing bounds when the task does not wait): at least this long.
MIN_INPUT_URL_EXPIRY = 6 * 3600
# The longest lifetime S3 allows a presigned URL (SigV4).
MAX_INPUT_URL_EXPIRY = 7 * 24 * 3600
FIELD = "input_image"


def url_expiry(timeout: float) -> int:
    """Seconds a presigned input URL lives, for a task that waits up to ``timeout`` seconds."""
    return int(min(max(timeout, MIN_INPUT_URL_EXPIRY), MAX_INPUT_URL_EXPIRY))


def input_sources(value: Any) -> list[str]:
    """``s3://`` URIs and URLs from what a DAG passes: one, a list, or transfer records."""
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    sources: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            source = item.get("s3_uri")  # a record returned by OxenGenerationToS3Operator
        else:
            source = str(item).strip() if item is not None else None
        if not source or not source.startswith(("s3://", "https://", "http://")):
            raise OxenValidationError(
                f"input_images must be s3:// URIs, URLs or records of the S3 transfer, got {item!r:.120}",
                field="input_images",
            )
        sources.append(source)
    return sources


def takes_several(model: OxenModel) -> bool | None:
    """Whether the model's ``input_image`` is an array (True), one URL (False), or unknown (None)."""
    schema = model.request_schema or {}
    prop = (schema.get("properties") or {}).get(FIELD)
    if not isinstance(prop, Mapping):
        return None
    kinds: set[str] = set()
    for option in [prop, *(prop.get("anyOf") or []), *(prop.get("oneOf") or [])]:
        kind = option.get("type") if isinstance(option, Mapping) else None
        kinds.update([kind] if isinstance(kind, str) else list(kind or []))
    if "array" in kinds:
        return True
    return False if kinds else None


def input_image_value(model: OxenModel, urls: Sequence[str]) -> str | list[str]:
    """``input_image`` as the model's schema wants it: one URL, or an array of them."""
    several = takes_several(model)
    if several:
        return list(urls)
    if len(urls) > 1:
        raise OxenValidationError(
            f"Model '{model.id}' takes one input_image, got {len(urls)}: map the task over them "
            "instead (e.g. .expand(input_images=store.output)).",
            field="input_images",
        )
    return urls[0]


def _allowed(source: str, prefixes: Sequence[str]) -> bool:
    """Whether ``source`` lies under one of ``prefixes`` (``s3://bucket`` or ``s3://bucket/prefix``)."""
    if any(segment in (".", "..") for segment in source[len("s3://") :].split("/")):
        return False  # a path a fetcher would normalise out of its prefix
    for prefix in prefixes:
        if not str(prefix).startswith("s3://"):
            raise OxenValidationError(
                f"allowed_input_prefixes takes s3://bucket/prefix entries, got {prefix!r}",
                field="allowed_input_prefixes",
            )
        if source.startswith(str(prefix).rstrip("/") + "/"):
            return True
    return False


def presign(
    sources: Sequence[str],
    *,
    aws_conn_id: str | None,
    expiry: int,
    allowed_prefixes: Sequence[str] | None = None,
) -> list[str]:
    """A URL Oxen can fetch for each source: ``s3://`` presigned for ``expiry`` seconds.

    Each ``s3://`` object is read (HEAD) first: one that is missing, or that the connection may
    not read, is refused here, before a generation is paid for that would fail fetching it.
    With ``allowed_prefixes``, an ``s3://`` source outside all of them is refused too.
    """
    s3_sources = [source for source in sources if source.startswith("s3://")]
    if not s3_sources:
        return list(sources)
    for source in s3_sources:
        if allowed_prefixes is not None and not _allowed(source, allowed_prefixes):
            raise OxenValidationError(
                f"input_images: {source} is outside this task's allowed_input_prefixes "
                f"({', '.join(map(str, allowed_prefixes)) or 'none'}); nothing was sent.",
                field="input_images",
            )
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    hook = S3Hook(aws_conn_id=aws_conn_id)
    client = hook.get_conn()
    urls = []
    for source in sources:
        if source.startswith("s3://"):
            bucket, key = S3Hook.parse_s3_url(source)
            try:
                client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                problem = (
                    "does not exist"
                    if code in ("404", "NoSuchKey", "NoSuchBucket")
                    else (f"cannot be read with the connection '{aws_conn_id}' ({code or exc})")
                )
                raise OxenValidationError(
                    f"input_images: {source} {problem}; nothing was sent.", field="input_images"
                ) from None
            url = hook.generate_presigned_url(
                client_method="get_object", params={"Bucket": bucket, "Key": key}, expires_in=expiry
            )
            if not url:
                raise OxenValidationError(f"Could not presign {source} for Oxen", field="input_images")
            urls.append(url)
        else:
            urls.append(source)
    return urls
