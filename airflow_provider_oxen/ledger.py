"""The enqueue ledger: which paid generations a task instance already started.

It lives in Airflow's task state store (``context["task_state_store"]``, Airflow ≥ 3.3, the
provider's minimum), which is scoped to (dag run, task, map index) and shared by every try
of that task, so it outlives a worker that died between enqueueing and deferring.

What a try does with it (see the operator):

* nothing recorded, or a succeeded try of an earlier run (``settled``, cleared since) → enqueue afresh;
* ``settled`` with ``results`` of this run and the same request → return them, enqueue nothing
  (Airflow failed the try after ``execute`` returned, e.g. pushing the XCom);
* ids recorded and not settled (crash, failure, timeout) → reuse every generation that is
  queued, processing or succeeded and enqueue only replacements for failed/cancelled ones;
* ``pending`` > 0 means a try died between sending an enqueue and recording its answer:
  the ids are recovered from the queue before anything is sent again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any, Protocol

from pydantic import BaseModel, Field

from airflow_provider_oxen.redact import strip_signature, strip_url_queries

log = logging.getLogger(__name__)

LEDGER_KEY = "oxen_generation_ledger"


class LedgerEntry(BaseModel):
    fingerprint: str
    generation_ids: list[str] = Field(default_factory=list)
    # Generations asked for by an enqueue whose answer was not recorded yet, and since when.
    pending: int = 0
    pending_since: str | None = None
    settled: bool = False
    # What the results report as asked for (parameters without URL signatures, media type), so
    # the resumed task need not read the model's schema again.
    sent: dict[str, Any] = Field(default_factory=dict)
    # The seed drawn for a request that set none, recorded before sending: it tells this
    # request's queue rows from another task's identical ones (see recovery.py).
    seed: int | None = None
    # What the settled try returned, and the ``max_tries`` of the run it returned it in: a
    # clear raises ``max_tries``, so only a retry within the same run gets these back.
    results: Any = None
    run_max_tries: int | None = None

    def mark_sending(self, count: int) -> None:
        self.pending = count
        self.pending_since = datetime.now(timezone.utc).isoformat()

    def clear_pending(self) -> None:
        """The enqueue in flight provably created nothing (a definite refusal)."""
        self.pending = 0
        self.pending_since = None

    def mark_received(self, generation_ids: list[str]) -> None:
        self.generation_ids.extend(generation_ids)
        self.pending = max(0, self.pending - len(generation_ids))
        if self.pending == 0:
            self.pending_since = None


def request_fingerprint(model: str, parameters: dict[str, Any], count: int) -> str:
    """Same request ⇔ same fingerprint; a changed prompt or parameter starts afresh.

    URLs count without their signatures: presigned inputs are signed afresh on every try.
    """
    unsigned = strip_url_queries(parameters, strip_signature)
    canonical = json.dumps({"model": model, "parameters": unsigned, "count": count}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _Store(Protocol):
    """Airflow's ``task_state_store``, or a :class:`MemoryStore`."""

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class MemoryStore:
    """For direct ``execute()`` calls outside a task (tests, scripts): no crash safety."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class GenerationLedger:
    def __init__(self, store: _Store) -> None:
        self._store = store
        # Only this try writes its ledger: what it last read or wrote is current, and each
        # round trip to the store costs the task's worker slot time.
        self._known: LedgerEntry | None = None

    @classmethod
    def for_context(cls, context: Any) -> GenerationLedger:
        store = context.get("task_state_store")
        if store is not None:
            return cls(store)
        log.warning("No task state store in this context: a crashed try could not be resumed.")
        return cls(MemoryStore())

    def load(self) -> LedgerEntry | None:
        raw = self._store.get(LEDGER_KEY)
        self._known = LedgerEntry.model_validate(raw) if raw else None
        return self._known.model_copy(deep=True) if self._known is not None else None

    def save(self, entry: LedgerEntry) -> None:
        self._store.set(LEDGER_KEY, entry.model_dump(mode="json"))
        self._known = entry.model_copy(deep=True)

    def assume(self, raw: Any) -> None:
        """Take ``raw`` (an entry as :meth:`carried` gave it) as current, without reading the store.

        The resumed task gets the entry its own try recorded before deferring through Airflow's
        ``next_kwargs``: only that try writes the ledger, so it is what the store holds, and the
        read (a round trip on the worker slot) is saved. Without one (``execute_complete`` called
        directly), the store is read as before.
        """
        if isinstance(raw, dict):
            self._known = LedgerEntry.model_validate(raw)

    def carried(self) -> dict[str, Any] | None:
        """The current entry as plain JSON, for the deferral's ``next_kwargs`` (see :meth:`assume`)."""
        return self._known.model_dump(mode="json") if self._known is not None else None

    def current(self) -> LedgerEntry | None:
        """The entry as this try last read or wrote it (read from the store only if neither)."""
        return self._known.model_copy(deep=True) if self._known is not None else self.load()

    def settle(self, results: Any = None, run_max_tries: int | None = None) -> None:
        """The try succeeded: keep what it returns, in case Airflow fails the try after all."""
        entry = self.current()
        if entry is not None:
            entry.settled, entry.results, entry.run_max_tries = True, results, run_max_tries
            self.save(entry)
