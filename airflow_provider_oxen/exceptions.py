"""Typed errors raised by the Oxen provider, all under :class:`OxenError` (docs/errors.md).

HTTP errors carry the status code and the (truncated) body, never the request headers (the API key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_oxen.redact import strip_query

_BODY_LIMIT = 500


class OxenError(Exception):
    """Base class of every error raised by this provider."""


class OxenUnrecoverableError(OxenError, AirflowFailException):
    """No retry can fix this (bad parameters, bad key, no credits): the task fails at once
    (as an ``AirflowFailException``, without spending its retries)."""


class OxenValidationError(OxenUnrecoverableError, ValueError):
    """A request is invalid; raised before any paid request is sent when detected client-side."""

    def __init__(self, message: str, *, field: str | None = None, allowed: list[Any] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.allowed = allowed


class OxenAPIStatusError(OxenError):
    """The API answered with an error status."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        self.status_code = status_code
        self.body = body[:_BODY_LIMIT]
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method else ""
        super().__init__(f"Oxen API returned HTTP {status_code}{where}: {message}")
        self.api_message = message


class OxenBadRequestError(OxenAPIStatusError, OxenValidationError):  # type: ignore[misc]  # status_code: the HTTP answer, not AirflowException's class default
    """HTTP 400/422: the API rejected the request's content."""

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        OxenAPIStatusError.__init__(self, message, **kwargs)
        self.field = field
        self.allowed = None


class OxenAuthenticationError(OxenAPIStatusError, OxenUnrecoverableError):  # type: ignore[misc]  # status_code: the HTTP answer, not AirflowException's class default
    """HTTP 401: the API key is missing or wrong. Retrying cannot help."""


class OxenPermissionDeniedError(OxenAuthenticationError):
    """HTTP 403: the key is valid but may not do this (e.g. bill another namespace)."""


class OxenInsufficientCreditsError(OxenAPIStatusError, OxenUnrecoverableError):  # type: ignore[misc]  # status_code: the HTTP answer, not AirflowException's class default
    """HTTP 402: the account (or ``target_namespace``) cannot pay for this request; nothing was enqueued."""


class OxenNotFoundError(OxenAPIStatusError):
    """HTTP 404: unknown generation or model."""


class OxenRateLimitError(OxenAPIStatusError):
    """HTTP 429 after the configured retries were spent."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OxenServerError(OxenAPIStatusError):
    """HTTP 5xx after the configured retries were spent."""


class OxenConnectionError(OxenError):
    """The API could not be reached (DNS, refused connection, timeout) after retries."""


class OxenCostLimitError(OxenValidationError):
    """The request would cost more than the task's ``max_cost``; refused before any enqueue."""

    def __init__(self, message: str, *, estimate: str, max_cost: str) -> None:
        super().__init__(message, field="max_cost")
        self.estimate = estimate
        self.max_cost = max_cost


class OxenDownloadRefusedError(OxenUnrecoverableError):
    """A result URL was not fetched: its scheme, host, address or size is outside the download policy."""

    def __init__(self, message: str, *, url: str) -> None:
        self.url = strip_query(url)  # a signed URL's query is a credential
        super().__init__(message)


class OxenRequestMayHaveSucceededError(OxenError):
    """A paid request may have reached the server, so it was not retried (that could bill it twice)."""

    def __init__(self, message: str, *, method: str, path: str, detail: str | None = None) -> None:
        self.method = method
        self.path = path
        super().__init__(
            detail
            or (
                f"{method} {path} may have been accepted by Oxen but no answer arrived ({message}). "
                "It was not retried, to avoid paying twice; check the queue before re-running."
            )
        )


class OxenUnrecordedEnqueueError(OxenRequestMayHaveSucceededError, OxenUnrecoverableError):
    """An earlier try died mid-enqueue and what it created cannot be proven: a person must look
    (``candidates``: the queue rows that may be that request's generations)."""

    def __init__(self, detail: str, *, candidates: list[str]) -> None:
        self.candidates = candidates
        super().__init__("unrecorded enqueue", method="POST", path="/api/ai/queue", detail=detail)


class OxenGenerationError(OxenError):
    """A generation reached a state other than ``succeeded``, or did not reach one in time."""

    def __init__(self, message: str, *, generation_id: str) -> None:
        super().__init__(message)
        self.generation_id = generation_id


class OxenGenerationFailedError(OxenGenerationError):
    """The generation ended with status ``failed``; carries the API's ``error_message``."""

    def __init__(self, generation_id: str, error_message: str | None) -> None:
        self.error_message = error_message
        super().__init__(
            f"Oxen generation {generation_id} failed: {error_message or 'no error message given'}",
            generation_id=generation_id,
        )


class OxenInputFetchError(OxenGenerationFailedError, OxenUnrecoverableError):
    """The generation failed because Oxen could not fetch or read its input image: a retry would
    pay for another generation that fails alike."""


class OxenGenerationCancelledError(OxenGenerationError):
    """The generation was cancelled (by a user, another process, or a timeout of ours)."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(f"Oxen generation {generation_id} was cancelled", generation_id=generation_id)


class OxenGenerationTimeoutError(OxenGenerationError):
    """The generation did not finish before the deadline."""

    def __init__(self, generation_id: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"Oxen generation {generation_id} did not finish within {timeout:g} s",
            generation_id=generation_id,
        )


class OxenGenerationGoneError(OxenGenerationError, OxenUnrecoverableError):
    """A generation this task enqueued is no longer known to Oxen (HTTP 404): it may have been
    billed, so no replacement is enqueued."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(
            f"Oxen generation {generation_id}, enqueued by an earlier try of this task, is no longer "
            "known to Oxen (HTTP 404); it may have finished and been billed. Not enqueueing a "
            "replacement. To pay for a new one, set force_new_enqueue=True on the task and clear it.",
            generation_id=generation_id,
        )


class OxenKeyError(OxenValidationError):
    """An S3 key, prefix or key template is malformed, uses a placeholder it may not use, or could
    escape its prefix (or be read differently by another tool). Raised before anything is written."""


class OxenKeyConflictError(OxenError):
    """The key holds a different object that this transfer does not own, and ``replace`` is off."""


class OxenResultDownloadError(OxenError):
    """A result file could not be downloaded, even after refreshing its URL."""

    def __init__(self, message: str, *, generation_id: str) -> None:
        super().__init__(message)
        self.generation_id = generation_id


class OxenCheckFailedError(OxenError):
    """Some stored images or clips failed their checks (raised only with ``fail_on_check_failure=True``)."""

    def __init__(self, failures: Sequence[Mapping[str, Any]], total: int, noun: str = "image(s)") -> None:
        self.failures = [dict(f) for f in failures]
        lines = [
            f"  - {f['generation_id']} ({f['s3_uri']}): {'; '.join(f['checks']['problems'])}"
            for f in failures
        ]
        super().__init__(
            f"{len(failures)} of {total} {noun} failed their checks (all were stored and are listed "
            "in the manifest):\n" + "\n".join(lines)
        )


class OxenPublishError(OxenError):
    """A record's file is neither where the record says nor where publishing would have put it."""


class OxenSigningConfigError(OxenValidationError):
    """C2PA signing is configured but cannot work: the connection's certificate chain, private key,
    algorithm or timestamp URL is missing or unusable, or c2pa-python is not installed. Raised
    before anything is stored; the message names the field and never shows the key."""


class OxenSigningError(OxenError):
    """c2pa-python could not sign a file of a type it supports (its reason is in the message)."""
