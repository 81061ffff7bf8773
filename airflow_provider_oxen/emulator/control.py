"""The test control API under ``/_emulator/`` (no auth, not recorded, never faulted)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .responses import get_state, invalid
from .state import ApiError

control_routes = web.RouteTableDef()


async def _json(request: web.Request) -> Any:
    """The parsed body, or None when absent or not JSON (callers then treat it as "not an object")."""
    try:
        return await request.json() if request.body_exists else None
    except ValueError:
        return None


@control_routes.get("/_emulator/requests")
async def list_requests(request: web.Request) -> web.Response:
    """Recorded ``/api`` requests, in order; filters ``method``, ``path`` and ``route`` (exact)."""
    wanted = {key: request.query[key] for key in ("method", "path", "route") if request.query.get(key)}
    if "method" in wanted:
        wanted["method"] = wanted["method"].upper()
    entries = [e for e in get_state(request).requests if all(e[k] == v for k, v in wanted.items())]
    return web.json_response({"requests": entries})


@control_routes.get("/_emulator/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(get_state(request).stats())


@control_routes.post("/_emulator/reset")
async def reset(request: web.Request) -> web.Response:
    """Clear requests, faults, generations and counters; ``{"config": true}`` also restores settings."""
    body = await _json(request)
    state = get_state(request)
    state.reset(restore_config=isinstance(body, dict) and body.get("config") is True)
    return web.json_response({"reset": True, "config": state.config.runtime_view()})


@control_routes.get("/_emulator/config")
async def get_config(request: web.Request) -> web.Response:
    return web.json_response(get_state(request).config.runtime_view())


@control_routes.post("/_emulator/config")
async def set_config(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Body must be a JSON object of settings")
    config = get_state(request).config
    try:
        config.apply_runtime(body)
    except ValidationError as exc:
        raise invalid(exc) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(config.runtime_view())


@control_routes.get("/_emulator/faults")
async def list_faults(request: web.Request) -> web.Response:
    faults = get_state(request).faults.faults
    return web.json_response({"faults": [fault.model_dump(mode="json") for fault in faults]})


@control_routes.post("/_emulator/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Arm a fault; a ``drop_events`` fault first applies to the streams already open."""
    state = get_state(request)
    try:
        fault = state.faults.add(await _json(request))
    except ValidationError as exc:
        raise invalid(exc) from None
    if fault.type == "drop_events":
        for subscriber in list(state.broker.subscribers):
            if fault.count == 0:
                break
            subscriber.drop(fault.after_events)
            state.faults.consume(fault)
    return web.json_response(fault.model_dump(mode="json"))


@control_routes.delete("/_emulator/faults")
async def clear_faults(request: web.Request) -> web.Response:
    get_state(request).faults.faults.clear()
    return web.json_response({"faults": []})


@control_routes.post("/_emulator/sse/drop")
async def drop_streams(request: web.Request) -> web.Response:
    return web.json_response({"dropped": get_state(request).broker.drop_all()})


@control_routes.post("/_emulator/events/suppress")
async def suppress_events(request: web.Request) -> web.Response:
    """The next ``count`` completion events (success or failure) are not published; rows still finish."""
    body = await _json(request)
    count = body.get("count", 1) if isinstance(body, dict) else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ApiError(400, "count must be an integer >= 0")
    get_state(request).generations.suppress_events = count
    return web.json_response({"suppress_events": count})
