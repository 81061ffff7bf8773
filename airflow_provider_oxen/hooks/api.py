"""The Oxen API without I/O: request descriptions, connection settings and response mapping.

The sync and async hooks both build :class:`ApiCall` objects here and hand responses back
here; only sending bytes differs between them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from airflow_provider_oxen.exceptions import (
    OxenAPIStatusError,
    OxenAuthenticationError,
    OxenBadRequestError,
    OxenConnectionError,
    OxenError,
    OxenInsufficientCreditsError,
    OxenNotFoundError,
    OxenPermissionDeniedError,
    OxenRateLimitError,
    OxenRequestMayHaveSucceededError,
    OxenServerError,
)
from airflow_provider_oxen.hooks.retry import (
    RetryPolicy,
    delay_after_status,
    delay_after_transport_error,
    is_ambiguous_paid_status,
    may_have_reached_server,
    parse_retry_after,
)
from airflow_provider_oxen.redact import strip_query

DEFAULT_BASE_URL = "https://hub.oxen.ai"
DEFAULT_TIMEOUT = 60.0
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class ApiCall:
    """One HTTP request to the API. ``paid`` marks requests that create billable work."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    paid: bool = False

    @property
    def shown_path(self) -> str:
        """The path without its query: a result URL's query is a signature, not for logs."""
        return strip_query(self.path)

    def describe(self) -> str:
        return f"{self.method} {self.shown_path}"


@dataclass(frozen=True)
class OxenSettings:
    """Everything the hooks need from an Airflow connection."""

    base_url: str
    api_key: SecretStr = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    target_namespace: str | None = None

    @classmethod
    def from_connection(
        cls, host: str | None, password: str | None, extras: Mapping[str, Any]
    ) -> OxenSettings:
        return cls(
            base_url=normalise_base_url(host),
            api_key=SecretStr(password or ""),
            timeout=float(extras.get("timeout") or DEFAULT_TIMEOUT),
            retry=RetryPolicy.from_extras({k: v for k, v in extras.items() if v is not None}),
            target_namespace=extras.get("target_namespace") or None,
        )


def normalise_base_url(host: str | None) -> str:
    """``hub.oxen.ai`` → ``https://hub.oxen.ai``; blank → the public API; no trailing slash or /api."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"https://{host}"
    host = host.rstrip("/")
    return host[: -len("/api")] if host.endswith("/api") else host


class BearerAuth(httpx.Auth):
    """Adds the API key; its repr never shows it (httpx also masks the header in reprs)."""

    def __init__(self, api_key: SecretStr) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(api_key='**********')"


def list_call(path: str, filters: Mapping[str, Any]) -> ApiCall:
    """A listing (``/api/ai/queue``, ``/api/ai/models``); filters left ``None`` are not sent."""
    return ApiCall("GET", path, params={k: v for k, v in filters.items() if v is not None})


def generation_call(generation_id: str, method: str = "GET") -> ApiCall:
    """One queue row: ``GET`` reads it, ``DELETE`` cancels it."""
    return ApiCall(method, f"/api/ai/queue/{_segment(generation_id)}")


def generation_details_call(generation_id: str) -> ApiCall:
    """A row's full metadata, its cost included."""
    return ApiCall("GET", f"/api/ai/generations/{_segment(generation_id)}")


def model_call(model_id: str) -> ApiCall:
    return ApiCall("GET", f"/api/ai/models/{encode_model_id(model_id)}")


EVENTS_PATH = "/api/events"


def encode_model_id(model_id: str) -> str:
    """Model ids may contain ``/``, ``.`` and ``:``: one encoded path segment, never a path."""
    if not model_id or model_id in (".", ".."):
        raise ValueError(f"invalid model id {model_id!r}")
    return quote(model_id, safe="")


def _segment(value: str) -> str:
    # Ids are uuids / slugs; refuse anything that could change the path instead of encoding it.
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"invalid path segment {value!r}")
    return value


def _text_of(value: Any) -> str | None:
    """The message an error object carries: ``detail``, ``message``, then ``title``."""
    if isinstance(value, dict):
        for key in ("detail", "message", "title"):
            text = _text_of(value.get(key))
            if text:
                return text
        return None
    return value if isinstance(value, str) and value else None


