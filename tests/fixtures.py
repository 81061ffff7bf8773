"""Shared fixtures: the Oxen emulator on a free loopback port and connections pointing at it, and a
plain loopback file server (the inputs a model fetches, or result files standing in for Oxen's)."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import json
import mimetypes
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from PIL import Image

API_KEY = "test-key-do-not-log-7f3a9c"


class FakeTaskStateStore:
    """Stands in for ``context["task_state_store"]``: shared by every try, like Airflow's."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.reads = 0  # each one a round trip to the API server in a real task

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def exiftool_xmp(data: bytes) -> dict[str, Any]:
    """The XMP exiftool reads in ``data`` (an independent reader, not the code that wrote it).

    Fails, not skips, without exiftool: ``make test`` installs it (scripts/ensure_exiftool.sh).
    """
    tool = shutil.which("exiftool")
    if tool is None:
        pytest.fail("exiftool is not installed: run scripts/ensure_exiftool.sh (apt: libimage-exiftool-perl)")
    out = subprocess.run([tool, "-j", "-XMP:all", "-"], input=data, capture_output=True, check=True).stdout
    return dict(json.loads(out)[0])


def png_bytes(size: tuple[int, int], colour: tuple[int, int, int] | None, fmt: str = "PNG") -> bytes:
    """A test image: a solid picture with a lighter square in its middle (so a crop shows), or with
    ``colour=None`` random noise (incompressible: the file is about 3 bytes a pixel)."""
    width, height = size
    if colour is None:
        image = Image.frombytes("RGB", size, os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", size, colour)
        lighter = tuple(min(255, channel + 80) for channel in colour)
        image.paste(lighter, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    out = io.BytesIO()
    image.save(out, fmt, compress_level=1)
    return out.getvalue()


class FileServer:
    """A plain HTTP server on 127.0.0.1 serving registered files (bytes, or a file on disk, streamed).

    ``add`` serves a file at a path (after ``delay`` seconds; with ``signed``, only with a
    ``signature`` query: a bare URL is 403, as a real signed link would be). ``add_result`` stands
    in for Oxen: a finished generation's row at ``/api/ai/queue/{id}`` (a freshly signed
    ``result_url``) and its signed file. ``hits`` lists every path asked for, query included. A
    query may ask for a damaged answer: ``gzip=1`` (sent with ``Content-Encoding: gzip``),
    ``cut=<bytes>`` (cut off there; with ``once=1`` only the first download of that URL is).
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes | Path, str, float, bool]] = {}
        self.hits: list[str] = []
        serve = self._serve

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def add(
        self,
        path: str,
        body: bytes | Path,
        content_type: str = "image/png",
        delay: float = 0.0,
        *,
        signed: bool = False,
    ) -> str:
        """Serve ``body`` at ``path``; returns its URL (without a query)."""
        self.files[path] = (body, content_type, delay, signed)
        return f"{self.url}{path}"

    def add_result(self, generation_id: str, body: bytes | Path, name: str, media_type: str = "video") -> str:
        """Register a finished generation whose result is ``body`` (its type guessed from ``name``);
        returns its bare result URL."""
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        url = self.add(f"/files/{name}", body, content_type, signed=True)
        row = {"generation_id": generation_id, "status": "succeeded", "media_type": media_type}
        row["result_url"] = f"{url}?expires=9999999999&signature=fake"
        self.add(f"/api/ai/queue/{generation_id}", json.dumps(row).encode(), "application/json")
        return url

    def count(self, prefix: str) -> int:
        """Requests for paths that start with ``prefix``."""
        return sum(hit.startswith(prefix) for hit in self.hits)

    def reset(self) -> None:
        self.files.clear()
        self.hits.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, request: http.server.BaseHTTPRequestHandler) -> None:
        self.hits.append(request.path)
        path, _, raw_query = request.path.partition("?")
        query = parse_qs(raw_query)
        if path not in self.files:
            return request.send_error(404)
        body, content_type, delay, signed = self.files[path]
        time.sleep(delay)
        if signed and "signature" not in query:
            return request.send_error(403, "unsigned")
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        if isinstance(body, Path) and not query.keys() & {"cut", "gzip"}:
            request.send_header("Content-Length", str(body.stat().st_size))
            request.end_headers()
            with body.open("rb") as source:
                shutil.copyfileobj(source, request.wfile, 2**20)
            return None
        data = body.read_bytes() if isinstance(body, Path) else body
        if "gzip" in query:
            data = gzip.compress(data)
            request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        whole = "once" in query and self.hits.count(request.path) > 1
        end = len(data) if "cut" not in query or whole else int(query["cut"][0])
        request.wfile.write(data[:end])
        request.wfile.flush()
        request.close_connection = end < len(data)
        return None


def moto_s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of a moto server (any credentials do)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """A real S3 API (moto in server mode, threaded) on a free loopback port; stopped on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    # Werkzeug logs every request at INFO: noise in failure reports.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class EmulatorControl:
    """Thin client of the emulator's ``/_emulator`` control API (recording, faults, settings)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10)

    def reset(self) -> None:
        self._http.post("/_emulator/reset").raise_for_status()

    def configure(self, **settings: Any) -> dict[str, Any]:
        response = self._http.post("/_emulator/config", json=settings)
        response.raise_for_status()
        return response.json()

    def fault(self, **fault: Any) -> None:
        self._http.post("/_emulator/faults", json=fault).raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        """The faults armed and not yet used up."""
        response = self._http.get("/_emulator/faults")
        response.raise_for_status()
        return list(response.json()["faults"])

    def clear_faults(self) -> None:
        self._http.delete("/_emulator/faults").raise_for_status()

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"method": method, "path": path}.items() if v}
        response = self._http.get("/_emulator/requests", params=params)
        response.raise_for_status()
        return response.json()["requests"]

    def requests_text(self) -> str:
        return self._http.get("/_emulator/requests").text

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_emulator/stats")
        response.raise_for_status()
        return response.json()

    def route_count(self, route: str) -> int:
        """Requests seen for a route template, e.g. ``"GET /api/ai/queue/{id}"``."""
        return int(self.stats().get(route, 0))

    def enqueue_posts(self) -> int:
        return len(self.requests(method="POST", path="/api/ai/queue"))

    def drop_streams(self) -> None:
        self._http.post("/_emulator/sse/drop").raise_for_status()

    def suppress_events(self, count: int) -> None:
        self._http.post("/_emulator/events/suppress", json={"count": count}).raise_for_status()

    def close(self) -> None:
        self._http.close()


@pytest.fixture(autouse=True)
def fast_hub_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator renders in fractions of a second: waits may poll as often as a test asks
    (tests of the floor itself set it back)."""
    from airflow_provider_oxen.triggers import hub

    monkeypatch.setattr(hub, "MIN_POLL_INTERVAL", 0.0)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Any]:
    from airflow_provider_oxen.emulator import EmulatorConfig, run_emulator_in_thread

    config = EmulatorConfig(api_key=API_KEY, render_seconds=0.2, queue_seconds=0.05)
    with run_emulator_in_thread(config) as handle:
        yield handle


@pytest.fixture
def emulator(emulator_server: Any) -> Iterator[EmulatorControl]:
    """The session's emulator, reset to a clean state and fast default timings."""
    control = EmulatorControl(emulator_server.url)
    control.reset()
    control.configure(
        render_seconds=0.2,
        queue_seconds=0.05,
        events_enabled=True,
        url_ttl_seconds=3600,
        credits=None,
        row_parameters=False,
    )
    yield control
    control.close()


def connection_json(url: str, api_key: str = API_KEY, **extra: Any) -> str:
    extras = {"max_retries": 3, "backoff_base": 0.05, "backoff_max": 0.2, **extra}
    return json.dumps({"conn_type": "oxen", "host": url, "password": api_key, "extra": extras})


@pytest.fixture
def oxen_conn(emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch) -> EmulatorControl:
    """``oxen_default`` points at the emulator with fast retries."""
    from airflow_provider_oxen.hooks.oxen import MODEL_CACHE

    MODEL_CACHE.clear()
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", connection_json(emulator.url))
    return emulator
