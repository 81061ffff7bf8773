"""OxenHook (sync, httpx.Client) for workers, OxenAsyncHook (async, httpx.AsyncClient) for triggers.

Workers do everything with :class:`OxenHook` (validate, enqueue, wait, download); the
triggerer only reads and cancels, with :class:`OxenAsyncHook`. Request descriptions,
connection settings, error mapping and retry decisions live in :mod:`.api` and :mod:`.retry`,
request validation in :mod:`.validation`: the two request loops below differ only by ``await``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import httpx
from airflow.sdk import BaseHook
from httpx_sse import aconnect_sse

from airflow_provider_oxen import __version__
from airflow_provider_oxen.exceptions import (
    OxenAPIStatusError,
    OxenError,
    OxenNotFoundError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks import api
from airflow_provider_oxen.hooks.api import ApiCall, BearerAuth, OxenSettings, RetryAfter
from airflow_provider_oxen.hooks.download_policy import (
    DownloadPolicy,
    build_download_client,
    check_url,
    iter_capped,
)
from airflow_provider_oxen.hooks.validation import prepare_parameters
from airflow_provider_oxen.models import (
    EnqueuedGeneration,
    EnqueueResponse,
    Generation,
    GenerationDetails,
    GenerationList,
    ImageGenerationRequest,
    ImageGenerationResponse,
    ModelList,
    OxenEvent,
    OxenModel,
    models_for,
    split_generation_counts,
)
from airflow_provider_oxen.waiting import TRANSIENT_ERRORS, ProgressLog, StatusTracker

_DOWNLOAD_CHUNK = 256 * 1024

# What ``/api/ai/generations/{id}`` adds to a finished row.
_DETAIL_FIELDS = {"cost", "enqueued_at", "started_at", "completed_at"}

OnEnqueued = Callable[[list[EnqueuedGeneration]], None]


@dataclass(frozen=True)
class PreparedRequest:
    """A request checked against its model: exactly the parameters to send, and the model."""

    model_id: str
    parameters: dict[str, Any]
    model: OxenModel


@dataclass(frozen=True)
class DownloadResult:
    size: int
    sha256: str
    content_type: str | None


# Model details (and so request schemas) change rarely; re-read them at most this often.
MODEL_TTL = 600.0
# (read at, model) per (API base URL, model id), for every hook and thread of the process: a dict
# operation is atomic, and two threads missing at once both read the model (either answer is right).
MODEL_CACHE: dict[tuple[str, str], tuple[float, OxenModel]] = {}


class _OxenHookBase(BaseHook):
    """Connection handling common to the sync and async hooks."""

    conn_name_attr = "oxen_conn_id"
    default_conn_name = "oxen_default"
    conn_type = "oxen"
    hook_name = "Oxen.ai"
    client_flavour = "sync"

    def __init__(
        self,
        oxen_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        super().__init__()
        self.oxen_conn_id = oxen_conn_id
        self._overrides = {"timeout": timeout, "max_retries": max_retries}
        self._settings: OxenSettings | None = None

    def _settings_from_connection(self, conn: Any) -> OxenSettings:
        extras = dict(conn.extra_dejson or {})
        extras.update({name: value for name, value in self._overrides.items() if value is not None})
        settings = OxenSettings.from_connection(conn.host, conn.password, extras)
        if not settings.api_key.get_secret_value():
            raise OxenValidationError(
                f"Connection '{self.oxen_conn_id}' has no API key: put it in the password field.",
                field="password",
            )
        return settings

    def client_kwargs(self, settings: OxenSettings) -> dict[str, Any]:
        """The keyword arguments of every ``httpx`` client built for this hook (API and downloads).

        TLS is httpx's default, a context per client: a shared one races on ALPN (CPython issue 141012).
        """
        return {
            "base_url": settings.base_url,
            "auth": BearerAuth(settings.api_key),
            "timeout": httpx.Timeout(settings.timeout),
            # The flavour tells worker (sync) from triggerer (async) traffic in request logs.
            "headers": {
                "User-Agent": f"airflow-provider-oxen/{__version__} ({self.client_flavour})",
                "Accept": "application/json",
            },
            "follow_redirects": True,
        }

    def _retry_delay(
        self,
        call: ApiCall,
        failure: httpx.Response | httpx.TransportError,
        attempt: int,
        settings: OxenSettings,
    ) -> float:
        """Seconds to wait before sending ``call`` again after ``failure``; raises the error instead."""
        plan: RetryAfter | OxenError | None
        if isinstance(failure, httpx.TransportError):
            plan = api.plan_after_transport_error(call, failure, attempt, settings.retry)
        else:
            plan = api.plan_after_response(call, failure, attempt, settings.retry)
        assert plan is not None  # only failures come here
        if isinstance(plan, OxenError):
            raise plan
        self.log.warning(
            "Oxen %s: %s; retry %d/%d in %.1f s",
            call.describe(),
            plan.reason,
            attempt + 1,
            settings.retry.max_retries,
            plan.delay,
        )
        return plan.delay


class OxenHook(_OxenHookBase):
    """Synchronous client of the Oxen.ai inference API.

    :param oxen_conn_id: Airflow connection of type ``oxen`` (host = API base URL, password =
        API key; extras ``timeout``, ``max_retries``, ``backoff_base``, ``backoff_max``,
        ``target_namespace``).
    :param timeout: per-request timeout in seconds, overriding the connection's.
    :param max_retries: retries of a failed request, overriding the connection's.
    """

    def __init__(self, oxen_conn_id: str = _OxenHookBase.default_conn_name, **kwargs: Any) -> None:
        super().__init__(oxen_conn_id, **kwargs)
        self._client: httpx.Client | None = None
        # Result URLs go through their own client (see download_policy): built on the first download.
        self._download_client: httpx.Client | None = None
        self._download_policy: DownloadPolicy | None = None

    @property
    def settings(self) -> OxenSettings:
        if self._settings is None:
            self._settings = self._settings_from_connection(self.get_connection(self.oxen_conn_id))
        return self._settings

    def get_conn(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**self.client_kwargs(self.settings))
        return self._client

    def close(self) -> None:
        for client in (self._client, self._download_client):
            if client is not None:
                client.close()
        self._client = self._download_client = None

    def __enter__(self) -> OxenHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(
        self,
        call: ApiCall,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """Send with the retry policy; with ``stream`` the successful body is left unread."""
        client, settings = client or self.get_conn(), self.settings
        for attempt in itertools.count():
            request = client.build_request(call.method, call.path, params=call.params, json=call.json)
            try:
                response = client.send(request, stream=stream, auth=auth)
            except httpx.TransportError as exc:
                time.sleep(self._retry_delay(call, exc, attempt, settings))
                continue
            if response.is_success:
                return response
            response.read()  # the error mapping reads the body
            response.close()
            time.sleep(self._retry_delay(call, response, attempt, settings))
        raise AssertionError("unreachable")

    def _json(self, call: ApiCall) -> Any:
        return api.json_body(call, self._send(call))

    def generate_image(
        self, request: ImageGenerationRequest | PreparedRequest, *, response_format: str = "url"
    ) -> ImageGenerationResponse:
        """Generate synchronously (``POST /api/ai/images/generate``); the API validates at once."""
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        payload = self._payload(prepared, response_format=response_format)
        call = ApiCall("POST", "/api/ai/images/generate", json=payload, paid=True)
        return ImageGenerationResponse.model_validate(self._json(call))

    def enqueue(
        self,
        request: ImageGenerationRequest | PreparedRequest,
        num_generations: int = 1,
        *,
        on_enqueued: OnEnqueued | None = None,
    ) -> list[EnqueuedGeneration]:
        """Queue ``num_generations`` generations (one image each), at most 4 per request.

        A request not yet :meth:`prepare`-d is checked first, so a bad parameter costs nothing;
        ``on_enqueued`` gets each accepted request's generations, to record ids before the next.
        """
        counts = split_generation_counts(num_generations)
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        # The queue's unit is the row (one image each); ``num_generations`` is added per request.
        payload = self._payload(prepared)
        enqueued: list[EnqueuedGeneration] = []
        for count in counts:
            call = ApiCall("POST", "/api/ai/queue", json={**payload, "num_generations": count}, paid=True)
            batch = EnqueueResponse.model_validate(self._json(call)).generations
            self.log.info("Enqueued %d Oxen generation(s): %s", len(batch), [g.generation_id for g in batch])
            if on_enqueued is not None:
                on_enqueued(batch)
            enqueued.extend(batch)
        return enqueued

    def _payload(self, prepared: PreparedRequest, **extra: Any) -> dict[str, Any]:
        payload = {**prepared.parameters, "model": prepared.model_id, **extra}
        if self.settings.target_namespace:
            payload["target_namespace"] = self.settings.target_namespace
        return payload

    def get_generation(self, generation_id: str) -> Generation:
        return Generation.model_validate(self._json(api.generation_call(generation_id)))

    def get_generation_details(self, generation_id: str) -> GenerationDetails:
        """Full metadata of one generation, including its ``cost`` (a decimal string)."""
        return GenerationDetails.model_validate(self._json(api.generation_details_call(generation_id)))

    def cancel_generation(self, generation_id: str) -> Generation:
        """Cancel; answers the row as re-read afterwards (DELETE itself only says "success").

        A row that already finished has nothing left to cancel: its row is answered as it is.
        """
        try:
            self._json(api.generation_call(generation_id, "DELETE"))
        except OxenAPIStatusError as exc:
            if not api.may_be_already_finished(exc):
                raise
            row = self.get_generation(generation_id)
            if not row.status.is_terminal:
                raise
            return row
        return self.get_generation(generation_id)

    def list_queue(self, **filters: Any) -> list[Generation]:
        return self.queue_listing(**filters).generations

    def queue_listing(self, **filters: Any) -> GenerationList:
        """The listing with its ``count`` (so a caller can tell whether it is complete)."""
        return GenerationList.model_validate(self._json(api.list_call("/api/ai/queue", filters)))

    def get_model(self, model_id: str, *, refresh: bool = False) -> OxenModel:
        key = (self.settings.base_url, model_id)
        cached = MODEL_CACHE.get(key)
        if cached is not None and not refresh and time.monotonic() - cached[0] <= MODEL_TTL:
            return cached[1]
        model = OxenModel.model_validate(self._json(api.model_call(model_id)))
        MODEL_CACHE[key] = (time.monotonic(), model)
        return model

    def list_models(self, **filters: Any) -> list[OxenModel]:
        return ModelList.model_validate(self._json(api.list_call("/api/ai/models", filters))).data

    def models_for(self, task: str) -> list[OxenModel]:
        """Models that do ``task``: text-to-image, image-to-image, text-to-video or image-to-video."""
        return models_for(self.list_models(), task)

    def prepare(self, request: ImageGenerationRequest, *, allow_unlisted: bool = False) -> PreparedRequest:
        """Check ``request`` against its model and keep only what the model's schema names.

        Raises :class:`OxenValidationError` naming the field; nothing is paid for. A name an
        open schema does not list, but a typo away from one it does, is refused unless
        ``allow_unlisted``.
        """
        try:
            model = self.get_model(request.model)
        except OxenNotFoundError:
            raise OxenValidationError(
                f"Unknown Oxen model '{request.model}': check the model id "
                "(OxenHook.list_models() lists them).",
                field="model",
            ) from None
        parameters = prepare_parameters(model, request.parameters(), allow_unlisted=allow_unlisted)
        return PreparedRequest(model_id=request.model, parameters=parameters, model=model)

    @property
    def download_policy(self) -> DownloadPolicy:
        """What result URLs may be fetched (connection extras ``download_*``)."""
        if self._download_policy is None:
            extras = dict(self.get_connection(self.oxen_conn_id).extra_dejson or {})
            self._download_policy = DownloadPolicy.from_connection(self.settings.base_url, extras)
        return self._download_policy

    def get_download_conn(self) -> httpx.Client:
        """The client for result URLs: its transport checks every hop against the download policy."""
        if self._download_client is None:
            kwargs = self.client_kwargs(self.settings)
            self._download_client = build_download_client(self.download_policy, **kwargs)
        return self._download_client

    @contextmanager
    def open_download(self, url: str) -> Iterator[httpx.Response]:
        """Stream a result URL; the response is status-checked, the body not yet read.

        The URL and every redirect hop are checked against :attr:`download_policy` before any
        connection, and the body is capped: a refusal raises ``OxenDownloadRefusedError``.
        """
        target = check_url(url, self.download_policy)  # refused at once, before any retry
        # Result URLs are usually signed links on a storage host: sending our key there would
        # leak it (and signed storage URLs reject a second credential), so only same-origin
        # downloads carry it.
        auth = httpx.USE_CLIENT_DEFAULT if target.own_origin else None
        response = self._send(ApiCall("GET", url), stream=True, auth=auth, client=self.get_download_conn())
        try:
            yield response
        finally:
            response.close()

    def download_to(
        self, url: str, fileobj: IO[bytes], *, on_length: Callable[[int], None] | None = None
    ) -> DownloadResult:
        """Stream ``url`` into ``fileobj`` chunk by chunk; returns size, sha256 and content type.

        ``on_length`` gets the announced Content-Length before the first byte is written (a spool
        then goes to disk at once instead of first filling its memory threshold).
        """
        digest, size = hashlib.sha256(), 0
        with self.open_download(url) as response:
            length = response.headers.get("Content-Length", "")
            if on_length is not None and length.isdigit():
                on_length(int(length))
            for chunk in iter_capped(response, self.download_policy.max_bytes, _DOWNLOAD_CHUNK):
                fileobj.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            content_type = response.headers.get("Content-Type")
        return DownloadResult(size=size, sha256=digest.hexdigest(), content_type=content_type)

    def complete_rows(self, rows: Iterable[Generation]) -> list[Generation]:
        """Add cost (and timings an event lacks) with one ``/api/ai/generations/{id}`` read per row.

        Cost is informational once the images exist: a failed read leaves it empty. (Read here,
        not by the trigger: one triggerer serves thousands of waits, each worker only its own.)
        """
        completed = []
        for row in rows:
            try:
                details = self.get_generation_details(row.generation_id)
            except OxenError as exc:
                self.log.warning("Cost of Oxen generation %s unavailable: %s", row.generation_id, exc)
                completed.append(row)
                continue
            known = details.model_dump(exclude_none=True, include=_DETAIL_FIELDS)
            completed.append(
                row.model_copy(update={k: v for k, v in known.items() if getattr(row, k) is None})
            )
        return completed

    def cancel_generations(self, generation_ids: Iterable[str]) -> list[Generation]:
        """Best-effort cancel of each id; failures are logged, not raised (used on kill/timeout)."""
        cancelled = []
        for generation_id in generation_ids:
            try:
                cancelled.append(self.cancel_generation(generation_id))
            except OxenError as exc:
                self.log.warning("Could not cancel Oxen generation %s: %s", generation_id, exc)
        if cancelled:
            self.log.info(
                "Cancelled %d Oxen generation(s): %s", len(cancelled), [g.generation_id for g in cancelled]
            )
        return cancelled

    def wait_for_generations(
        self,
        generation_ids: Iterable[str],
        *,
        deadline: float,
        poll_interval: float = 5.0,
        cancel_unfinished: bool = True,
    ) -> dict[str, Any]:
        """Poll until every generation is terminal or ``deadline`` (epoch seconds) passes.

        Returns the same payload as :class:`OxenGenerationTrigger`'s event; unfinished
        generations are cancelled at the deadline so nobody pays for images nobody collects.
        """
        tracker = StatusTracker(generation_ids, logger=self.log)
        progress = ProgressLog(tracker, self.log)
        timeout = max(0.0, deadline - time.time())
        while True:
            for generation_id in tracker.pending:
                try:
                    tracker.update(self.get_generation(generation_id))
                except TRANSIENT_ERRORS as exc:
                    self.log.warning("Status of %s unavailable for now: %s", generation_id, exc)
            if tracker.done:
                return tracker.payload()
            if time.time() >= deadline:
                break
            progress.maybe_log()
            time.sleep(max(0.0, min(poll_interval, deadline - time.time())))  # never past the deadline
        # Built before cancelling, so it names what was unfinished at the deadline.
        payload = tracker.payload(timed_out=True, timeout=timeout)
        if cancel_unfinished:
            self.cancel_generations(tracker.pending)
        return payload

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: an authenticated call that costs nothing."""
        try:
            in_flight = self.list_queue()
        except OxenError as exc:  # anything else, Airflow's own test_connection turns into a message
            return False, str(exc)
        return True, f"Connected to {self.settings.base_url}; {len(in_flight)} generation(s) in flight."


