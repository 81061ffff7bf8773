from __future__ import annotations

import httpx
import pytest

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
from airflow_provider_oxen.hooks.retry import RetryPolicy

CALL = api.ApiCall("POST", "/api/ai/queue", json={"model": "m"}, paid=True)
GET = api.ApiCall("GET", "/api/ai/queue/g1")
POLICY = RetryPolicy(max_retries=2)


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    kwargs = {"json": body} if body is not None else {"text": ""}
    return httpx.Response(status, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OxenBadRequestError),
        (422, OxenBadRequestError),
        (401, OxenAuthenticationError),
        (402, OxenInsufficientCreditsError),
        (403, OxenPermissionDeniedError),
        (404, OxenNotFoundError),
        (429, OxenRateLimitError),
        (500, OxenServerError),
        (503, OxenServerError),
        (418, OxenAPIStatusError),
    ],
)
def test_status_maps_to_its_exception(status: int, cls: type[OxenAPIStatusError]) -> None:
    error = api.error_from_response(CALL, _response(status, {"error": "nope"}))
    assert type(error) is cls
    assert isinstance(error, OxenError)
    assert error.status_code == status
    assert "nope" in str(error) and "POST /api/ai/queue" in str(error)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "Prompt cannot be empty"}, "Prompt cannot be empty"),
        ({"error": {"message": "bad size"}}, "bad size"),
        ({"message": "from message"}, "from message"),
        ({"detail": "from detail"}, "from detail"),
        # The documented envelope: detail, then message, then title.
        (
            {
                "error": {
                    "type": "invalid_params",
                    "title": "Invalid parameters",
                    "detail": "Prompt cannot be empty",
                },
                "status": "error",
                "status_message": "invalid_params",
            },
            "Prompt cannot be empty",
        ),
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


def test_plan_retries_then_raises_typed_error() -> None:
    response = _response(503, {"error": "busy"})
    assert isinstance(api.plan_after_response(GET, response, 0, POLICY), api.RetryAfter)
    assert isinstance(api.plan_after_response(GET, response, 2, POLICY), OxenServerError)
    assert api.plan_after_response(GET, _response(200, {}), 0, POLICY) is None


def test_plan_never_retries_a_paid_request_that_may_have_arrived() -> None:
    plan = api.plan_after_transport_error(CALL, httpx.ReadTimeout("t"), 0, POLICY)
    assert isinstance(plan, OxenRequestMayHaveSucceededError)
    assert "not retried" in str(plan)
    gateway = api.plan_after_response(CALL, _response(504, {"error": "gateway"}), 0, POLICY)
    assert isinstance(gateway, OxenRequestMayHaveSucceededError)


def test_plan_gives_up_on_connection_errors_after_the_budget() -> None:
    plan = api.plan_after_transport_error(GET, httpx.ConnectError("refused"), 2, POLICY)
    assert isinstance(plan, OxenConnectionError)
    assert "3 attempt(s)" in str(plan)


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


@pytest.mark.parametrize(
    ("status", "unrecoverable"),
    [(s, True) for s in (400, 401, 402, 403, 422)] + [(s, False) for s in (404, 429, 500, 502, 503, 504)],
)
def test_only_errors_no_retry_can_fix_fail_the_task_without_airflow_retries(
    status: int, unrecoverable: bool
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    error = api.error_from_response(GET, _response(status, {"error": {"detail": "no"}}))
    assert isinstance(error, AirflowFailException) is unrecoverable
    assert isinstance(error, OxenUnrecoverableError) is unrecoverable
    assert isinstance(OxenValidationError("bad", field="x"), AirflowFailException)  # client-side too


def test_model_ids_are_one_encoded_segment_and_path_segments_cannot_escape() -> None:
    assert (
        api.model_call("openai/gpt-image-1.5:latest").path == "/api/ai/models/openai%2Fgpt-image-1.5%3Alatest"
    )
    with pytest.raises(ValueError):
        api.model_call("..")
    with pytest.raises(ValueError):
        api.generation_call("../models")
