"""Finding what an enqueue created when its answer was never recorded — or refusing to guess.

A try can die after ``POST /api/ai/queue`` left the machine and before the generation ids
were written to the ledger. The API has no idempotency key, so the only way to avoid paying
twice is to find those rows in the queue listing. Adopting the wrong rows is worse than
stopping: another task's generations would be waited on, collected and later cancelled. So
:func:`match_unrecorded` adopts rows only when they are provably this request's:

* same model, and enqueued inside a bounded window around the recorded send time;
* every parameter this request sent is present on the row with the same value (rows carry
  the request's parameters only in some API versions: without them nothing is provable);
* exactly as many such rows as the lost enqueue asked for, and no other candidate;
* the request sent a ``seed`` (the task's, or one drawn and recorded before sending): without
  one, another task's identical request makes rows that match just as well.

A row that contradicts the request (another prompt, seed or size) is not a candidate. When
no candidate exists in complete listings, nothing was created. Every other case is
ambiguous, and the caller stops and tells the user what to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_oxen.models import Generation
from airflow_provider_oxen.redact import strip_signature, strip_url_queries

# Rows enqueued this long before the recorded send time may still be its answer (clock skew).
SKEW = timedelta(seconds=120)
# ... and this long after it (the request's own time on the wire, then skew).
WINDOW = timedelta(seconds=300)

_MISSING = object()


@dataclass(frozen=True)
class RecoveryDecision:
    """``adopt`` is the ids to take over, or None when the case is ambiguous (stop)."""

    adopt: list[str] | None
    candidates: list[str] = field(default_factory=list)
    reason: str = ""


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _canonical(value: Any) -> str:
    # Presigned inputs are signed afresh on every try: compare them without their signatures.
    return json.dumps(strip_url_queries(value, strip_signature), sort_keys=True, default=str)


def row_value(row: Generation, name: str) -> Any:
    """What the row says about one request parameter, or ``_MISSING``."""
    if name == "prompt":
        return row.prompt if row.prompt is not None else _MISSING
    if row.parameters and name in row.parameters:
        return row.parameters[name]
    extra = row.model_extra or {}
    return extra.get(name, _MISSING)


def compare(row: Generation, sent: Mapping[str, Any]) -> str:
    """``"match"`` (every sent parameter present and equal), ``"unknown"`` or ``"conflict"``."""
    verdict = "match"
    for name, value in sent.items():
        seen = row_value(row, name)
        if seen is _MISSING:
            verdict = "unknown"
        elif _canonical(seen) != _canonical(value):
            return "conflict"
    return verdict


def match_unrecorded(
    rows: Iterable[Generation],
    *,
    model: str,
    sent: Mapping[str, Any],
    sent_at: str | None,
    missing: int,
    known_ids: Sequence[str],
    listings_complete: bool,
) -> RecoveryDecision:
    """Decide which rows (if any) an unrecorded enqueue of ``missing`` generations created."""
    start = _parse_time(sent_at)
    known = set(known_ids)
    candidates: list[Generation] = []
    for row in rows:
        if row.generation_id in known or (row.model_name not in (None, model)):
            continue
        enqueued = _parse_time(row.enqueued_at)
        if start is not None and enqueued is not None and not (start - SKEW <= enqueued <= start + WINDOW):
            continue
        if compare(row, sent) == "conflict":
            continue
        candidates.append(row)
    ids = [row.generation_id for row in candidates]
    if not candidates:
        if listings_complete:
            return RecoveryDecision([], [], "no row on Oxen matches the lost request: nothing was created")
        return RecoveryDecision(None, [], "the queue listing is incomplete, so absence proves nothing")
    provable = [
        row
        for row in candidates
        if compare(row, sent) == "match"
        and start is not None
        and row.model_name == model
        and _parse_time(row.enqueued_at) is not None
    ]
    if len(provable) < len(candidates):
        reason = (
            f"{len(candidates) - len(provable)} candidate row(s) do not show every parameter sent "
            "(or their model/time), so they cannot be proven to be this request's"
        )
    elif "seed" not in sent:
        reason = "the lost request sent no seed, so another task's identical request would look the same"
    elif len(candidates) == missing:
        return RecoveryDecision(ids, ids, f"{missing} row(s) carry every parameter sent, in the send window")
    else:
        reason = f"{len(candidates)} matching row(s) for {missing} lost generation(s)"
    return RecoveryDecision(None, ids, reason)
