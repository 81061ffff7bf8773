"""The per-file records and the batch manifest (one JSON document per transfer run).

The manifest describes what is in S3, not what this try did (no ``action``, nothing
time-dependent), so a re-run serialises the same bytes and skips it like any other object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_oxen.media.checks import CheckSettings, ImageCheck, check_failed
from airflow_provider_oxen.media.video import VideoCheck
from airflow_provider_oxen.redact import strip_url_queries

MANIFEST_VERSION = 1
# Fields of a record that describe one try rather than the stored object.
PER_TRY_FIELDS = frozenset({"action", "url_refreshed", "poster_action"})
POSTER_FIELDS = ("poster_s3_key", "poster_s3_uri", "poster_sha256", "poster_size_bytes")


def image_record(
    result: Mapping[str, Any],
    *,
    s3_key: str,
    s3_uri: str,
    s3_prefix: str,
    sha256: str,
    oxen_sha256: str | None = None,
    size_bytes: int,
    content_type: str,
    check: ImageCheck | VideoCheck | None,
    action: str,
    url_refreshed: bool = False,
    poster: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every field of ``result`` (URL queries stripped) plus what was stored where, and the checks;
    ``poster``: a clip's :data:`POSTER_FIELDS` and ``poster_action``."""
    return {
        **strip_url_queries(dict(result)),
        "s3_key": s3_key,
        "s3_uri": s3_uri,
        # The transfer's prefix: the publish step moves nothing outside it.
        "s3_prefix": s3_prefix,
        "sha256": sha256,
        "oxen_sha256": oxen_sha256,
        "size_bytes": size_bytes,
        "content_type": content_type,
        "checks": check.to_dict() if check is not None else None,
        "action": action,
        "url_refreshed": url_refreshed,
        "provenance": dict(provenance) if provenance is not None else None,
        **(dict(poster) if poster is not None else {}),
    }


def checks_summary(records: Sequence[Mapping[str, Any]], settings: CheckSettings) -> dict[str, Any]:
    # Not checked: no checks, or ``ok: null`` (a clip stored without PyAV).
    checked = [
        r for r in records if isinstance(r.get("checks"), Mapping) and r["checks"].get("ok") is not None
    ]
    failed = [r for r in checked if check_failed(r)]
    return {
        "settings": settings.to_dict(),
        "passed": len(checked) - len(failed),
        "failed": len(failed),
        "not_checked": len(records) - len(checked),
        "failures": [
            {"generation_id": r["generation_id"], "s3_key": r["s3_key"], "problems": r["checks"]["problems"]}
            for r in failed
        ],
    }


def build_manifest(
    records: Sequence[Mapping[str, Any]],
    *,
    bucket: str,
    prefix: str,
    run_id: str,
    checks: CheckSettings,
    contact_sheet: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "bucket": bucket,
        "prefix": prefix,
        "count": len(records),
        "total_bytes": sum(int(r["size_bytes"]) for r in records),
        "checks": checks_summary(records, checks),
        "contact_sheet": dict(contact_sheet) if contact_sheet is not None else None,
        "images": [{k: v for k, v in r.items() if k not in PER_TRY_FIELDS} for r in records],
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, fixed indentation): equal manifests give equal bytes."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()
