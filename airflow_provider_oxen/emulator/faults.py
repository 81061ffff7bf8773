"""Fault injection: a list of armed faults, each consumed by the requests/generations/streams it hits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

REQUEST_FAULTS = frozenset({"status", "delay", "drop"})
GENERATION_FAULTS = frozenset({"generation_failure", "stall_generation"})
STREAM_FAULTS = frozenset({"drop_events"})
FAULT_TYPES = REQUEST_FAULTS | GENERATION_FAULTS | STREAM_FAULTS

DEFAULT_FAILURE_MESSAGE = "Generation failed: upstream provider error (injected)"


@dataclass
class Fault:
    """One armed fault; ``count`` is how many more hits it has (-1: unlimited)."""

    id: int
    type: str
    count: int = 1
    method: str | None = None
    path: str | None = None
    pattern: re.Pattern[str] | None = field(default=None, repr=False)
    model: str | None = None
    status: int = 503
    body: Any = None
    retry_after: str | None = None
    seconds: float = 0.0
    after_processing: bool = False
    error_message: str = DEFAULT_FAILURE_MESSAGE
    after_events: int = 0
    hits: int = 0

    def matches_request(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.pattern is None or self.pattern.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type, "count": self.count, "hits": self.hits}
        if self.type in REQUEST_FAULTS:
            data.update(method=self.method, path=self.path)
        if self.type in GENERATION_FAULTS:
            data["model"] = self.model
        if self.type == "status":
            data.update(status=self.status, body=self.body, retry_after=self.retry_after)
        elif self.type == "delay":
            data.update(seconds=self.seconds, after_processing=self.after_processing)
        elif self.type == "drop":
            data["after_processing"] = self.after_processing
        elif self.type == "generation_failure":
            data["error_message"] = self.error_message
        elif self.type == "drop_events":
            data["after_events"] = self.after_events
        return data


def _int(data: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}")
    return value


def parse_fault(data: Any, fault_id: int) -> Fault:
    """Build a fault from its JSON description; raises ValueError with a readable message."""
    if not isinstance(data, dict):
        raise ValueError("fault must be a JSON object")
    kind = data.get("type")
    if kind not in FAULT_TYPES:
        raise ValueError(f"type must be one of {sorted(FAULT_TYPES)}")
    count = data.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
        raise ValueError("count must be a positive integer or -1 (forever)")
    fault = Fault(id=fault_id, type=kind, count=count)

    method = data.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise ValueError("method must be a string")
        fault.method = method.upper()
    path = data.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise ValueError("path must be a string (a regular expression)")
        try:
            fault.pattern = re.compile(path)
        except re.error as exc:
            raise ValueError(f"path is not a valid regular expression: {exc}") from exc
        fault.path = path
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model must be a string")
    fault.model = model

    if kind == "status":
        fault.status = _int(data, "status", 503, 100)
        if fault.status > 599:
            raise ValueError("status must be an HTTP status code (100-599)")
        fault.body = data.get("body")
        retry_after = data.get("retry_after")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float, str)):
                raise ValueError("retry_after must be a number of seconds or a string")
            if isinstance(retry_after, float) and retry_after.is_integer():
                retry_after = int(retry_after)
            fault.retry_after = str(retry_after)
    elif kind in ("delay", "drop"):
        after = data.get("after_processing", False)
        if not isinstance(after, bool):
            raise ValueError("after_processing must be a boolean")
        fault.after_processing = after
        if kind == "delay":
            seconds = data.get("seconds", 1.0)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise ValueError("seconds must be a number >= 0")
            fault.seconds = float(seconds)
    elif kind == "generation_failure":
        message = data.get("error_message", DEFAULT_FAILURE_MESSAGE)
        if not isinstance(message, str) or not message:
            raise ValueError("error_message must be a non-empty string")
        fault.error_message = message
    elif kind == "drop_events":
        fault.after_events = _int(data, "after_events", 0, 0)
    return fault


class FaultBook:
    """The armed faults, in the order they were added; the first match wins and is consumed."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, data: Any) -> Fault:
        fault = parse_fault(data, self._next_id)
        self._next_id += 1
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def remove(self, fault_id: int) -> bool:
        before = len(self.faults)
        self.faults = [fault for fault in self.faults if fault.id != fault_id]
        return len(self.faults) != before

    def consume(self, fault: Fault) -> None:
        """Record one hit; a fault with no hits left disarms itself."""
        fault.hits += 1
        if fault.count > 0:
            fault.count -= 1
            if fault.count == 0 and fault in self.faults:
                self.faults.remove(fault)

    def take_request_fault(self, method: str, path: str) -> Fault | None:
        if not self.faults:  # the common case, kept cheap for benchmarks
            return None
        for fault in self.faults:
            if fault.type in REQUEST_FAULTS and fault.matches_request(method, path):
                self.consume(fault)
                return fault
        return None

    def take_generation_fault(self, model: str) -> Fault | None:
        if not self.faults:
            return None
        for fault in self.faults:
            if fault.type in GENERATION_FAULTS and fault.model in (None, model):
                self.consume(fault)
                return fault
        return None

    def stream_faults(self) -> list[Fault]:
        return [fault for fault in self.faults if fault.type in STREAM_FAULTS]
