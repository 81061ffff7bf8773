"""The Oxen API routes (``/api/...``), the signed result files (``/files/...``) and the middleware."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from .catalogue import (
    EDIT,
    IMAGE,
    MAX_IMAGES_PER_REQUEST,
    ModelSpec,
    input_urls,
    matches_action,
    matches_search,
    validate_params,
)
from .config import money
from .control import control_routes
from .events import Subscriber, serve_stream
from .faults import REQUEST_FAULTS, Fault
from .inputs import InputError, fetch_inputs
from .responses import STATE_KEY, error, error_body, get_state
from .state import ALL_STATUSES, USER, ApiError, EmulatorState, Generation

routes = web.RouteTableDef()
_INVALID_JSON = object()
_BODY_KEY = web.RequestKey("oxen_json_body", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- middleware -------------------------------------------------------------------------------------


def _authorized(request: web.Request, api_key: str | None) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return api_key is None or hmac.compare_digest(token.encode(), api_key.encode())


async def _read_body(request: web.Request) -> Any:
    """Parse the JSON body once and keep it on the request (None: no body)."""
    if _BODY_KEY in request:
        return request[_BODY_KEY]
    body: Any = None
    raw = await request.read() if request.body_exists else b""
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            body = _INVALID_JSON
    request[_BODY_KEY] = body
    return body


def _drop_connection(request: web.Request) -> web.Response:
    # Closing the transport before anything is written: the client sees the connection die with no
    # response at all. The returned object is never sent.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def _fault_response(fault: Fault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if isinstance(fault.body, str):
        return web.Response(status=fault.status, text=fault.body, headers=headers)
    body = fault.body
    if body is None:
        detail = f"Injected fault: HTTP {fault.status}"
        if fault.status == 402:
            detail = "Insufficient credits to run this request (injected fault)"
        body = error_body(fault.status, detail)
    return web.json_response(body, status=fault.status, headers=headers)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, str(exc))
    except web.HTTPException as exc:
        # aiohttp's own 404/405 for unknown routes, answered in the API's JSON error shape.
        return error(exc.status, exc.reason)


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, record, inject faults and check auth, in that order, around every handler."""
    if request.path.startswith("/_emulator/"):
        return await _answer(request, handler)
    state = get_state(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "<unmatched>"
    state.route_counts[f"{request.method} {route}"] += 1
    authorized = True
    entry: dict[str, Any] = {}
    if request.path.startswith("/api/"):
        authorized = _authorized(request, state.config.api_key)
        body = await _read_body(request)
        # Of the headers only User-Agent is kept (never the API key).
        entry.update(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.partition("?")[0],
            route=route,
            query=dict(request.query),
            json=None if body is _INVALID_JSON else body,
            authorized=authorized,
            time=time.time(),
            status=None,
            user_agent=request.headers.get("User-Agent", ""),
        )
        state.requests.append(entry)

    fault = state.faults.take(REQUEST_FAULTS, request.method, request.path)
    if fault is not None and (fault.type == "status" or not fault.after_processing):
        if fault.type == "drop":
            return _drop_connection(request)
        if fault.type == "status":
            entry["status"] = fault.status
            return _fault_response(fault)
        await asyncio.sleep(fault.seconds)
        fault = None
    if authorized:
        response = await _answer(request, handler)
    else:
        response = error(401, "Invalid or missing API key")
    if fault is not None:
        if fault.type == "drop":
            return _drop_connection(request)
        await asyncio.sleep(fault.seconds)
    entry["status"] = response.status
    return response


# --- request helpers --------------------------------------------------------------------------------


async def _model_request(request: web.Request) -> tuple[EmulatorState, dict[str, Any], ModelSpec]:
    """The state, the JSON object body and the model it names."""
    state = get_state(request)
    body = await _read_body(request)
    if body is _INVALID_JSON:
        raise ApiError(400, "Request body must be valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise ApiError(400, "model is required")
    spec = state.generations.catalogue.get(model_id)
    if spec is None:
        raise ApiError(400, f"Model not found: {model_id}")
    return state, body, spec


def _passed_on(body: dict[str, Any], *common: str) -> dict[str, Any]:
    """What goes to the model: everything but ``model``, ``target_namespace`` and ``common``."""
    return {key: value for key, value in body.items() if key not in ("model", "target_namespace", *common)}


def _namespace(body: dict[str, Any]) -> str:
    namespace = body.get("target_namespace")
    return namespace if isinstance(namespace, str) and namespace else USER


def _small_int(body: dict[str, Any], name: str) -> int:
    """The field as an int within 1..MAX_IMAGES_PER_REQUEST (default 1)."""
    value = body.get(name, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES_PER_REQUEST:
        raise ApiError(400, f"{name} must be an integer from 1 to {MAX_IMAGES_PER_REQUEST}")
    return value


# --- sync generation --------------------------------------------------------------------------------


def _check_endpoint(spec: ModelSpec, endpoint: str) -> None:
    """Refuse a model the sync ``endpoint`` cannot run."""
    outputs = ", ".join(spec.outputs)
    if endpoint == IMAGE and not spec.makes_images:
        raise ApiError(400, f"model: '{spec.id}' does not generate images (outputs: {outputs})")
    if endpoint == IMAGE and spec.is_edit:
        raise ApiError(400, f"model: '{spec.id}' edits images: use POST /api/ai/images/edit with input_image")
    if endpoint == EDIT and not spec.is_edit:
        raise ApiError(
            400, f"model: '{spec.id}' is not an image-editing model (its endpoint is {spec.endpoint})"
        )
    if endpoint not in (IMAGE, EDIT) and not spec.makes_video:
        raise ApiError(400, f"model: '{spec.id}' does not generate video (outputs: {outputs})")


@routes.post("/api/ai/images/generate")
@routes.post("/api/ai/images/edit")
@routes.post("/api/ai/videos/generate")
async def sync_generate(request: web.Request) -> web.Response:
    """The sync endpoints (text-to-image, image editing, video): validate everything (input images
    are fetched now, before anything is paid), charge, "render" for the model's render time, answer
    with URLs or base64 under ``images`` (or ``videos``)."""
    state, body, spec = await _model_request(request)
    _check_endpoint(spec, request.path.removeprefix("/api/ai"))
    params = _passed_on(body, "response_format")
    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise ApiError(400, f"response_format: {response_format!r} is not one of ['url', 'b64_json']")
    problem = validate_params(spec, params)
    if problem is not None:
        raise ApiError(400, problem.message)
    count = 1 if spec.count_param is None else _small_int(params, spec.count_param)
    try:
        inputs = await fetch_inputs(input_urls(spec, params))
    except InputError as exc:
        raise ApiError(400, str(exc)) from None
    store = state.generations
    generation = store.start_sync(spec, params, _namespace(body), count, inputs)
    try:
        await asyncio.sleep(store.sync_render_seconds(spec))
    finally:
        # A client that left mid-render does not undo the (paid) work.
        store.finish_sync(generation)
    results: list[dict[str, str]] = []
    for index, output in enumerate(generation.outputs):
        if response_format == "b64_json":
            data = await store.media.get(output)
            results.append({"b64_json": base64.b64encode(data).decode("ascii")})
        else:
            results.append({"url": store.result_url(generation, index)})
    key = "videos" if spec.makes_video else "images"
    return web.json_response({"model": spec.id, "created": int(generation.enqueued_at), key: results})


# --- queue ------------------------------------------------------------------------------------------


@routes.post("/api/ai/queue")
async def enqueue(request: web.Request) -> web.Response:
    """Only the model, ``num_generations`` and credits are checked (per contract)."""
    state, body, spec = await _model_request(request)
    if not {"image", "video"} & set(spec.outputs):
        raise ApiError(400, f"model: '{spec.id}' does not output images or video and cannot be queued")
    count = _small_int(body, "num_generations")
    rows = state.generations.enqueue(spec, _passed_on(body, "num_generations"), _namespace(body), count)
    return web.json_response(
        {"generations": [{"generation_id": row.generation_id, "status": row.status} for row in rows]}
    )


def _queue_row(request: web.Request) -> Generation:
    row = get_state(request).generations.queue_row(request.match_info["id"])
    if row is None:
        raise ApiError(404, "Generation not found")
    return row


Filters = tuple[frozenset[str] | None, str | None, str | None, str | None]


def _filters(request: web.Request) -> Filters:
    query = request.query
    statuses: frozenset[str] | None = None
    if query.get("status"):
        statuses = frozenset(part.strip() for part in query["status"].split(",") if part.strip())
        unknown = statuses - ALL_STATUSES
        if unknown:
            raise ApiError(400, f"status: {sorted(unknown)} not in {sorted(ALL_STATUSES)}")
    return (
        statuses,
        query.get("model") or None,
        query.get("namespace") or None,
        query.get("media_type") or None,
    )


@routes.get("/api/ai/queue")
async def list_queue(request: web.Request) -> web.Response:
    """In-flight rows by default; ``status`` (comma-separated) widens to terminal rows."""
    store = get_state(request).generations
    rows = [store.to_json(row) for row in store.select(*_filters(request))]
    return web.json_response({"count": len(rows), "generations": rows})


@routes.get("/api/ai/queue/{id}")
async def get_generation(request: web.Request) -> web.Response:
    return web.json_response(get_state(request).generations.to_json(_queue_row(request)))


@routes.delete("/api/ai/queue/{id}")
async def cancel_generation(request: web.Request) -> web.Response:
    """Cancel a live row. The contract is silent on a finished row: the emulator answers 400
    ``invalid_params`` naming its terminal state (one of the two readings clients must handle)."""
    row = _queue_row(request)
    if not get_state(request).generations.cancel(row):
        raise ApiError(400, f"Generation is already {row.status}")
    return web.json_response({"status": "success", "generation_id": row.generation_id})


@routes.post("/api/ai/queue/{id}/retry")
async def retry_generation(request: web.Request) -> web.Response:
    row = _queue_row(request)
    if row.status == "succeeded":
        raise ApiError(400, "Generation is already succeeded and cannot be retried")
    fresh = get_state(request).generations.retry(row)
    retried = {
        "generation_id": fresh.generation_id,
        "status": fresh.status,
        "retried_from_id": row.generation_id,
    }
    return web.json_response({"generations": [retried]})


# --- history ----------------------------------------------------------------------------------------


@routes.get("/api/ai/generations")
async def list_history(request: web.Request) -> web.Response:
    """Every generation, queue and sync (newest first, paged); ``count`` and ``total_cost`` cover
    every match, not just the page."""
    statuses, model, namespace, media_type = _filters(request)
    limit, offset = request.query.get("limit", "100"), request.query.get("offset", "0")
    if not limit.isdigit() or not offset.isdigit():
        raise ApiError(400, "limit and offset must be non-negative integers")
    store = get_state(request).generations
    rows = list(store.select(statuses or ALL_STATUSES, model, namespace, media_type, include_sync=True))
    page = rows[::-1][int(offset) : int(offset) + int(limit)]
    return web.json_response(
        {
            "generations": [store.to_json(row, details=True) for row in page],
            "total_cost": money(sum((row.cost for row in rows), Decimal(0))),
            "count": len(rows),
        }
    )


@routes.get("/api/ai/generations/{id}")
async def get_history_item(request: web.Request) -> web.Response:
    store = get_state(request).generations
    row = store.rows.get(request.match_info["id"])
    if row is None:
        raise ApiError(404, "Generation not found")
    return web.json_response(store.to_json(row, details=True))


# --- events -----------------------------------------------------------------------------------------


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    """The SSE stream (404 while events are disabled)."""
    state = get_state(request)
    if not state.config.events_enabled:
        raise ApiError(404, "Not found")
    subscriber = Subscriber()
    fault = state.faults.take(frozenset({"drop_events"}))
    if fault is not None:
        subscriber.drop(fault.after_events)
    return await serve_stream(request, state.broker, lambda: state.config.keepalive_seconds, subscriber)


# --- models -----------------------------------------------------------------------------------------


@routes.get("/api/ai/models")
async def list_models(request: web.Request) -> web.Response:
    specs = list(get_state(request).generations.catalogue.values())
    developer = request.query.get("developer_name")
    if developer:
        specs = [spec for spec in specs if spec.model["developer"]["name"].lower() == developer.lower()]
    action = request.query.get("action")
    if action:
        specs = [spec for spec in specs if matches_action(spec, action)]
    return web.json_response({"object": "list", "data": [spec.public() for spec in specs]})


@routes.get("/api/ai/models/search")  # before {id}: routes match in order
async def search_models(request: web.Request) -> web.Response:
    text = request.query.get("search", "")
    specs = get_state(request).generations.catalogue.values()
    return web.json_response(
        {"object": "list", "data": [s.public() for s in specs if matches_search(s, text)]}
    )


@routes.get("/api/ai/models/{id}")
async def get_model(request: web.Request) -> web.Response:
    """One model; its id arrives URL-decoded (``openai%2Fgpt-image-1.5%3Alatest``). ``deployment_status``
    is accepted and ignored (every emulated model is live)."""
    model_id = request.match_info["id"]
    spec = get_state(request).generations.catalogue.get(model_id)
    if spec is None:
        # The model endpoints answer the shorter error shape.
        return web.json_response({"error": {"message": f"Model not found: {model_id}"}}, status=404)
    return web.json_response(spec.public())


# --- files ------------------------------------------------------------------------------------------


@routes.get("/files/{id}/{name}")
async def get_file(request: web.Request) -> web.Response:
    """A result file (image or MP4 video) behind a signed URL (no bearer auth); rendered on first
    fetch, then cached."""
    store = get_state(request).generations
    generation_id, name = request.match_info["id"], request.match_info["name"]
    if not store.signer.check(generation_id, name, request.query.get("expires"), request.query.get("sig")):
        raise ApiError(403, "URL expired")
    row = store.rows.get(generation_id)
    outputs = row.outputs if row is not None and row.status == "succeeded" else []
    output = next((candidate for candidate in outputs if candidate.filename == name), None)
    if output is None:
        raise ApiError(404, "File not found")
    data = await store.media.get(output)
    return web.Response(
        body=data, content_type=output.content_type, headers={"Cache-Control": "private, max-age=60"}
    )


# --- application ------------------------------------------------------------------------------------


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE_KEY]
    state.broker.close_all()
    state.generations.stop_all()


def create_app(state: EmulatorState) -> web.Application:
    """The aiohttp application: API routes, files and the ``/_emulator`` control API."""
    app = web.Application(middlewares=[front_door], client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state
    app.add_routes(routes)
    app.add_routes(control_routes)
    app.on_shutdown.append(_on_shutdown)
    return app
