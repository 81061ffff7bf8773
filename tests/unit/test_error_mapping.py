from __future__ import annotations

import httpx
import pytest
from airflow.sdk.exceptions import AirflowFailException

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
    OxenUnrecoverableError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks import api
from airflow_provider_oxen.hooks.retry import RetryPolicy, delay_after_status, proves_nothing_created

CALL = api.ApiCall("POST", "/api/ai/queue", json={"model": "m"}, paid=True)
GET = api.ApiCall("GET", "/api/ai/queue/g1")
POLICY = RetryPolicy(max_retries=2)


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    kwargs = {"json": body} if body is not None else {"text": ""}
    return httpx.Response(status, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "cls", "unrecoverable", "retried", "retried_paid", "nothing_created"),
    [
        # Only errors no retry can fix fail the task without Airflow retries.
        (400, OxenBadRequestError, True, False, False, True),
        (422, OxenBadRequestError, True, False, False, True),
        (401, OxenAuthenticationError, True, False, False, True),
        (402, OxenInsufficientCreditsError, True, False, False, True),
        (403, OxenPermissionDeniedError, True, False, False, True),
        (404, OxenNotFoundError, False, False, False, True),
        (429, OxenRateLimitError, False, True, True, True),
        (500, OxenServerError, False, False, False, False),
        # A gateway error on a paid request may hide one the backend accepted: not retried.
        (502, OxenServerError, False, True, False, False),
        (503, OxenServerError, False, True, True, True),
        (504, OxenServerError, False, True, False, False),
        (418, OxenAPIStatusError, False, False, False, True),
    ],
)
def test_what_each_status_means(
    status: int,
    cls: type[OxenError],
    unrecoverable: bool,
    retried: bool,
    retried_paid: bool,
    nothing_created: bool,
) -> None:
    """Its exception, whether it fails the task for good, whether a request (a paid one: an
    enqueue) is retried, and whether a failed enqueue certainly created nothing."""
    error = api.error_from_response(CALL, _response(status, {"error": "nope"}))
    assert type(error) is cls
    assert error.status_code == status
    assert "nope" in str(error) and "POST /api/ai/queue" in str(error)
    assert isinstance(error, AirflowFailException) is unrecoverable
    assert isinstance(error, OxenUnrecoverableError) is unrecoverable
    delays = [delay_after_status(status, None, 0, paid=paid, policy=POLICY) for paid in (False, True)]
    assert [delay is not None for delay in delays] == [retried, retried_paid]
    assert proves_nothing_created(error) is nothing_created


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "Prompt cannot be empty"}, "Prompt cannot be empty"),
        ({"error": {"message": "bad size"}}, "bad size"),
        ({"message": "from message"}, "from message"),
        ({"detail": "from detail"}, "from detail"),
        # The documented envelope's detail (the emulator's 400s: test_hook_emulator.py), else its title.
        ({"error": {"type": "invalid_params", "title": "Invalid parameters"}}, "Invalid parameters"),
        ({"error": {"message": "Model not found: x"}}, "Model not found: x"),
    ],
)
def test_message_is_read_from_error_message_or_detail(body: object, message: str) -> None:
    error = api.error_from_response(CALL, _response(400, body))
    assert error.api_message == message


def test_validation_error_names_the_field() -> None:
    error = api.error_from_response(CALL, _response(400, {"error": "image_size: 'huge' is not one of [...]"}))
    assert isinstance(error, OxenValidationError)
    assert error.field == "image_size"
    assert isinstance(OxenValidationError("bad", field="x"), AirflowFailException)  # client-side too
    from_text = api.error_from_response(CALL, _response(400, {"error": "seed: must be an integer"}))
    assert isinstance(from_text, OxenBadRequestError) and from_text.field == "seed"


def test_errors_carry_what_the_user_needs() -> None:
    error = api.error_from_response(GET, httpx.Response(502, text="<html>" + "x" * 5000))
    assert error.api_message.startswith("<html>")  # a body that is not JSON: truncated text
    assert len(error.api_message) <= 300 and len(error.body) <= 500
    limited = api.error_from_response(GET, _response(429, {"error": "slow down"}, {"Retry-After": "9"}))
    assert isinstance(limited, OxenRateLimitError) and limited.retry_after == 9.0
    unauthorized = api.error_from_response(GET, _response(401, {"error": "Invalid API key"}))
    assert "password field" in str(unauthorized)  # where the key goes


@pytest.mark.parametrize(
    ("call", "outcome", "attempt", "plan", "says"),
    [
        (GET, _response(503, {"error": "busy"}), 0, api.RetryAfter, ""),
        (GET, _response(503, {"error": "busy"}), 2, OxenServerError, "busy"),  # the budget is spent
        (GET, _response(200, {}), 0, type(None), ""),
        (GET, httpx.ConnectError("refused"), 2, OxenConnectionError, "3 attempt(s)"),
        # A paid request that may have reached the server is never retried.
        (CALL, httpx.ReadTimeout("t"), 0, OxenRequestMayHaveSucceededError, "not retried"),
        (CALL, _response(504, {"error": "gateway"}), 0, OxenRequestMayHaveSucceededError, ""),
    ],
)
def test_what_follows_a_response_or_a_transport_error(
    call: api.ApiCall, outcome: httpx.Response | httpx.TransportError, attempt: int, plan: type, says: str
) -> None:
    if isinstance(outcome, httpx.Response):
        result = api.plan_after_response(call, outcome, attempt, POLICY)
    else:
        result = api.plan_after_transport_error(call, outcome, attempt, POLICY)
    assert isinstance(result, plan) and says in str(result)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "https://hub.oxen.ai"),
        ("", "https://hub.oxen.ai"),
        ("hub.oxen.ai", "https://hub.oxen.ai"),
        ("https://hub.oxen.ai/", "https://hub.oxen.ai"),
        ("https://hub.oxen.ai/api", "https://hub.oxen.ai"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_base_url_normalisation(host: str | None, url: str) -> None:
    assert api.normalise_base_url(host) == url


def test_settings_never_show_the_key() -> None:
    settings = api.OxenSettings.from_connection("hub.oxen.ai", "sk-secret-value", {"timeout": 5})
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in repr(api.BearerAuth(settings.api_key))
    assert settings.timeout == 5.0


@pytest.mark.parametrize("status", [402, 400])
def test_insufficient_credits_is_typed_by_its_envelope_and_tells_the_user_what_to_do(status: int) -> None:
    body = {
        "error": {"type": "insufficient_credits", "title": "Insufficient credits", "detail": "Balance 0.00"},
        "status": "error",
    }
    error = api.error_from_response(CALL, _response(status, body))
    assert isinstance(error, OxenInsufficientCreditsError)
    assert "Balance 0.00" in str(error) and "Nothing was enqueued" in str(error) and "credits" in str(error)


def test_model_ids_are_one_encoded_segment_and_path_segments_cannot_escape() -> None:
    assert (
        api.model_call("openai/gpt-image-1.5:latest").path == "/api/ai/models/openai%2Fgpt-image-1.5%3Alatest"
    )
    with pytest.raises(ValueError):
        api.model_call("..")
    with pytest.raises(ValueError):
        api.generation_call("../models")
