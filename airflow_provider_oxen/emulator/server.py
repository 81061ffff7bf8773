"""Running the emulator: in the current event loop, or on its own loop in a daemon thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

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
    """The emulator bound to a loopback port on the running event loop (``start``/``stop``)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        # A private copy: the bound port and public URL are written into it at start.
        self.config = config.model_copy() if config is not None else EmulatorConfig()
        self.state = EmulatorState(self.config)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL clients should use (``http://127.0.0.1:port``)."""
        if self.config.public_url is None:
            raise RuntimeError("emulator not started")
        return self.config.public_url

    async def start(self) -> str:
        """Bind (a free port when ``port`` is 0), start serving, and return the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.config.port))
        except OSError:
            sock.close()
            raise
        self.config.port = sock.getsockname()[1]
        self.config.public_url = self.state.initial_config.public_url = f"http://127.0.0.1:{self.config.port}"
        # handler_cancellation: a client that goes away ends its handler at once, so open SSE streams
        # (and the subscriber count) follow real connections.
        self._runner = web.AppRunner(
            create_app(self.state),
            handler_cancellation=True,
            access_log=access_logger if self.config.log_requests else None,
            access_log_class=PathOnlyAccessLogger,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, shutdown_timeout=1.0, backlog=1024).start()
        return self.url

    async def stop(self) -> None:
        """Close open streams, stop live generations and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@contextmanager
def run_emulator_in_thread(
    config: EmulatorConfig | None = None, *, timeout: float = 10.0
) -> Iterator[EmulatorServer]:
    """Serve the emulator from a daemon thread with its own event loop for the ``with`` block; the
    server's ``state`` is for reading only from other threads."""
    server = EmulatorServer(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="oxen-emulator", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
