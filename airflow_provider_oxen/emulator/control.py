"""The test control API under ``/_emulator/`` (no auth, not recorded, never faulted)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .responses import error, get_state


async def _json(request: web.Request) -> Any:
    """The parsed body, or None when absent or not JSON (callers then treat it as "not an object")."""
    if not request.body_exists:
        return None
    try:
        return await request.json()
    except ValueError:
        return None


async def list_requests(request: web.Request) -> web.Response:
    """Recorded ``/api`` requests; filters ``method``, ``path`` (exact), ``path_regex``, ``route``."""
    query = request.query
    try:
        entries = get_state(request).requests.select(
            method=query.get("method"),
            path=query.get("path"),
            path_regex=query.get("path_regex"),
            route=query.get("route"),
        )
    except re.error as exc:
        return error(400, f"path_regex: {exc}")
    return web.json_response({"requests": entries})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(get_state(request).stats())


async def reset(request: web.Request) -> web.Response:
    """Clear requests, faults, generations and counters; ``{"config": true}`` also restores settings."""
    body = await _json(request)
    restore = isinstance(body, dict) and body.get("config") is True
    state = get_state(request)
    state.reset(restore_config=restore)
    return web.json_response({"reset": True, "config": state.config.runtime_view()})


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(get_state(request).config.runtime_view())


async def set_config(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body, dict):
        return error(400, "Body must be a JSON object of settings")
    config = get_state(request).config
    try:
        config.apply_runtime(body)
    except ValueError as exc:
        return error(400, str(exc))
    return web.json_response(config.runtime_view())


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [fault.to_json() for fault in get_state(request).faults.faults]})


async def add_fault(request: web.Request) -> web.Response:
    """Arm a fault; a ``drop_events`` fault first applies to the streams already open."""
    state = get_state(request)
    try:
        fault = state.faults.add(await _json(request))
    except ValueError as exc:
        return error(400, str(exc))
    if fault.type == "drop_events":
        for subscriber in list(state.broker.subscribers):
            if fault.count == 0:
                break
            subscriber.drop(fault.after_events)
            state.faults.consume(fault)
    return web.json_response(fault.to_json())


async def clear_faults(request: web.Request) -> web.Response:
    get_state(request).faults.clear()
    return web.json_response({"faults": []})


async def delete_fault(request: web.Request) -> web.Response:
    raw = request.match_info["fault_id"]
    if not raw.isdigit() or not get_state(request).faults.remove(int(raw)):
        return error(404, "Fault not found")
    return web.json_response({"deleted": int(raw)})


async def drop_streams(request: web.Request) -> web.Response:
    return web.json_response({"dropped": get_state(request).broker.drop_all()})


async def suppress_events(request: web.Request) -> web.Response:
    """The next ``count`` completion events (success or failure) are not published; rows still finish."""
    body = await _json(request)
    count = body.get("count", 1) if isinstance(body, dict) else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return error(400, "count must be an integer >= 0")
    store = get_state(request).generations
    store.suppress_events = count
    return web.json_response({"suppress_events": count})


def add_control_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_emulator/requests", list_requests)
    router.add_get("/_emulator/stats", stats)
    router.add_post("/_emulator/reset", reset)
    router.add_get("/_emulator/config", get_config)
    router.add_post("/_emulator/config", set_config)
    router.add_get("/_emulator/faults", list_faults)
    router.add_post("/_emulator/faults", add_fault)
    router.add_delete("/_emulator/faults", clear_faults)
    router.add_delete("/_emulator/faults/{fault_id}", delete_fault)
    router.add_post("/_emulator/sse/drop", drop_streams)
    router.add_post("/_emulator/events/suppress", suppress_events)
