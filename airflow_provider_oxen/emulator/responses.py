"""Shared bits of the HTTP layer: where the state lives on the app, and the JSON error shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .state import EmulatorState

STATE_KEY = web.AppKey("oxen_emulator_state", EmulatorState)

# HTTP status -> (error.type, error.title). The first five are the documented types (402 is seen,
# undocumented); the rest are the emulator's own names for statuses the docs do not cover.
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_params", "Invalid parameters"),
    401: ("unauthenticated", "Unauthenticated"),
    402: ("insufficient_credits", "Insufficient credits"),
    404: ("resource_not_found", "Resource not found"),
    500: ("unknown_error", "Unknown error"),
    403: ("forbidden", "Forbidden"),
    405: ("method_not_allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload too large"),
    429: ("rate_limited", "Too many requests"),
    502: ("upstream_error", "Upstream provider error"),
    503: ("service_unavailable", "Service unavailable"),
    504: ("gateway_timeout", "Gateway timeout"),
}


def error_type(status: int) -> tuple[str, str]:
    """``(type, title)`` for a status; unlisted 4xx are ``invalid_request``, the rest ``unknown_error``."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    if 400 <= status < 500:
        return "invalid_request", "Invalid request"
    return "unknown_error", "Unknown error"


def error_body(status: int, detail: str) -> dict[str, Any]:
    """The documented envelope: ``{"error": {type, title, detail}, "status": "error", "status_message"}``."""
    kind, title = error_type(status)
    return {
        "error": {"type": kind, "title": title, "detail": detail},
        "status": "error",
        "status_message": kind,
    }


def error(status: int, detail: str) -> web.Response:
    """A JSON error response in the documented envelope."""
    return web.json_response(error_body(status, detail), status=status)


def short_error(status: int, message: str) -> web.Response:
    """The shorter shape some endpoints (the model endpoints) answer: ``{"error": {"message": ...}}``."""
    return web.json_response({"error": {"message": message}}, status=status)


def get_state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]
