"""Running the emulator: in the current event loop, or on its own loop in a daemon thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

T = TypeVar("T")

access_logger = logging.getLogger("airflow_provider_oxen.emulator.access")


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One line per request: method, path, status, size, time — never the query string.

    Result file URLs carry their signature in the query, and a log line is no place for one.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.6fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )


class EmulatorServer:
    """The emulator bound to a port on the running event loop (``start``/``stop`` or ``async with``)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        # A private copy: the bound port and public URL are written into it at start.
        self.config = config.copy() if config is not None else EmulatorConfig()
        self.state = EmulatorState(self.config)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL clients should use (``http://host:port``)."""
        if self.config.public_url is None:
            raise RuntimeError("emulator not started")
        return self.config.public_url

    async def start(self) -> str:
        """Bind (a free port when ``port`` is 0), start serving, and return the base URL."""
        sock = socket.socket(
            socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        self.config.port = sock.getsockname()[1]
        if self.config.public_url is None:
            host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
            if ":" in host:
                host = f"[{host}]"
            self.config.public_url = f"http://{host}:{self.config.port}"
        self.config.public_url = self.config.public_url.rstrip("/")
        self.state.initial_config.public_url = self.config.public_url

        app = create_app(state=self.state)
        # handler_cancellation: a client that goes away ends its handler at once, so open SSE streams
        # (and the subscriber count) follow real connections.
        self._runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=access_logger if self.config.log_requests else None,
            access_log_class=PathOnlyAccessLogger,
        )
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, shutdown_timeout=1.0, backlog=1024)
        await site.start()
        return self.url

    async def stop(self) -> None:
        """Close open streams, cancel timers and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class EmulatorHandle:
    """A running in-thread emulator: its URL, its state (read-only use from tests) and its loop."""

    def __init__(self, server: EmulatorServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> EmulatorState:
        return self.server.state

    @property
    def config(self) -> EmulatorConfig:
        return self.server.config

    def call(self, func: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run a coroutine function on the emulator's loop (e.g. to mutate state safely)."""

        async def runner() -> T:
            return await func()

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)


@contextmanager
def run_emulator_in_thread(
    config: EmulatorConfig | None = None, *, startup_timeout: float = 10.0
) -> Iterator[EmulatorHandle]:
    """Serve the emulator from a daemon thread with its own event loop for the ``with`` block."""
    server = EmulatorServer(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop_requested: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop_requested
        stop_requested = asyncio.Event()
        try:
            await server.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop_requested.wait()
        finally:
            await server.stop()

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=target, name="oxen-emulator", daemon=True)
    thread.start()
    if not started.wait(startup_timeout):
        raise RuntimeError("emulator did not start in time")
    if failure:
        thread.join(5)
        raise RuntimeError(f"emulator failed to start: {failure[0]!r}") from failure[0]
    try:
        yield EmulatorHandle(server, loop)
    finally:
        if stop_requested is not None:
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(15)
