from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from airflow_provider_oxen.exceptions import (
    OxenConnectionError,
    OxenRequestMayHaveSucceededError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.retry import (
    RetryPolicy,
    backoff_delay,
    delay_after_status,
    delay_after_transport_error,
    may_have_reached_server,
    parse_retry_after,
    proves_nothing_created,
)

POLICY = RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=5.0, max_retry_after=60)


def test_backoff_grows_exponentially_up_to_the_cap_jittered_below_it() -> None:
    top = [backoff_delay(attempt, POLICY, rand=lambda: 1.0) for attempt in range(5)]
    assert top == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(2, POLICY, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, POLICY, rand=lambda: 0.5) == 2.0
    # No overflow after a long outage.
    assert backoff_delay(5000, RetryPolicy(backoff_base=0.5, backoff_max=30.0), rand=lambda: 1.0) == 30.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0", 0.0), ("1.5", 1.5), ("", None), (None, None), ("soon", None), ("-3", 0.0)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("status", "retry_after", "attempt", "paid", "delay"),
    [
        # Which statuses are retried at all: test_error_mapping.py::test_what_each_status_means.
        (503, None, 0, False, 1.0),
        (429, 12.0, 0, True, 12.0),  # the Retry-After header wins over the backoff
        (429, 3600.0, 0, False, None),  # a Retry-After longer than the cap is not waited
        (503, None, 3, False, None),  # retries are bounded
    ],
)
def test_delay_after_status(
    status: int, retry_after: float | None, attempt: int, paid: bool, delay: float | None
) -> None:
    assert (
        delay_after_status(status, retry_after, attempt, paid=paid, policy=POLICY, rand=lambda: 1.0) == delay
    )


@pytest.mark.parametrize(
    ("exc", "reached"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow dns"), False),
        (httpx.PoolTimeout("pool"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("dropped"), True),
        (httpx.ReadError("reset"), True),
        (httpx.WriteTimeout("half sent"), True),
    ],
)
def test_which_transport_errors_may_have_reached_the_server(exc: httpx.TransportError, reached: bool) -> None:
    assert may_have_reached_server(exc) is reached
    paid_delay = delay_after_transport_error(exc, 0, paid=True, policy=POLICY)
    assert (paid_delay is None) is reached
    assert delay_after_transport_error(exc, 0, paid=False, policy=POLICY) is not None
    assert delay_after_transport_error(exc, 3, paid=False, policy=POLICY) is None  # bounded


def test_policy_from_connection_extras() -> None:
    policy = RetryPolicy.from_extras({"max_retries": "2", "backoff_base": 0.1, "backoff_max": 1})
    assert policy == RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0, max_retry_after=300.0)


@pytest.mark.parametrize(
    ("error", "proves"),
    [
        # What each status proves: test_error_mapping.py::test_what_each_status_means.
        (OxenValidationError("bad", field="x"), True),
        (OxenConnectionError("refused"), True),
        (OxenRequestMayHaveSucceededError("t", method="POST", path="/api/ai/queue"), False),
        (RuntimeError("?"), False),
    ],
)
def test_which_enqueue_errors_prove_nothing_was_created(error: BaseException, proves: bool) -> None:
    assert proves_nothing_created(error) is proves
