"""Shared bits of the HTTP layer: where the state lives on the app, and the JSON error shape."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .state import EmulatorState

STATE_KEY = web.AppKey("oxen_emulator_state", EmulatorState)


def error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body: ``{"error": message, ...}``."""
    return web.json_response({"error": message, **extra}, status=status)


def get_state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]
