"""Shared fixtures: the Oxen emulator on a free loopback port and connections pointing at it."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

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
