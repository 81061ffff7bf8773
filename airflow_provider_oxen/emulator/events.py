"""Server-Sent Events: fan-out of pre-encoded events to every open ``GET /api/events`` stream."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

COMPLETED_EVENT = "media_generation_completed"
# A reader this far behind is treated as gone: the stream is cut rather than buffering without bound.
MAX_BUFFERED_EVENTS = 100_000


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE message: ``event:`` line, single-line JSON ``data:``, blank line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscriber:
    """One open stream's queue of encoded events and its pending fate (closing, dropped)."""

    __slots__ = ("abort", "buffer", "closing", "drop_after", "wakeup")

    def __init__(self) -> None:
        self.buffer: deque[tuple[bytes, bool]] = deque()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.abort = False
        # Completion events still to send before the stream is cut (drop_events fault); None: never.
        self.drop_after: int | None = None

    def push(self, chunk: bytes, completion: bool) -> None:
        if len(self.buffer) >= MAX_BUFFERED_EVENTS:
            self.abort = True
        else:
            self.buffer.append((chunk, completion))
        self.wakeup.set()

    def drop(self, after_events: int = 0) -> None:
        """Cut the stream abruptly once ``after_events`` more completion events have gone out."""
        self.drop_after = after_events
        self.wakeup.set()


class EventBroker:
    """Open streams, and publishing to all of them (the emulator is single-user)."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.published = 0

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        chunk = encode_event(event, data)
        completion = event == COMPLETED_EVENT
        for subscriber in self.subscribers:
            subscriber.push(chunk, completion)
        self.published += 1

    def drop_all(self) -> int:
        """Cut every open stream now; returns how many."""
        for subscriber in self.subscribers:
            subscriber.abort = True
            subscriber.wakeup.set()
        return len(self.subscribers)

    def close_all(self) -> None:
        """End every stream cleanly (server shutdown)."""
        for subscriber in self.subscribers:
            subscriber.closing = True
            subscriber.wakeup.set()


def _cut(request: web.Request) -> None:
    # Closing the transport mid-body leaves the chunked encoding unterminated: the client sees a
    # broken connection, not a clean end of stream.
    if request.transport is not None:
        request.transport.close()


async def serve_stream(
    request: web.Request,
    broker: EventBroker,
    keepalive_seconds: Callable[[], float],
    on_open: Callable[[Subscriber], None],
) -> web.StreamResponse:
    """Run one SSE stream until the client leaves, the server stops, or a fault cuts it."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    subscriber = broker.subscribe()
    on_open(subscriber)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            if subscriber.abort or subscriber.drop_after == 0:
                _cut(request)
                return response
            if subscriber.closing:
                return response
            if not subscriber.buffer:
                try:
                    await asyncio.wait_for(subscriber.wakeup.wait(), timeout=max(0.05, keepalive_seconds()))
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
            subscriber.wakeup.clear()
            if subscriber.abort:
                continue
            data = _take(subscriber)
            if data:
                await response.write(data)
    except ConnectionError:
        return response
    finally:
        broker.unsubscribe(subscriber)


def _take(subscriber: Subscriber) -> bytes:
    """Everything buffered, or with a pending drop only up to the last completion event allowed."""
    chunks: list[bytes] = []
    buffer = subscriber.buffer
    while buffer:
        if subscriber.drop_after == 0:
            break
        chunk, completion = buffer.popleft()
        chunks.append(chunk)
        if completion and subscriber.drop_after is not None:
            subscriber.drop_after -= 1
    return b"".join(chunks)