def parse_error_body(text: str) -> tuple[str | None, str | None]:
    """(message, error type) from an error body in the shapes the API documents.

    ``{"error": {"type", "title", "detail"}, "status": "error", ...}``, ``{"error": {"message"}}``,
    a bare ``{"error": "..."}``, or a top-level ``message``/``detail``; ``None`` when unreadable.
    """
    try:
        body = json.loads(text) if text else None
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    error_type = str(error["type"]) if isinstance(error, dict) and error.get("type") else None
    message = _text_of(error) or _text_of(body.get("message")) or _text_of(body.get("detail"))
    return message, error_type


def _with_hint(message: str, hint: str) -> str:
    return f"{message.rstrip('. ')}. {hint}"


def error_from_response(call: ApiCall, response: httpx.Response) -> OxenAPIStatusError:
    """Map an error response to the typed exception for its status."""
    status = response.status_code
    message, error_type = parse_error_body(response.text)
    message = message or response.text.strip() or response.reason_phrase or "no response body"
    # The offending field, when the message starts with one.
    match = re.match(r"^(?:Invalid parameter\s+)?'?([A-Za-z_][\w.]*)'?\s*:", message)
    message = message[:_MESSAGE_LIMIT]
    common: dict[str, Any] = {
        "status_code": status,
        "body": response.text,
        "method": call.method,
        "path": call.shown_path,
    }
    if status == 402 or error_type == "insufficient_credits":
        hint = (
            "Nothing was enqueued. Add credits to the Oxen account (or bill another namespace "
            "with the connection's target_namespace extra), then clear the task."
        )
        return OxenInsufficientCreditsError(_with_hint(message, hint), **common)
    if status in (400, 422):
        return OxenBadRequestError(message, field=match.group(1) if match else None, **common)
    if status == 401:
        hint = "Check the API key in the Oxen connection (password field)."
        return OxenAuthenticationError(_with_hint(message, hint), **common)
    if status == 403:
        hint = "The API key is valid but may not do this (check target_namespace and the key's access)."
        return OxenPermissionDeniedError(_with_hint(message, hint), **common)
    if status == 404:
        return OxenNotFoundError(message, **common)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return OxenRateLimitError(message, retry_after=retry_after, **common)
    if status >= 500:
        return OxenServerError(message, **common)
    return OxenAPIStatusError(message, **common)


def may_be_already_finished(error: OxenAPIStatusError) -> bool:
    """A 4xx answer to a cancel that may just mean the row already finished (undocumented case).

    Not for 401/402/403/404/429: those say something else; the caller re-reads the row.
    """
    return 400 <= error.status_code < 500 and error.status_code not in (401, 402, 403, 404, 429)


def json_body(
    call: ApiCall, response: httpx.Response, object_hook: Callable[[dict[str, Any]], Any] | None = None
) -> Any:
    try:
        return response.json(object_hook=object_hook)
    except ValueError:
        raise OxenAPIStatusError(
            "response is not JSON",
            status_code=response.status_code,
            body=response.text,
            method=call.method,
            path=call.shown_path,
        ) from None


@dataclass(frozen=True)
class RetryAfter:
    """Wait ``delay`` seconds, then send the same request again."""

    delay: float
    reason: str


def plan_after_transport_error(
    call: ApiCall, exc: httpx.TransportError, attempt: int, policy: RetryPolicy
) -> RetryAfter | OxenError:
    delay = delay_after_transport_error(exc, attempt, paid=call.paid, policy=policy)
    if delay is not None:
        return RetryAfter(delay, type(exc).__name__)
    if call.paid and may_have_reached_server(exc):
        return OxenRequestMayHaveSucceededError(type(exc).__name__, method=call.method, path=call.shown_path)
    tries = attempt + 1
    return OxenConnectionError(
        f"Could not reach the Oxen API for {call.describe()} after {tries} attempt(s): "
        f"{type(exc).__name__}: {exc}"
    )


def plan_after_response(
    call: ApiCall, response: httpx.Response, attempt: int, policy: RetryPolicy
) -> RetryAfter | OxenError | None:
    """``None`` means the response is a success to hand back."""
    if response.is_success:
        return None
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    delay = delay_after_status(status, retry_after, attempt, paid=call.paid, policy=policy)
    if delay is not None:
        return RetryAfter(delay, f"HTTP {status}")
    if call.paid and is_ambiguous_paid_status(status):
        return OxenRequestMayHaveSucceededError(
            f"HTTP {status} from a gateway", method=call.method, path=call.shown_path
        )
    return error_from_response(call, response)
