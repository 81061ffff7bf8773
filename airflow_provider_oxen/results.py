"""What a finished wait hands back: the trigger payload and the typed results pushed to XCom.

The trigger and the in-worker wait produce the same payload (plain JSON, because it crosses
the triggerer → database → worker boundary; :func:`wait_payload`);
:func:`generations_from_payload` turns it back into rows or raises the typed error the task
should fail with, and :func:`build_result` makes each row the result dict pushed to XCom.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from airflow_provider_oxen.exceptions import (
    OxenError,
    OxenGenerationCancelledError,
    OxenGenerationFailedError,
    OxenGenerationTimeoutError,
    OxenInputFetchError,
    OxenUnrecoverableError,
)
from airflow_provider_oxen.models import PRESET_DIMENSIONS, Generation, GenerationStatus
from airflow_provider_oxen.redact import strip_query, strip_url_queries

# A failure text that starts with the input parameter's name ("input_image[1]: could not fetch
# https://…: HTTP 404") blames the input, which a retry would send again.
_INPUT_FAILURE = re.compile(r"^\s*input_(image|video)\b")


def wait_payload(
    order: Iterable[str],
    rows: Mapping[str, Generation],
    *,
    timed_out: bool = False,
    timeout: float | None = None,
    error: str | None = None,
    unrecoverable: bool = False,
) -> dict[str, Any]:
    """The JSON payload describing a finished (or abandoned) wait, in the order ids were given.

    Its ``status`` is ``success``, ``failed``, ``cancelled``, ``timeout`` or ``error``.
    ``unrecoverable`` marks an ``error`` that no retry can fix (e.g. the API key was refused),
    so the task fails without spending its retries.
    """
    ids = list(order)
    # The payload is logged by the triggerer ("Trigger fired event") and stored in the metadata
    # database: result URLs lose their signed query here (the worker re-reads a fresh one).
    generations = [
        strip_url_queries(rows[i].model_dump(mode="json", exclude_none=True)) for i in ids if i in rows
    ]
    failed = [i for i in ids if i in rows and rows[i].status is GenerationStatus.FAILED]
    cancelled = [i for i in ids if i in rows and rows[i].status is GenerationStatus.CANCELLED]
    pending = [i for i in ids if i not in rows or not rows[i].status.is_terminal]
    status, message = "success", f"{len(ids)} generation(s) succeeded"
    if error is not None:
        status, message = "error", error
    elif failed:
        first = rows[failed[0]]
        status = "failed"
        message = (
            f"{len(failed)} of {len(ids)} generation(s) failed; {first.generation_id}: {first.error_message}"
        )
    elif timed_out or pending:
        status = "timeout"
        message = f"{len(pending)} of {len(ids)} generation(s) unfinished after {timeout or 0:g} s"
    elif cancelled:
        status = "cancelled"
        message = f"{len(cancelled)} of {len(ids)} generation(s) cancelled"
    return {
        "status": status,
        "message": message,
        "generation_ids": ids,
        "generations": generations,
        "pending": pending,
        "timeout": timeout,
        "unrecoverable": unrecoverable,
    }


def generations_from_payload(payload: Mapping[str, Any]) -> list[Generation]:
    """The rows of a successful wait, else the typed error the task fails with."""
    status = payload.get("status", "error")
    rows = [Generation.model_validate(row) for row in payload.get("generations") or []]
    if status == "success":
        return rows
    message = str(payload.get("message") or status)
    if status == "failed":
        failed = [row for row in rows if row.status is GenerationStatus.FAILED]
        blamed = [row for row in failed if _INPUT_FAILURE.match(row.error_message or "")]
        first = (blamed or failed)[0]
        kind = OxenInputFetchError if blamed else OxenGenerationFailedError
        error = kind(first.generation_id, first.error_message)
        if len(failed) > 1:
            error.args = (f"{error} ({message})",)
        raise error
    if status == "cancelled":
        cancelled = [row for row in rows if row.status is GenerationStatus.CANCELLED]
        raise OxenGenerationCancelledError(cancelled[0].generation_id if cancelled else "?")
    if status == "timeout":
        pending = payload.get("pending") or ["?"]
        error_t = OxenGenerationTimeoutError(pending[0], float(payload.get("timeout") or 0))
        error_t.args = (f"{error_t} ({message}; unfinished ones were cancelled)",)
        raise error_t
    if payload.get("unrecoverable"):
        raise OxenUnrecoverableError(f"Waiting for Oxen generations failed: {message}")
    raise OxenError(f"Waiting for Oxen generations failed: {message}")


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
            start.replace("Z", "+00:00")
        )
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def _dimensions(image_size: Any) -> tuple[int | None, int | None]:
    if isinstance(image_size, dict):
        return image_size.get("width"), image_size.get("height")
    if isinstance(image_size, str) and image_size in PRESET_DIMENSIONS:
        return PRESET_DIMENSIONS[image_size]
    return None, None


def build_result(
    row: Generation,
    *,
    model: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    media_type: str | None = None,
    input_uris: Iterable[str] | None = None,
) -> dict[str, Any]:
    """One generated image or clip as pushed to XCom (plain JSON, fields in docs/operator.md): what
    was asked for (``parameters``) merged with what the API reports (``row``), no signed query.
    ``input_uris``: the inputs as the DAG gave them; when not given, the ``input_image`` sent."""
    # Presigned inputs (``input_image``) keep no signature in XCom either.
    params = strip_url_queries(dict(parameters if parameters is not None else (row.parameters or {})))
    width, height = _dimensions(params.get("image_size"))
    output_format = params.get("output_format")
    if output_format is None and row.result_url:
        suffix = row.result_url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        output_format = suffix if suffix in ("jpeg", "jpg", "png", "webp", "mp4", "webm", "mov") else None
    seed = params.get("seed")
    return {
        "generation_id": row.generation_id,
        "model": row.model_name or model,
        "media_type": row.media_type or media_type or "image",
        "prompt": params.get("prompt", row.prompt),
        "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        "parameters": params,
        "input_uris": [strip_query(u) for u in input_uris] if input_uris is not None else sent_inputs(params),
        "status": row.status.value,
        "result_url": strip_query(row.result_url) if row.result_url else None,
        "output_format": output_format,
        "width": width,
        "height": height,
        "cost": row.cost,
        "enqueued_at": row.enqueued_at,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
        "queue_seconds": _seconds_between(row.enqueued_at, row.started_at),
        "render_seconds": _seconds_between(row.started_at, row.completed_at),
    }


def reported_cost(results: Sequence[Mapping[str, Any]]) -> tuple[Decimal, int]:
    """The sum of the costs Oxen reported for ``results`` (exact decimals), and how many it did not report."""
    costs = [Decimal(str(r["cost"])) for r in results if r.get("cost") is not None]
    return sum(costs, Decimal(0)), len(results) - len(costs)


def sent_inputs(parameters: Mapping[str, Any]) -> list[str]:
    """The input image URL(s) a request was sent (its ``input_image``: one, or a list)."""
    value = parameters.get("input_image")
    values = value if isinstance(value, list) else [value]
    return [strip_query(str(v)) for v in values if v]


def generation_ids(value: Any) -> list[str]:
    """The generation ids in what a generate task returns (result dicts, or bare ids), or in one id."""
    items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return [
        str(item["generation_id"]) if isinstance(item, Mapping) else str(item)
        for item in items
        if not isinstance(item, Mapping) or item.get("generation_id")
    ]
