"""Shared bits of the HTTP layer: where the state lives on the app, and the JSON error shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .state import ApiError, EmulatorState

STATE_KEY = web.AppKey("oxen_emulator_state", EmulatorState)

# error.type per status: the documented ones (402 and 502 are seen, undocumented), and a name for
# 429. Any other 4xx is "invalid_request", any other 5xx "unknown_error".
ERROR_TYPES: dict[int, str] = {
    400: "invalid_params",
    401: "unauthenticated",
    402: "insufficient_credits",
    404: "resource_not_found",
    429: "rate_limited",
    500: "unknown_error",
    502: "upstream_error",
}


def error_body(status: int, detail: str) -> dict[str, Any]:
    """The documented envelope: ``{"error": {type, title, detail}, "status": "error", "status_message"}``."""
    kind = ERROR_TYPES.get(status, "invalid_request" if status < 500 else "unknown_error")
    title = "Invalid parameters" if kind == "invalid_params" else kind.replace("_", " ").capitalize()
    return {
        "error": {"type": kind, "title": title, "detail": detail},
        "status": "error",
        "status_message": kind,
    }


def error(status: int, detail: str) -> web.Response:
    """A JSON error response in the documented envelope."""
    return web.json_response(error_body(status, detail), status=status)


def invalid(exc: ValidationError) -> ApiError:
    """A 400 naming the first field pydantic refused (``count: Input should be ...``)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    return ApiError(400, f"{field}: {first['msg']}" if field else first["msg"])


def get_state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]
