"""Small helpers shared by the emulator tests: polling, SSE parsing and the control API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from PIL import Image

API_KEY = "emu-test-key-3b9d1f0c"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# One shared client for unauthenticated calls (control API, signed file URLs): building an httpx
# client loads the CA bundle, which would otherwise dominate these fast tests.
PLAIN = httpx.Client(timeout=5)


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


async def collect_completions(response: httpx.Response, wanted: set[str], timeout: float) -> set[str]:
    """Generation ids of ``media_generation_completed`` events seen until all wanted arrive or timeout."""
    seen: set[str] = set()

    async def read() -> None:
        async for event, data in sse_events(response):
            if event == "media_generation_completed":
                seen.add(data["generation_id"])
                if wanted <= seen:
                    return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return seen
