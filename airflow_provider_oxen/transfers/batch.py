"""Turn whatever XCom hands the transfer (result dicts, lists of them, generation ids, or that
as rendered text) into one flat list."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.redact import strip_url_queries

_SUCCEEDED = "succeeded"
# What this transfer stores (and checks, and thumbnails or takes a poster frame of).
_MEDIA_TYPES = ("image", "video")


def flatten_results(value: Any) -> list[Mapping[str, Any] | str]:
    """Flatten nested lists (any depth) of result dicts or generation ids, keeping their order."""
    if isinstance(value, str):
        value = _parse_text(value)
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable):
        raise OxenValidationError(
            f"results must be a list of result dicts or generation ids, got {type(value).__name__}",
            field="results",
        )
    flat: list[Mapping[str, Any] | str] = []
    for item in value:
        if isinstance(item, (Mapping, str)):
            flat.append(item)
        elif item is None:
            continue  # a mapped task instance that returned nothing
        else:
            flat.extend(flatten_results(item))
    return flat


def _parse_text(text: str) -> Any:
    """A rendered template: JSON, or a Python literal (what ``{{ ti.xcom_pull(...) }}`` renders to)."""
    stripped = text.strip()
    if not stripped:
        return []
    if not stripped.startswith(("[", "{")):
        return stripped  # a single generation id
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        raise OxenValidationError(
            "results is text that is neither JSON nor a Python literal: pass the generate task's "
            "output (e.g. results=generate.output) rather than a Jinja string",
            field="results",
        ) from None


def check_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``result`` if it is a succeeded image or video generation; OxenValidationError if not."""
    generation_id = result.get("generation_id")
    if not isinstance(generation_id, str) or not generation_id:
        # Shown without URL queries: a result_url's query is its signature.
        shown = strip_url_queries(dict(result))
        raise OxenValidationError(f"A result has no generation_id: {shown!r:.200}", field="results")
    status = result.get("status", _SUCCEEDED)
    if status != _SUCCEEDED:
        raise OxenValidationError(
            f"Result {generation_id} has status {status!r}: only succeeded generations can be stored",
            field="results",
        )
    media_type = result.get("media_type")
    if media_type not in _MEDIA_TYPES:
        raise OxenValidationError(
            f"Result {generation_id} is media_type {media_type!r}: this transfer stores (and checks) "
            "images and video clips only",
            field="results",
        )
    return dict(result)
