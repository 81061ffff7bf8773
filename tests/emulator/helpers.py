"""Small helpers shared by the emulator tests: polling, SSE parsing and the control API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
from PIL import Image, ImageChops

from tests.fixtures import FileServer
from tests.fixtures import png_bytes as png_bytes  # re-exported: the emulator tests' input pictures

InputServer = FileServer  # the emulator tests' name for it: a server of the inputs a model fetches

API_KEY = "emu-test-key-3b9d1f0c"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# One shared client for unauthenticated calls (control API, signed file URLs): building an httpx
# client loads the CA bundle, which would otherwise dominate these fast tests.
PLAIN = httpx.Client(timeout=5)
# The documented fields of a queue row (no cost, no request parameters).
ROW_KEYS = {"generation_id", "model_name", "prompt", "media_type", "status", "result_url", "error_message"}
ROW_KEYS |= {"enqueued_at", "started_at", "completed_at"}


def wait_for_status(
    client: httpx.Client, generation_id: str, statuses: set[str], timeout: float = 5.0
) -> dict[str, Any]:
    """Poll ``GET /api/ai/queue/{id}`` until the row has one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        row: dict[str, Any] = client.get(f"/api/ai/queue/{generation_id}").raise_for_status().json()
        if row["status"] in statuses:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"generation {generation_id} stuck in {row['status']}: {row}")
        time.sleep(0.02)


def render_time(row: dict[str, Any]) -> float:
    """Seconds a queue row spent rendering (``started_at`` to ``completed_at``)."""
    started, completed = (datetime.fromisoformat(row[key]) for key in ("started_at", "completed_at"))
    return (completed - started).total_seconds()


def enqueue(client: httpx.Client, **body: Any) -> list[str]:
    body.setdefault("model", "ideogram-v4")
    body.setdefault("prompt", "a red fox in the snow")
    response = client.post("/api/ai/queue", json=body)
    assert response.status_code == 200, response.text
    return [row["generation_id"] for row in response.json()["generations"]]


def assert_error(response: httpx.Response, status: int, kind: str, *fragments: str) -> str:
    """The response is the documented error envelope of ``kind``; returns its detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status", "status_message"}, body
    assert body["status"] == "error" and body["status_message"] == kind
    assert set(body["error"]) == {"type", "title", "detail"} and body["error"]["type"] == kind
    detail: str = body["error"]["detail"]
    for fragment in fragments:
        assert fragment in detail, (fragment, detail)
    return detail


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def control(base_url: str, method: str, path: str, body: Any = None) -> Any:
    response = PLAIN.request(method, f"{base_url}/_emulator{path}", json=body)
    response.raise_for_status()
    return response.json()


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """Yield ``(event, data)`` per SSE message and ``(":", text)`` per comment line."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield ":", line[1:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


@contextlib.asynccontextmanager
async def event_stream(
    base_url: str, timeout: float = 5
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.Response]]:
    """An authenticated async client and its open ``/api/events`` stream."""
    async with (
        httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=timeout) as http,
        http.stream("GET", "/api/events") as stream,
    ):
        yield http, stream


async def aenqueue(http: httpx.AsyncClient, **body: Any) -> list[str]:
    """``enqueue`` with an async client (while a test reads an event stream)."""
    response = await http.post("/api/ai/queue", json={"model": "ideogram-v4", "prompt": "sse", **body})
    response.raise_for_status()
    return [row["generation_id"] for row in response.json()["generations"]]


async def collect_completions(
    response: httpx.Response, wanted: set[str], timeout: float = 5
) -> dict[str, dict[str, Any]]:
    """The ``media_generation_completed`` events (by id) seen until all wanted arrive or timeout."""
    seen: dict[str, dict[str, Any]] = {}

    async def read() -> None:
        async for event, data in sse_events(response):
            if event == "media_generation_completed":
                seen[data["generation_id"]] = data
                if wanted <= seen.keys():
                    return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return seen


def closed_port_url(path: str = "/missing.png") -> str:
    """A URL on a loopback port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute per-channel difference (0-255) of two same-size images."""
    diff = ImageChops.difference(first.convert("RGB"), second.convert("RGB")).convert("L")
    histogram = diff.histogram()
    return sum(level * count for level, count in enumerate(histogram)) / max(1, sum(histogram))


def decode_video(data: bytes) -> tuple[dict[str, Any], list[Image.Image]]:
    """Facts about an MP4 (codec, pixel format, size, streams) and its decoded frames, via PyAV."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        facts: dict[str, Any] = {
            "format": container.format.name,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "rate": stream.average_rate,
            "streams": sorted(s.type for s in container.streams),
        }
        frames = [frame.to_image() for frame in container.decode(video=0)]
    return facts, frames
