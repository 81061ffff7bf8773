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
    MAX_IMAGES_PER_REQUEST,
    ModelSpec,
    check_prompt,
    input_urls,
    matches_action,
    matches_search,
    validate_params,
)
from .config import EmulatorConfig, money
from .control import add_control_routes
from .events import Subscriber, serve_stream
from .faults import Fault
from .inputs import InputError, fetch_inputs
from .responses import STATE_KEY, error, error_body, get_state, short_error
from .state import ALL_STATUSES, EmulatorState, Generation, InsufficientCredits

_INVALID_JSON = object()
_BODY_KEY = web.RequestKey("oxen_json_body", object)
_SYNC_COMMON_FIELDS = frozenset({"model", "response_format", "target_namespace"})
_QUEUE_COMMON_FIELDS = frozenset({"model", "num_generations", "target_namespace"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_state = get_state


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
    if request.body_exists:
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body = _INVALID_JSON
    request[_BODY_KEY] = body
    return body


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "<unmatched>"


def _drop_connection(request: web.Request) -> web.Response:
    # Closing the transport before anything is written: the client sees the connection die with no
    # response at all. The returned object is never sent.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def _fault_detail(status: int) -> str:
    if status == 402:
        return "Insufficient credits to run this request (injected fault)"
    return f"Injected fault: HTTP {status}"


def _fault_response(fault: Fault) -> web.Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    if isinstance(fault.body, str):
        return web.Response(status=fault.status, text=fault.body, headers=headers)
    body = fault.body if fault.body is not None else error_body(fault.status, _fault_detail(fault.status))
    return web.json_response(body, status=fault.status, headers=headers)


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, count, add latency, inject faults and check auth, in that order, around every handler."""
    path = request.path
    if path.startswith("/_emulator/"):
        return await handler(request)
    state = _state(request)
    route = _route_template(request)
    state.requests.count(request.method, route)
    is_api = path.startswith("/api/")
    entry: dict[str, Any] | None = None
    authorized = True
    if is_api:
        authorized = _authorized(request, state.config.api_key)
        body = await _read_body(request)
        entry = state.requests.add(
            request.method,
            path,
            route,
            dict(request.query),
            None if body is _INVALID_JSON else body,
            authorized,
            time.time(),
            raw_path=request.raw_path.partition("?")[0],
            user_agent=request.headers.get("User-Agent", ""),
        )
        if state.config.latency_ms > 0:
            await asyncio.sleep(state.config.latency_ms / 1000)

    response: web.StreamResponse
    fault = state.faults.take_request_fault(request.method, path)
    if fault is not None and not fault.after_processing:
        if fault.type == "status":
            response = _fault_response(fault)
            if entry is not None:
                entry["status"] = response.status
            return response
        if fault.type == "drop":
            if entry is not None:
                entry["dropped"] = True
            return _drop_connection(request)
        await asyncio.sleep(fault.seconds)

    if not authorized:
        response = error(401, "Invalid or missing API key")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # aiohttp's own 404/405 for unknown routes, answered in the API's JSON error shape.
            response = error(exc.status, exc.reason)

    if fault is not None and fault.after_processing:
        if fault.type == "drop":
            if entry is not None:
                entry["dropped"] = True
            return _drop_connection(request)
        await asyncio.sleep(fault.seconds)
    if entry is not None:
        entry["status"] = response.status
    return response


# --- request helpers --------------------------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    body = await _read_body(request)
    if body is _INVALID_JSON:
        return error(400, "Request body must be valid JSON")
    if not isinstance(body, dict):
        return error(400, "Request body must be a JSON object")
    return body


def _model_for(state: EmulatorState, body: dict[str, Any]) -> ModelSpec | web.Response:
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        return error(400, "model is required")
    spec = state.generations.catalogue.get(model_id)
    if spec is None:
        return error(400, f"Model not found: {model_id}")
    return spec


def _namespace(state: EmulatorState, body: dict[str, Any]) -> str:
    namespace = body.get("target_namespace")
    return namespace if isinstance(namespace, str) and namespace else state.config.default_namespace


def _small_int(body: dict[str, Any], name: str) -> int | None:
    """The field as an int within 1..MAX_IMAGES_PER_REQUEST (default 1), or None when out of range."""
    value = body.get(name, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES_PER_REQUEST:
        return None
    return value


# --- sync generation --------------------------------------------------------------------------------


def _insufficient(exc: InsufficientCredits) -> web.Response:
    return error(402, str(exc))


def _endpoint_problem(spec: ModelSpec, endpoint: str) -> str | None:
    """Why ``spec`` cannot be run by the sync ``endpoint`` (None: it can)."""
    outputs = ", ".join(spec.outputs)
    if endpoint == "/images/generate":
        if not spec.makes_images:
            return f"model: '{spec.id}' does not generate images (outputs: {outputs})"
        if spec.is_edit:
            return f"model: '{spec.id}' edits images: use POST /api/ai/images/edit with input_image"
    elif endpoint == "/images/edit":
        if not spec.is_edit:
            return f"model: '{spec.id}' is not an image-editing model (its endpoint is {spec.endpoint})"
    elif not spec.makes_video:
        return f"model: '{spec.id}' does not generate video (outputs: {outputs})"
    return None


async def _sync_generate(request: web.Request, endpoint: str) -> web.Response:
    """The sync endpoints: validate everything (input images are fetched now), charge, "render" for the
    model's render time, answer with URLs or base64 under ``images`` (or ``videos``)."""
    state = _state(request)
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    spec = _model_for(state, body)
    if isinstance(spec, web.Response):
        return spec
    problem = _endpoint_problem(spec, endpoint)
    if problem is not None:
        return error(400, problem)
    params = {key: value for key, value in body.items() if key not in _SYNC_COMMON_FIELDS}
    prompt_error = check_prompt(spec, params)
    if prompt_error is not None:
        return error(400, prompt_error.message)
    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        return error(400, f"response_format: {response_format!r} is not one of ['url', 'b64_json']")
    param_error = validate_params(spec, params)
    if param_error is not None:
        return error(400, param_error.message)
    num_images = 1
    if spec.count_param is not None:
        counted = _small_int(params, spec.count_param)
        if counted is None:
            return error(400, f"{spec.count_param} must be an integer from 1 to {MAX_IMAGES_PER_REQUEST}")
        num_images = counted
    try:
        inputs = await fetch_inputs(input_urls(spec, params), state.config.input_timeout_seconds)
    except InputError as exc:
        return error(400, str(exc))

    store = state.generations
    try:
        generation = store.start_sync(spec, params, _namespace(state, body), num_images, inputs)
    except InsufficientCredits as exc:
        return _insufficient(exc)
    try:
        await asyncio.sleep(store.sync_render_seconds(spec))
    finally:
        # A client that left mid-render does not undo the (paid) work.
        store.finish_sync(generation)
    results: list[dict[str, str]] = []
    for index, output in enumerate(generation.outputs):
        if response_format == "b64_json":
            data = await store.images.get(output)
            results.append({"b64_json": base64.b64encode(data).decode("ascii")})
        else:
            results.append({"url": store.result_url(generation, index)})
    key = "videos" if spec.makes_video else "images"
    return web.json_response({"model": spec.id, "created": int(generation.enqueued_at), key: results})


async def generate_image(request: web.Request) -> web.Response:
    """``POST /api/ai/images/generate``: text-to-image."""
    return await _sync_generate(request, "/images/generate")


async def edit_image(request: web.Request) -> web.Response:
    """``POST /api/ai/images/edit``: image-to-image; ``input_image`` is fetched before anything is paid."""
    return await _sync_generate(request, "/images/edit")


async def generate_video(request: web.Request) -> web.Response:
    """``POST /api/ai/videos/generate``: text- or image-to-video (the docs recommend the queue)."""
    return await _sync_generate(request, "/videos/generate")


# --- queue ------------------------------------------------------------------------------------------


async def enqueue(request: web.Request) -> web.Response:
    """``POST /api/ai/queue``: only the model, ``num_generations`` and credits are checked (per contract)."""
    state = _state(request)
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    spec = _model_for(state, body)
    if isinstance(spec, web.Response):
        return spec
    if not {"image", "video"} & set(spec.outputs):
        return error(400, f"model: '{spec.id}' does not output images or video and cannot be queued")
    count = _small_int(body, "num_generations")
    if count is None:
        return error(400, f"num_generations must be an integer from 1 to {MAX_IMAGES_PER_REQUEST}")
    params = {key: value for key, value in body.items() if key not in _QUEUE_COMMON_FIELDS}
    try:
        rows = state.generations.enqueue(spec, params, _namespace(state, body), count)
    except InsufficientCredits as exc:
        return _insufficient(exc)
    return web.json_response(
        {"generations": [{"generation_id": row.generation_id, "status": row.status} for row in rows]}
    )


def _queue_row(request: web.Request) -> Generation | web.Response:
    row = _state(request).generations.queue_row(request.match_info["id"])
    return error(404, "Generation not found") if row is None else row


async def get_generation(request: web.Request) -> web.Response:
    row = _queue_row(request)
    if isinstance(row, web.Response):
        return row
    return web.json_response(_state(request).generations.to_json(row))


Filters = tuple[frozenset[str] | None, str | None, str | None, str | None]


def _filters(request: web.Request) -> Filters | web.Response:
    query = request.query
    statuses: frozenset[str] | None = None
    if query.get("status"):
        statuses = frozenset(part.strip() for part in query["status"].split(",") if part.strip())
        unknown = statuses - ALL_STATUSES
        if unknown:
            return error(400, f"status: {sorted(unknown)} not in {sorted(ALL_STATUSES)}")
    return (
        statuses,
        query.get("model") or None,
        query.get("namespace") or None,
        query.get("media_type") or None,
    )


async def list_queue(request: web.Request) -> web.Response:
    """In-flight rows by default; ``status`` (comma-separated) widens to terminal rows."""
    filters = _filters(request)
    if isinstance(filters, web.Response):
        return filters
    store = _state(request).generations
    rows = [store.to_json(row) for row in store.select(*filters)]
    return web.json_response({"count": len(rows), "generations": rows})


async def cancel_generation(request: web.Request) -> web.Response:
    """Cancel a live row. The contract is silent on a finished row: the emulator answers 400
    ``invalid_params`` naming its terminal state (one of the two readings clients must handle)."""
    row = _queue_row(request)
    if isinstance(row, web.Response):
        return row
    if not _state(request).generations.cancel(row):
        return error(400, f"Generation is already {row.status}")
    return web.json_response({"status": "success", "generation_id": row.generation_id})


async def retry_generation(request: web.Request) -> web.Response:
    row = _queue_row(request)
    if isinstance(row, web.Response):
        return row
    if row.status == "succeeded":
        return error(400, "Generation is already succeeded and cannot be retried")
    try:
        fresh = _state(request).generations.retry(row)
    except InsufficientCredits as exc:
        return _insufficient(exc)
    return web.json_response(
        {
            "generations": [
                {
                    "generation_id": fresh.generation_id,
                    "status": fresh.status,
                    "retried_from_id": row.generation_id,
                }
            ]
        }
    )


# --- history ----------------------------------------------------------------------------------------


def _non_negative(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    return int(raw) if raw.isdigit() else None


async def list_history(request: web.Request) -> web.Response:
    """Every generation, queue and sync (newest first, paged); ``count`` and ``total_cost`` cover
    every match, not just the page."""
    filters = _filters(request)
    if isinstance(filters, web.Response):
        return filters
    statuses, model, namespace, media_type = filters
    limit, offset = _non_negative(request, "limit", 100), _non_negative(request, "offset", 0)
    if limit is None or offset is None:
        return error(400, "limit and offset must be non-negative integers")
    store = _state(request).generations
    rows = list(store.select(statuses or ALL_STATUSES, model, namespace, media_type, include_sync=True))
    total_cost = sum((row.cost for row in rows), Decimal(0))
    page = rows[::-1][offset : offset + limit]
    return web.json_response(
        {
            "generations": [store.details_json(row) for row in page],
            "total_cost": money(total_cost),
            "count": len(rows),
        }
    )


async def get_history_item(request: web.Request) -> web.Response:
    store = _state(request).generations
    row = store.rows.get(request.match_info["id"])
    if row is None:
        return error(404, "Generation not found")
    return web.json_response(store.details_json(row))


# --- events -----------------------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events``: the SSE stream (404 while events are disabled)."""
    state = _state(request)
    if not state.config.events_enabled:
        return error(404, "Not found")

    def on_open(subscriber: Subscriber) -> None:
        for fault in state.faults.stream_faults():
            subscriber.drop(fault.after_events)
            state.faults.consume(fault)
            break

    return await serve_stream(request, state.broker, lambda: state.config.keepalive_seconds, on_open)


# --- models -----------------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    specs = list(_state(request).generations.catalogue.values())
    developer = request.query.get("developer_name")
    if developer:
        specs = [spec for spec in specs if spec.model["developer"]["name"].lower() == developer.lower()]
    action = request.query.get("action")
    if action:
        specs = [spec for spec in specs if matches_action(spec, action)]
    return web.json_response({"object": "list", "data": [spec.public() for spec in specs]})


async def search_models(request: web.Request) -> web.Response:
    text = request.query.get("search", "")
    specs = [spec for spec in _state(request).generations.catalogue.values() if matches_search(spec, text)]
    return web.json_response({"object": "list", "data": [spec.public() for spec in specs]})


async def get_model(request: web.Request) -> web.Response:
    """One model; its id arrives URL-decoded (``openai%2Fgpt-image-1.5%3Alatest``). ``deployment_status``
    is accepted and ignored (every emulated model is live)."""
    model_id = request.match_info["id"]
    spec = _state(request).generations.catalogue.get(model_id)
    if spec is None:
        # The model endpoints answer the shorter error shape.
        return short_error(404, f"Model not found: {model_id}")
    return web.json_response(spec.public())


# --- files ------------------------------------------------------------------------------------------


async def get_file(request: web.Request) -> web.Response:
    """A result file (image or MP4 video) behind a signed URL (no bearer auth); rendered on first
    fetch, then cached."""
    state = _state(request)
    generation_id, name = request.match_info["id"], request.match_info["name"]
    if not state.generations.signer.check(
        generation_id, name, request.query.get("expires"), request.query.get("sig")
    ):
        return error(403, "URL expired")
    row = state.generations.rows.get(generation_id)
    output = None
    if row is not None and row.status == "succeeded":
        output = next((candidate for candidate in row.outputs if candidate.filename == name), None)
    if output is None:
        return error(404, "File not found")
    data = await state.generations.images.get(output)
    return web.Response(
        body=data, content_type=output.content_type, headers={"Cache-Control": "private, max-age=60"}
    )


# --- application ------------------------------------------------------------------------------------


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE_KEY]
    state.broker.close_all()
    state.generations.stop_all()


def create_app(config: EmulatorConfig | None = None, state: EmulatorState | None = None) -> web.Application:
    """The aiohttp application: API routes, files and the ``/_emulator`` control API."""
    if state is None:
        state = EmulatorState(config or EmulatorConfig())
    app = web.Application(middlewares=[front_door], client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state
    router = app.router
    router.add_post("/api/ai/images/generate", generate_image)
    router.add_post("/api/ai/images/edit", edit_image)
    router.add_post("/api/ai/videos/generate", generate_video)
    router.add_post("/api/ai/queue", enqueue)
    router.add_get("/api/ai/queue", list_queue)
    router.add_get("/api/ai/queue/{id}", get_generation)
    router.add_delete("/api/ai/queue/{id}", cancel_generation)
    router.add_post("/api/ai/queue/{id}/retry", retry_generation)
    router.add_get("/api/ai/generations", list_history)
    router.add_get("/api/ai/generations/{id}", get_history_item)
    router.add_get("/api/events", events)
    router.add_get("/api/ai/models", list_models)
    router.add_get("/api/ai/models/search", search_models)  # before {id}: routes match in order
    router.add_get("/api/ai/models/{id}", get_model)
    router.add_get("/files/{id}/{name}", get_file)
    add_control_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app
