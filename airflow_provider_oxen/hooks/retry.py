"""Retry policy: pure functions shared by the sync and async hooks (tested once for both).

The rule that never bends: a *paid* request (``POST /api/ai/queue``) is retried only when the
server certainly did not act on it (no connection made, or a 429/503 refusal); a read timeout,
a dropped connection or a gateway's 502/504 raise :class:`OxenRequestMayHaveSucceededError`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from airflow_provider_oxen.exceptions import OxenAPIStatusError, OxenConnectionError, OxenValidationError

# Statuses worth retrying for a request that is safe to repeat.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that prove the server refused the request without doing the work.
REFUSAL_STATUSES = frozenset({429, 503})

# Transport errors raised before any byte of the request left the machine.
_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry; read from the connection's extras."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # A Retry-After longer than this is not waited out in-process: the error surfaces instead.
    max_retry_after: float = 300.0

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> RetryPolicy:
        defaults = cls()
        return cls(
            max_retries=int(extras.get("max_retries", defaults.max_retries)),
            backoff_base=float(extras.get("backoff_base", defaults.backoff_base)),
            backoff_max=float(extras.get("backoff_max", defaults.backoff_max)),
            max_retry_after=float(extras.get("max_retry_after", defaults.max_retry_after)),
        )


def backoff_ceiling(attempt: int, base: float, maximum: float) -> float:
    """``min(maximum, base * 2**attempt)``, the longest wait before retry ``attempt + 1``: the one
    place a backoff is capped (the exponent too: ``2.0**attempt`` overflows after a long outage)."""
    return min(maximum, base * 2.0 ** min(max(attempt, 0), 60))


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, :func:`backoff_ceiling`]."""
    return backoff_ceiling(attempt, policy.backoff_base, policy.backoff_max) * rand()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def may_have_reached_server(exc: httpx.TransportError) -> bool:
    """Whether the server may have received (and acted on) the request despite ``exc``."""
    return not isinstance(exc, _NOT_SENT_ERRORS)


def delay_after_status(
    status_code: int,
    retry_after: float | None,
    attempt: int,
    *,
    paid: bool,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying after an HTTP error status, or None to stop."""
    if attempt >= policy.max_retries:
        return None
    retryable = REFUSAL_STATUSES if paid else RETRYABLE_STATUSES
    if status_code not in retryable:
        return None
    if retry_after is not None:
        return retry_after if retry_after <= policy.max_retry_after else None
    return backoff_delay(attempt, policy, rand)


def delay_after_transport_error(
    exc: httpx.TransportError, attempt: int, *, paid: bool, policy: RetryPolicy
) -> float | None:
    """Seconds to wait before retrying after a transport error, or None to stop."""
    if attempt >= policy.max_retries or (paid and may_have_reached_server(exc)):
        return None
    return backoff_delay(attempt, policy)


def proves_nothing_created(error: BaseException) -> bool:
    """Whether a failed paid request certainly created nothing (so no recovery scan is needed).

    Client-side validation, a definite 4xx refusal (400, 401, 402, 403, 404, 409, 422, 429),
    a 503 refusal, or a connection that was never made. A 500, a gateway error, a timeout or
    anything unknown may hide a created generation.
    """
    if isinstance(error, OxenAPIStatusError):
        return (400 <= error.status_code < 500 and error.status_code != 408) or error.status_code == 503
    return isinstance(error, (OxenValidationError, OxenConnectionError))


def is_ambiguous_paid_status(status_code: int) -> bool:
    """Gateway errors on a paid request: the upstream may have queued the work anyway."""
    return status_code in (502, 504)