class OxenAsyncHook(_OxenHookBase):
    """Asynchronous client for triggers. Never blocks the event loop.

    Pass ``client`` to share one ``httpx.AsyncClient`` (and its connection pool) between many
    hooks of the same connection; the hook then does not close it.
    """

    client_flavour = "async"

    def __init__(
        self,
        oxen_conn_id: str = _OxenHookBase.default_conn_name,
        *,
        client: httpx.AsyncClient | None = None,
        settings: OxenSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(oxen_conn_id, **kwargs)
        self._client: httpx.AsyncClient | None = client
        self._owns_client = client is None
        self._settings = settings

    async def get_settings(self) -> OxenSettings:
        if self._settings is None:
            conn = await self.aget_connection(self.oxen_conn_id)
            self._settings = self._settings_from_connection(conn)
        return self._settings

    async def new_client(self, **overrides: Any) -> httpx.AsyncClient:
        """A client built from :meth:`client_kwargs` (and ``overrides``), off the event loop: loading
        the CA bundle (some 25 ms of CPU) would hold up every trigger the triggerer runs."""
        kwargs = {**self.client_kwargs(await self.get_settings()), **overrides}
        return await asyncio.to_thread(httpx.AsyncClient, **kwargs)

    async def get_async_conn(self) -> httpx.AsyncClient:
        if self._client is None:
            client = await self.new_client()
            if self._client is None:
                self._client, self._owns_client = client, True
            else:  # another coroutine built one meanwhile
                await client.aclose()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    async def __aenter__(self) -> OxenAsyncHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, call: ApiCall) -> httpx.Response:
        client, settings = await self.get_async_conn(), await self.get_settings()
        for attempt in itertools.count():
            request = client.build_request(call.method, call.path, params=call.params, json=call.json)
            try:
                response = await client.send(request)
            except httpx.TransportError as exc:
                await asyncio.sleep(self._retry_delay(call, exc, attempt, settings))
                continue
            if response.is_success:
                return response
            await asyncio.sleep(self._retry_delay(call, response, attempt, settings))
        raise AssertionError("unreachable")

    async def _json(self, call: ApiCall) -> Any:
        return api.json_body(call, await self._send(call))

    async def get_generation(self, generation_id: str) -> Generation:
        return Generation.model_validate(await self._json(api.generation_call(generation_id)))

    async def list_queue_body(
        self, *, object_hook: Callable[[dict[str, Any]], Any] | None = None, **filters: Any
    ) -> Any:
        """The listing's JSON as sent (each object through ``object_hook``, if given), for a
        caller that parses its rows one by one (the hub)."""
        call = api.list_call("/api/ai/queue", filters)
        return api.json_body(call, await self._send(call), object_hook=object_hook)

    async def cancel_generations(self, generation_ids: Iterable[str]) -> list[str]:
        """Best-effort concurrent cancel; answers the ids cancelled. Failures are logged, not raised.

        Unlike :meth:`OxenHook.cancel_generations`, no row is read back: the triggerer needs none.
        """

        async def cancel(generation_id: str) -> str | None:
            try:
                await self._send(api.generation_call(generation_id, "DELETE"))
            except OxenError as exc:
                # Such a 4xx (see may_be_already_finished) most likely means it finished first.
                finished = isinstance(exc, OxenAPIStatusError) and api.may_be_already_finished(exc)
                log = self.log.info if finished else self.log.warning
                log("Could not cancel Oxen generation %s: %s", generation_id, exc)
                return None
            return generation_id

        results = await asyncio.gather(*(cancel(i) for i in generation_ids))
        cancelled = [i for i in results if i is not None]
        if cancelled:
            self.log.info("Cancelled %d Oxen generation(s): %s", len(cancelled), cancelled)
        return cancelled

    async def events(
        self,
        *,
        read_timeout: float | None = 90.0,
        on_open: Callable[[], None] | None = None,
        only: str | None = None,
    ) -> AsyncIterator[OxenEvent]:
        """Yield events from ``GET /api/events`` until the stream ends or breaks.

        ``read_timeout`` bounds silence on the wire, so a dead connection raises instead of hanging;
        ``on_open`` is called once the stream is established. With ``only`` (an event name),
        other events are skipped before their data is decoded (the triggerer's hub reads one
        kind out of a stream carrying thousands a second).
        """
        client = await self.get_async_conn()
        call = ApiCall("GET", api.EVENTS_PATH)
        timeout = httpx.Timeout((await self.get_settings()).timeout, read=read_timeout)
        async with aconnect_sse(client, "GET", api.EVENTS_PATH, timeout=timeout) as source:
            if not source.response.is_success:
                await source.response.aread()
                raise api.error_from_response(call, source.response)
            if on_open is not None:
                on_open()
            async for sse in source.aiter_sse():
                if only is None or sse.event == only:
                    yield parse_event(sse.event, sse.data, sse.id)


def parse_event(event: str, data: str, event_id: str | None = None) -> OxenEvent:
    """Unknown or non-JSON payloads are kept raw rather than rejected."""
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"raw": data}
    if not isinstance(parsed, dict):
        parsed = {"raw": parsed}
    return OxenEvent(event=event or "message", data=parsed, id=event_id or None)
