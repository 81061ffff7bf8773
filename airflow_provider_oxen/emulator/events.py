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


class Subscriber:
    """One open stream's queue of encoded events and its pending fate (closing, cut)."""

    def __init__(self) -> None:
        # (encoded event, whether it is a completion event)
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

    def take(self) -> bytes:
        """Everything buffered, or with a pending drop only up to the last completion event allowed."""
        chunks: list[bytes] = []
        while self.buffer and self.drop_after != 0:
            chunk, completion = self.buffer.popleft()
            chunks.append(chunk)
            if completion and self.drop_after is not None:
                self.drop_after -= 1
        return b"".join(chunks)


class EventBroker:
    """Open streams, and publishing to all of them (the emulator is single-user)."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """One SSE message to every stream: ``event:`` line, single-line JSON ``data:``, blank line."""
        chunk = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for subscriber in self.subscribers:
            subscriber.push(chunk, event == COMPLETED_EVENT)

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


async def serve_stream(
    request: web.Request, broker: EventBroker, keepalive_seconds: Callable[[], float], subscriber: Subscriber
) -> web.StreamResponse:
    """Run one SSE stream until the client leaves, the server stops, or a fault cuts it."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    broker.subscribers.add(subscriber)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while not subscriber.closing:
            if subscriber.abort or subscriber.drop_after == 0:
                # Closing the transport mid-body leaves the chunked encoding unterminated: the
                # client sees a broken connection, not a clean end of stream.
                if request.transport is not None:
                    request.transport.close()
                break
            if not subscriber.buffer:
                try:
                    await asyncio.wait_for(subscriber.wakeup.wait(), timeout=max(0.05, keepalive_seconds()))
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
            subscriber.wakeup.clear()
            data = b"" if subscriber.abort else subscriber.take()
            if data:
                await response.write(data)
    except ConnectionError:
        pass
    finally:
        broker.subscribers.discard(subscriber)
    return response
