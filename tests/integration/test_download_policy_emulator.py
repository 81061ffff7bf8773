"""The download policy over real sockets: the emulator, plus a tiny local server that redirects
and streams, and a record of every outgoing connection attempt."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image

from airflow_provider_oxen.exceptions import OxenDownloadRefusedError
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.models import build_image_request
from tests.fixtures import EmulatorControl, connection_json
from tests.integration.helpers import LocalServer

METADATA_URL = "http://169.254.169.254/latest/meta-data"


def _local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


local_server = pytest.fixture(_local_server)
internal_service = pytest.fixture(_local_server)  # a second loopback service that must never be reached


@dataclass
class Outgoing:
    """Every socket ``connect`` of this process and every request that reached an httpx network
    transport (which would also catch a request sent to a proxy)."""

    connects: list[Any] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        return {address[0] for address in self.connects if isinstance(address, tuple)} | set(self.requests)

    def ports(self) -> set[int]:
        return {address[1] for address in self.connects if isinstance(address, tuple)}


@pytest.fixture
def outgoing(monkeypatch: pytest.MonkeyPatch) -> Outgoing:
    seen = Outgoing()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_send = httpx.HTTPTransport.handle_request

    def connect(self: socket.socket, address: Any) -> None:
        seen.connects.append(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        seen.connects.append(address)
        return original_connect_ex(self, address)

    def send(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        seen.requests.append(request.url.host)
        return original_send(self, request)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", send)
    return seen


def _use_connection(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorControl, **extra: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", connection_json(emulator.url, **extra))


def _result_url(hook: OxenHook) -> str:
    response = hook.generate_image(build_image_request("ideogram-v4", "policy", image_size="square"))
    url = response.images[0].url
    assert url
    return url


# -- (b) the metadata address and loopback services: refused before any connection ---------------


def test_the_metadata_address_and_a_loopback_service_are_refused_without_connecting(
    oxen_conn: EmulatorControl,
    internal_service: LocalServer,
    outgoing: Outgoing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError, match="plain http") as info:
        hook.download_to(METADATA_URL, io.BytesIO())
    assert "169.254.169.254" in str(info.value)
    assert "169.254.169.254" not in outgoing.hosts()

    # Even with plain http allowed to it, the address itself is refused.
    _use_connection(monkeypatch, oxen_conn, download_allow_http_hosts=["169.254.169.254"])
    for url in (METADATA_URL, "https://[::ffff:169.254.169.254]/latest/meta-data"):
        with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError, match="link-local"):
            hook.download_to(url, io.BytesIO())
    assert not {"169.254.169.254", "::ffff:169.254.169.254", "::ffff:a9fe:a9fe"} & outgoing.hosts()

    # A loopback service on the connection's host (127.0.0.1), another port: not the own origin.
    _use_connection(monkeypatch, oxen_conn, download_allow_http_hosts=["127.0.0.1", "localhost"])
    for url in (f"{internal_service.origin}/admin", f"http://localhost:{internal_service.port}/admin"):
        with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError, match="loopback"):
            hook.download_to(url, io.BytesIO())
    assert internal_service.paths == []
    assert internal_service.port not in outgoing.ports()
    assert "localhost" not in outgoing.hosts()


# -- (c) a redirect from an allowed host to a loopback host that is not the connection's -----------


def test_redirect_to_another_loopback_origin_is_refused(
    oxen_conn: EmulatorControl,
    local_server: LocalServer,
    internal_service: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ``localhost`` (the redirector) is trusted; 127.0.0.1 may be reached over http but is not
    # trusted, except on the emulator's own port.
    _use_connection(
        monkeypatch,
        oxen_conn,
        download_allowed_hosts="localhost",
        download_allow_http_hosts="localhost,127.0.0.1",
    )
    redirector = f"http://localhost:{local_server.port}/redirect"
    with OxenHook() as hook:
        # Control: the redirector answers, and a redirect to the emulator's own origin is followed.
        buffer = io.BytesIO()
        hook.download_to(f"http://localhost:{local_server.port}/plain", buffer)
        assert buffer.getvalue() == b"ok"
        result_url = _result_url(hook)
        buffer = io.BytesIO()
        hook.download_to(f"{redirector}?to={result_url}", buffer)
        Image.open(io.BytesIO(buffer.getvalue())).verify()

        target = f"{internal_service.origin}/admin?token=do-not-log"
        with pytest.raises(OxenDownloadRefusedError, match="loopback") as info:
            hook.download_to(f"{redirector}?to={target}", io.BytesIO())
    assert "127.0.0.1" in str(info.value) and "do-not-log" not in str(info.value)
    assert internal_service.paths == []  # the refused hop never connected
    assert local_server.paths == ["/plain", "/redirect", "/redirect"]
    assert local_server.authorizations == [None, None, None]  # the key stays on the API's origin


# -- (d) a response larger than the cap is aborted --------------------------------------------------


def test_a_result_above_the_cap_is_refused_by_its_content_length_or_aborted_while_streaming(
    oxen_conn: EmulatorControl, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OxenHook() as hook:
        url = _result_url(hook)
    _use_connection(monkeypatch, oxen_conn, download_max_bytes=1000)
    buffer = io.BytesIO()
    with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError, match="declares") as info:
        hook.download_to(url, buffer)
    assert "download_max_bytes" in str(info.value) and "sig=" not in str(info.value)
    assert buffer.getvalue() == b""

    cap = 300_000
    _use_connection(
        monkeypatch,
        oxen_conn,
        download_max_bytes=cap,
        download_allowed_hosts=["localhost"],
        download_allow_http_hosts=["localhost"],
    )
    url = f"http://localhost:{local_server.port}/big"  # no Content-Length: chunked
    with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError, match=f"more than {cap}") as info:
        hook.download_to(url, buffer)
    assert 0 < len(buffer.getvalue()) <= cap and "localhost" in str(info.value)
    # A caller streaming open_download() itself gets the same cap from the client.
    with OxenHook() as hook, pytest.raises(OxenDownloadRefusedError), hook.open_download(url) as response:
        for _ in response.iter_bytes():
            pass


# -- (e) through a proxy from the environment, as the API client ----------------------------------


def test_downloads_go_through_the_environments_proxy_under_the_policy(
    oxen_conn: EmulatorControl, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local server plays the proxy: a proxied plain-http request names the whole URL.
    monkeypatch.setenv("HTTP_PROXY", local_server.origin)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _use_connection(
        monkeypatch,
        oxen_conn,
        download_allowed_hosts=["files.example"],  # trusted, so not resolved: only the proxy knows it
        download_allow_http_hosts=["files.example"],
    )
    buffer = io.BytesIO()
    with OxenHook() as hook:
        hook.download_to("http://files.example/result.png?sig=1", buffer)
        with pytest.raises(OxenDownloadRefusedError, match="link-local"):
            hook.download_to("https://169.254.169.254/latest/meta-data", io.BytesIO())
    assert buffer.getvalue() == b"ok"
    assert local_server.paths == ["http://files.example/result.png"]
