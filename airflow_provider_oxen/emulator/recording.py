"""What the emulator saw: a bounded log of ``/api`` requests and exact per-route counters."""

from __future__ import annotations

import re
from collections import Counter, deque
from typing import Any


class RequestLog:
    """Requests in arrival order. Of the headers only ``User-Agent`` is kept (never the API key)."""

    def __init__(self, max_entries: int) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self.route_counts: Counter[str] = Counter()
        self.total = 0

    def count(self, method: str, route: str) -> None:
        self.route_counts[f"{method} {route}"] += 1
        self.total += 1

    def add(
        self,
        method: str,
        path: str,
        route: str,
        query: dict[str, str],
        body: Any,
        authorized: bool,
        when: float,
        raw_path: str | None = None,
        user_agent: str = "",
    ) -> dict[str, Any]:
        """Log one request; ``path`` is URL-decoded, ``raw_path`` is as sent (``%2F`` kept)."""
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "raw_path": path if raw_path is None else raw_path,
            "route": route,
            "query": query,
            "json": body,
            "authorized": authorized,
            "time": when,
            "status": None,
            "user_agent": user_agent,
        }
        self.entries.append(entry)
        return entry

    def clear(self) -> None:
        self.entries.clear()
        self.route_counts.clear()
        self.total = 0

    def select(
        self,
        method: str | None = None,
        path: str | None = None,
        path_regex: str | None = None,
        route: str | None = None,
    ) -> list[dict[str, Any]]:
        """Entries matching every filter given (``path`` exact, ``path_regex`` searched)."""
        pattern = re.compile(path_regex) if path_regex else None
        method = method.upper() if method else None
        return [
            entry
            for entry in self.entries
            if (method is None or entry["method"] == method)
            and (path is None or entry["path"] == path)
            and (route is None or entry["route"] == route)
            and (pattern is None or pattern.search(entry["path"]))
        ]
