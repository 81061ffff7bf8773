"""Fault injection: a list of armed faults, each consumed by the requests/generations/streams it hits."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

REQUEST_FAULTS = frozenset({"status", "delay", "drop"})
GENERATION_FAULTS = frozenset({"generation_failure", "stall_generation"})


class Fault(BaseModel):
    """One armed fault as ``POST /_emulator/faults`` takes it; ``count`` is how many more hits it has
    (-1: unlimited). Request faults match ``method`` and ``path`` (a regex searched in the decoded
    path), generation faults ``model`` (None: any)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    type: Literal["status", "delay", "drop", "generation_failure", "stall_generation", "drop_events"]
    count: int = 1
    method: str | None = None
    path: re.Pattern[str] | None = None
    model: str | None = None
    status: int = Field(503, ge=100, le=599)
    # Without a body the answer is the documented envelope; a string is sent as plain text.
    body: Any = None
    retry_after: int | str | None = None
    seconds: float = Field(1.0, ge=0)
    after_processing: bool = False
    error_message: str = Field("Generation failed: upstream provider error (injected)", min_length=1)
    # drop_events: how many completion events a stream still carries before it is cut.
    after_events: int = Field(0, ge=0)
    id: int = 0
    hits: int = 0

    @field_validator("count")
    @classmethod
    def _positive_or_forever(cls, count: int) -> int:
        if count < 1 and count != -1:
            raise ValueError("count must be a positive integer or -1 (forever)")
        return count

    def matches_request(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or self.path.search(path) is not None


class FaultBook:
    """The armed faults, in the order they were added; the first match wins and is consumed."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, data: Any) -> Fault:
        """Arm a fault from its JSON description (raises pydantic's ValidationError)."""
        fault = Fault.model_validate(data)
        fault.id, self._next_id = self._next_id, self._next_id + 1
        self.faults.append(fault)
        return fault

    def consume(self, fault: Fault) -> None:
        """Record one hit; a fault with no hits left disarms itself."""
        fault.hits += 1
        if fault.count > 0:
            fault.count -= 1
            if fault.count == 0 and fault in self.faults:
                self.faults.remove(fault)

    def take(self, kinds: frozenset[str], method: str = "", path: str = "", model: str = "") -> Fault | None:
        """Consume and return the first fault of ``kinds`` matching the request (or the model)."""
        for fault in self.faults:
            if fault.type not in kinds:
                continue
            if fault.type in REQUEST_FAULTS and not fault.matches_request(method, path):
                continue
            if fault.model not in (None, model) and fault.type in GENERATION_FAULTS:
                continue
            self.consume(fault)
            return fault
        return None
