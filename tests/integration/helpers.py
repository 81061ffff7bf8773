"""Running the operator and trigger in-process against the emulator (shared by the integration tests)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.ledger import GenerationLedger, LedgerEntry
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
from tests.fixtures import FakeTaskStateStore


class FakeTI:
    """What the operator reads of ``context["ti"]``: the try (a final one, or with retries left)
    and ``max_tries`` (which a clear raises)."""

    def __init__(self, try_number: int, max_tries: int | None = None) -> None:
        self.try_number = try_number
        self.max_tries = max_tries


def task_context(
    store: FakeTaskStateStore | None = None, try_number: int | None = None, max_tries: int | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {"task_state_store": store or FakeTaskStateStore()}
    if try_number is not None:
        context["ti"] = FakeTI(try_number, max_tries)
    return context


def generate_operator(**kwargs: Any) -> OxenGenerateImageOperator:
    defaults: dict[str, Any] = {"task_id": "gen", "prompt": "A poster", "poll_interval": 0.1, "timeout": 30}
    return OxenGenerateImageOperator(**{**defaults, **kwargs})


def with_pricing(model_id: str, **update: Any) -> None:
    """As if Oxen published other pricing (or schema): the cached model is what a task reads."""
    from airflow_provider_oxen.hooks.oxen import MODEL_CACHE

    with OxenHook() as hook:
        model = hook.get_model(model_id)
        MODEL_CACHE[(hook.settings.base_url, model.id)] = (time.monotonic(), model.model_copy(update=update))


def run_trigger(trigger: OxenGenerationTrigger) -> dict[str, Any]:
    """The payload of the trigger's one event."""

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first_event())


def defer(operator: OxenGenerateImageOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    return info.value


class WorkerDied(BaseException):
    """A worker dying (BaseException: nothing may catch it)."""


def crash(
    monkeypatch: pytest.MonkeyPatch, operator: OxenGenerateImageOperator, when: str
) -> FakeTaskStateStore:
    """Run ``operator``'s first try until its worker dies ``when``: "before the POST" (it recorded
    that it is sending), "after the answer" (Oxen answered the enqueue; the answer is not
    recorded) or "before deferring" (all recorded). Returns the task's state store."""
    original_save = GenerationLedger.save
    saves: list[LedgerEntry] = []

    def die(*args: Any, **kwargs: Any) -> None:
        raise WorkerDied

    def save(self: GenerationLedger, entry: LedgerEntry) -> None:
        saves.append(entry)
        if len(saves) == 2:  # 1: the pending mark before sending; 2: recording the answer
            raise WorkerDied
        original_save(self, entry)

    store = FakeTaskStateStore()
    where = {
        "before the POST": (OxenHook, "enqueue", die),
        "after the answer": (GenerationLedger, "save", save),
        "before deferring": (type(operator), "defer", die),
    }
    with monkeypatch.context() as patch:
        patch.setattr(*where[when])
        with pytest.raises(WorkerDied):
            operator.execute(task_context(store))
    return store


class LocalServer:
    """A plain HTTP server on 127.0.0.1 (HTTPS with ``tls``): ``/redirect?to=URL`` answers 302,
    ``/big`` streams 8 MiB without a Content-Length, anything else answers ``ok``; records what
    it saw."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        seen = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                seen.paths.append(path)
                seen.authorizations.append(self.headers.get("Authorization"))
                if path == "/big":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        for _ in range(128):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    return
                redirect = path == "/redirect"
                self.send_response(302 if redirect else 200)
                if redirect:
                    self.send_header("Location", query.removeprefix("to="))
                self.send_header("Content-Length", "0" if redirect else "2")
                self.end_headers()
                self.wfile.write(b"" if redirect else b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
