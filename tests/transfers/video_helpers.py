"""Real MP4 clips made with PyAV, and a stand-in for Oxen that serves them as generation results.

The stand-in answers what the transfer asks of Oxen for a video result: ``GET
/api/ai/queue/{id}`` (a row with a freshly signed ``result_url``) and ``GET /files/{name}``
(the file, streamed from disk, only with a signature query: a bare URL is 403, as a real
signed link would be). It does not depend on the emulator's video models.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

CLIP_MODEL = "kling-video-v2-6-pro-text-to-video"
_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".webm": "video/webm"}


def make_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    fps: int = 8,
    seconds: float = 5,
    container: str = "mp4",
) -> bytes:
    """An H.264 clip (``fps x seconds`` frames) written with PyAV; returns its bytes."""
    import av

    # A gradient that shifts by frame, so frames differ.
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(fps * seconds)):
            shifted = base.point([(v + index * 6) % 256 for v in range(256)] * 3)
            frame = av.VideoFrame.from_image(shifted)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path.read_bytes()


def make_noise_clip(
    path: Path, *, target_bytes: int, width: int = 1280, height: int = 720, fps: int = 8
) -> int:
    """An incompressible H.264 clip of about ``target_bytes`` (lossless, intra-only noise).

    Encoding noise is slow, so a few distinct frames are encoded once and their packets muxed
    again and again with later timestamps (every frame is a keyframe, so any order decodes).
    Returns the number of frames.
    """
    import av

    distinct = 6
    packets: list[tuple[bytes, bool]] = []
    scratch = path.with_suffix(".seed.mp4")
    with av.open(str(scratch), "w", format="mp4") as seed:
        stream = seed.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast", "keyint": "1", "bf": "0"}
        for _ in range(distinct):
            image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                seed.mux(packet)
        for packet in stream.encode():
            seed.mux(packet)
    with av.open(str(scratch)) as source:
        template = source.streams.video[0]
        for packet in source.demux(template):
            if packet.size:
                packets.append((bytes(packet), bool(packet.is_keyframe)))
        per_frame = sum(len(data) for data, _ in packets) / len(packets)
        count = max(distinct, round(target_bytes / per_frame))
        with av.open(str(path), "w", format="mp4") as output:
            stream = output.add_stream_from_template(template)
            for index in range(count):
                data, keyframe = packets[index % len(packets)]
                packet = av.Packet(data)
                packet.stream = stream
                packet.time_base = stream.time_base
                ticks = int(stream.time_base.denominator / (stream.time_base.numerator * fps))
                packet.pts = packet.dts = index * ticks
                packet.duration = ticks
                packet.is_keyframe = keyframe
                output.mux(packet)
    scratch.unlink()
    return count


def noise_png(path: Path, size: int) -> bytes:
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(path, "PNG", compress_level=1)
    return path.read_bytes()


class FakeOxen:
    """A loopback HTTP server standing in for Oxen: generation rows and signed result files.

    ``add(generation_id, path, media_type)`` registers a finished generation whose result is
    the file at ``path``. ``requests`` counts what was asked (``"row"``, ``"file"``,
    ``"unsigned"``). A file URL's query may ask for a damaged download (``_send_damaged``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rows: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.cut_once: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOxen:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def connection_json(self, **extra: Any) -> str:
        """``oxen_default`` pointing at this server (its own origin: plain http is allowed)."""
        return json.dumps(
            {
                "conn_type": "oxen",
                "host": self.url,
                "password": "test-key",
                "extra": {"max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2, **extra},
            }
        )

    def add(self, generation_id: str, path: Path, *, media_type: str = "video") -> str:
        """Register a finished generation; returns its result URL *without* the signed query."""
        self.rows[generation_id] = {"name": path.name, "media_type": media_type}
        return f"{self.url}/files/{path.name}"

    def signed_url(self, generation_id: str) -> str:
        return f"{self.url}/files/{self.rows[generation_id]['name']}?expires=9999999999&signature=fake"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        if parts.path.startswith("/api/ai/queue/"):
            generation_id = parts.path.rsplit("/", 1)[-1]
            row = self.rows.get(generation_id)
            if row is None:
                return self._send(request, 404, b'{"error": "not found"}', "application/json")
            self.requests["row"] += 1
            body = {
                "generation_id": generation_id,
                "status": "succeeded",
                "media_type": row["media_type"],
                "result_url": self.signed_url(generation_id),
            }
            return self._send(request, 200, json.dumps(body).encode(), "application/json")
        if parts.path.startswith("/files/"):
            query = parse_qs(parts.query)
            if "signature" not in query:
                self.requests["unsigned"] += 1
                return self._send(request, 403, b"unsigned", "text/plain")
            path = self.directory / parts.path.rsplit("/", 1)[-1]
            if not path.is_file():
                return self._send(request, 404, b"missing", "text/plain")
            self.requests["file"] += 1
            if query.keys() & {"cut", "gzip"}:
                return self._send_damaged(request, path, query)
            request.send_response(200)
            request.send_header("Content-Type", _TYPES.get(path.suffix, "application/octet-stream"))
            request.send_header("Content-Length", str(path.stat().st_size))
            request.end_headers()
            with path.open("rb") as source:
                shutil.copyfileobj(source, request.wfile, 1024 * 1024)
            return None
        return self._send(request, 404, b"no route", "text/plain")

    def _send_damaged(self, request: BaseHTTPRequestHandler, path: Path, query: dict[str, list[str]]) -> None:
        """``?gzip=1``: sent with ``Content-Encoding: gzip``; ``?cut=<bytes>``: cut off there (with
        ``&once=1`` only the first download of that URL is)."""
        data = path.read_bytes()
        request.send_response(200)
        request.send_header("Content-Type", _TYPES.get(path.suffix, "application/octet-stream"))
        if "gzip" in query:
            data = gzip.compress(data)
            request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        end = int(query["cut"][0]) if "cut" in query else len(data)
        if "once" in query:
            if request.path in self.cut_once:
                end = len(data)
            self.cut_once.add(request.path)
        request.wfile.write(data[:end])
        request.wfile.flush()
        request.close_connection = end < len(data)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def video_result(
    generation_id: str,
    result_url: str,
    *,
    prompt: str = "Acme Coffee: a glass carafe of cold brew with ice, slow pan",
    duration: str = "5",
    aspect_ratio: str = "16:9",
    seed: int | None = 11,
    **extra: Any,
) -> dict[str, Any]:
    """A video result as the generate operator returns it (``result_url`` without its query)."""
    return {
        "generation_id": generation_id,
        "model": CLIP_MODEL,
        "media_type": "video",
        "prompt": prompt,
        "seed": seed,
        "parameters": {
            "prompt": prompt,
            "duration": duration,
            "aspect_ratio": aspect_ratio,
            **({"seed": seed} if seed is not None else {}),
        },
        "status": "succeeded",
        "result_url": result_url,
        "output_format": "mp4",
        "width": None,
        "height": None,
        **extra,
    }


def image_result(generation_id: str, result_url: str, size: int) -> dict[str, Any]:
    return {
        "generation_id": generation_id,
        "model": "black-forest-labs-flux-2-klein-4b",
        "media_type": "image",
        "prompt": "Acme Coffee: the Cold Brew Kit on a table",
        "seed": 3,
        "parameters": {"image_size": {"width": size, "height": size}, "output_format": "png"},
        "status": "succeeded",
        "result_url": result_url,
        "output_format": "png",
        "width": size,
        "height": size,
    }
