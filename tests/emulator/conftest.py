"""Fixtures: one in-thread emulator per test module, reset (settings included) before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_oxen.emulator import EmulatorConfig, EmulatorServer, run_emulator_in_thread

from .helpers import API_KEY, AUTH, PLAIN, InputServer


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(api_key=API_KEY, render_seconds=0.05, queue_seconds=0.02)
    with run_emulator_in_thread(config) as server:
        yield server


@pytest.fixture(scope="module")
def module_client(emu: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=5) as http:
        yield http


@pytest.fixture
def base_url(emu: EmulatorServer) -> str:
    PLAIN.post(f"{emu.url}/_emulator/reset", json={"config": True}).raise_for_status()
    return emu.url


@pytest.fixture
def client(base_url: str, module_client: httpx.Client) -> httpx.Client:
    """An authenticated client for the freshly reset emulator."""
    return module_client


@pytest.fixture(scope="session")
def input_server() -> Iterator[InputServer]:
    """A local HTTP server for input images (what edit and image-to-video models fetch)."""
    server = InputServer()
    yield server
    server.close()
