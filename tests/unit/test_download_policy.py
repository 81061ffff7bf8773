"""The download policy's decisions, without network: schemes, hosts, addresses, redirects, size."""

from __future__ import annotations

import gzip
import io
import socket
from typing import Any

import httpx
import pytest

from airflow_provider_oxen.exceptions import (
    OxenDownloadRefusedError,
    OxenUnrecoverableError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks import download_policy as dp
from airflow_provider_oxen.hooks.download_policy import (
    DEFAULT_MAX_BYTES,
    DownloadPolicy,
    address_problem,
    build_download_client,
    check_url,
    iter_capped,
    resolve,
)

API = "https://hub.oxen.ai"
EMULATOR = "http://127.0.0.1:8765"
PUBLIC = "93.184.215.14"
SIGNED = "?X-Amz-Signature=s3cr3t-signature&X-Amz-Credential=AKIDEXAMPLE"


def policy(base_url: str = API, **extras: Any) -> DownloadPolicy:
    return DownloadPolicy.from_connection(base_url, extras)


def refused(url: str, pol: DownloadPolicy | None = None) -> OxenDownloadRefusedError:
    with pytest.raises(OxenDownloadRefusedError) as info:
        check_url(url, pol or policy())
    return info.value


# -- building the policy from the connection ------------------------------------------------------


def test_defaults() -> None:
    pol = policy()
    assert pol.origin == ("https", "hub.oxen.ai", 443)
    assert pol.max_bytes == DEFAULT_MAX_BYTES == 512 * 1024 * 1024
    assert pol.allowed_hosts == pol.allow_http_hosts == frozenset()
    assert policy(download_allowed_hosts=["[fd00::5]"]).is_allowed_host("fd00::5")  # an IPv6 literal


@pytest.mark.parametrize(
    "value",
    [
        ["minio.internal", "*.corp.example"],
        "minio.internal, *.corp.example",
        " MINIO.internal.,.corp.example ",
    ],
)
def test_allowed_hosts_accept_a_list_or_a_comma_separated_string(value: Any) -> None:
    pol = policy(download_allowed_hosts=value)
    assert pol.allowed_hosts == {"minio.internal", ".corp.example"}
    assert pol.is_allowed_host("minio.internal") and pol.is_allowed_host("MINIO.INTERNAL.")
    assert pol.is_allowed_host("a.corp.example") and pol.is_allowed_host("corp.example")
    assert not pol.is_allowed_host("evilcorp.example") and not pol.is_allowed_host("minio.internal.evil")


@pytest.mark.parametrize("value", [42, {"a": 1}, ["ok", 3], ["https://x.example/"], ["x.example:9000"]])
def test_bad_host_lists_are_refused(value: Any) -> None:
    with pytest.raises(OxenValidationError) as info:
        policy(download_allowed_hosts=value)
    assert info.value.field == "download_allowed_hosts"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1000, 1000), ("2048", 2048), (None, DEFAULT_MAX_BYTES), (1e3, 1000)]
    + [(bad, None) for bad in (0, -1, "lots", True, 1.5)],
)
def test_max_bytes(value: Any, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(OxenValidationError):
            policy(download_max_bytes=value)
    else:
        assert policy(download_max_bytes=value).max_bytes == expected


# -- schemes and hosts -----------------------------------------------------------------------------


def test_https_anywhere_plain_http_to_the_connections_own_origin_or_the_hosts_allowed_it() -> None:
    target = check_url(f"https://storage.googleapis.com/bucket/img.png{SIGNED}", policy())
    assert (target.scheme, target.host, target.port) == ("https", "storage.googleapis.com", 443)
    assert not target.trusted
    emulator = policy(EMULATOR)
    assert check_url(f"{EMULATOR}/files/g/1.png{SIGNED}", emulator).own_origin
    assert check_url(f"{EMULATOR}/files/g/1.png", emulator).trusted
    # Same host, other port: another origin (and another service).
    assert "plain http" in str(refused("http://127.0.0.1:9999/x", emulator))
    assert "plain http" in str(refused("http://hub.oxen.ai/x.png"))  # the API's host, but not its scheme
    # Plain http elsewhere, and to a host allowed it (still address-checked): over sockets, in
    # test_download_policy_emulator.py.


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "ftp://files.example/x",
        "gopher://x.example/",
        "data:,x",
    ],
)
def test_other_schemes_are_refused(url: str) -> None:
    error = refused(url)
    assert "scheme" in str(error)
    assert isinstance(error, OxenUnrecoverableError)  # fails the task, no Airflow retry


def test_refusal_names_reason_and_host_never_the_query() -> None:
    error = refused(f"http://user:pass@storage.example/img.png{SIGNED}")
    text = str(error)
    assert "storage.example" in text and "plain http" in text
    assert "s3cr3t" not in text and "AKIDEXAMPLE" not in text and "pass" not in text
    assert error.url == "http://storage.example/img.png"


# -- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),  # reserved, which Python also counts as private
        ("100.100.100.200", "non-public"),  # shared address space (a cloud metadata address)
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00:ec2::254", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("64:ff9b::a9fe:a9fe", "NAT64 link-local"),
        ("2002:0a00:0001::1", "6to4 private"),
    ],
)
def test_non_public_addresses(address: str, problem: str) -> None:
    assert address_problem(address) == problem


@pytest.mark.parametrize("address", ["8.8.8.8", PUBLIC, "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert address_problem(address) is None


def test_literal_ips_need_no_dns_and_names_are_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "127.0.0.1" in resolve("localhost", 80)

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DNS used for a literal address")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert resolve("169.254.169.254", 80) == ["169.254.169.254"]
    assert resolve("::1", 443) == ["::1"]


# -- the download client: every hop checked before connecting -------------------------------------------

ADDRESSES = {
    "storage.example": [PUBLIC],
    "cdn.example": [PUBLIC],
    "metadata.example": ["169.254.169.254"],
    "intranet.example": [PUBLIC, "10.0.0.7"],
    "minio.internal": ["10.0.0.5"],  # allowed (trusted): never resolved
    "localhost": ["127.0.0.1"],
    "nothing.example": [],
}


def fake_resolve(host: str, port: int) -> list[str]:
    if dp.literal_ip(host) is not None:
        return [host]
    if host not in ADDRESSES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ADDRESSES[host]


class Recorder:
    """A transport that records which URLs reached it and answers per path."""

    def __init__(self, routes: dict[str, httpx.Response]) -> None:
        self.seen: list[str] = []
        self.routes = routes

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.url.host}{request.url.path}")
        return self.routes.get(f"{request.url.host}{request.url.path}", httpx.Response(404))


def redirect(to: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": to})


def sync_client(recorder: Recorder) -> httpx.Client:
    """A connection to the emulator's address, with one host allowed."""
    pol = policy(EMULATOR, download_allowed_hosts=["minio.internal"])
    return build_download_client(pol, transport=httpx.MockTransport(recorder), resolver=fake_resolve)


REDIRECTS = {
    "cdn.example/to-intranet": redirect("https://intranet.example/admin?token=1"),
    "cdn.example/to-metadata": redirect("http://169.254.169.254/latest/meta-data"),
    "cdn.example/to-file": redirect("file:///etc/passwd"),
}


@pytest.mark.parametrize(
    ("url", "reason", "sent"),
    [
        # Names that resolve to a refused address (a literal one, and a loopback or link-local
        # address reached directly, are proven over sockets in test_download_policy_emulator.py).
        ("https://metadata.example/latest/meta-data", "link-local", []),
        ("https://intranet.example/", "private", []),  # one public and one private address
        ("https://nothing.example/x.png", "no address", []),
        ("https://localhost:8765/x.png", "loopback", []),  # the connection's port, another name
        # A redirect to a refused URL: the first hop was sent, the refused one never is.
        ("https://cdn.example/to-intranet", r"intranet\.example", ["cdn.example/to-intranet"]),
        ("https://cdn.example/to-metadata", r"169\.254\.169\.254", ["cdn.example/to-metadata"]),
        ("https://cdn.example/to-file", "scheme 'file'", ["cdn.example/to-file"]),
    ],
)
def test_a_refused_hop_is_never_sent(url: str, reason: str, sent: list[str]) -> None:
    recorder = Recorder(REDIRECTS)
    with sync_client(recorder) as client, pytest.raises(OxenDownloadRefusedError, match=reason) as info:
        client.get(url)
    assert recorder.seen == sent
    assert "token" not in str(info.value)


def test_public_hosts_a_redirect_between_them_the_own_origin_and_allowed_hosts_are_downloaded() -> None:
    ok = httpx.Response(200, content=b"png")
    recorder = Recorder(
        {
            "cdn.example/x.png": redirect("https://storage.example/x.png"),
            "storage.example/x.png": ok,
            "127.0.0.1/files/x.png": ok,  # the connection's own origin, on loopback
            "minio.internal/b/x.png": ok,  # an allowed host, on a private address
        }
    )
    with sync_client(recorder) as client:
        assert client.get(f"https://storage.example/x.png{SIGNED}").content == b"png"
        assert client.get("https://cdn.example/x.png").content == b"png"
        assert client.get(f"{EMULATOR}/files/x.png").content == b"png"
        assert client.get("https://minio.internal/b/x.png").content == b"png"
    assert recorder.seen == [
        "storage.example/x.png",
        "cdn.example/x.png",
        "storage.example/x.png",
        "127.0.0.1/files/x.png",
        "minio.internal/b/x.png",
    ]


def test_an_unresolvable_host_is_a_connection_error() -> None:
    with sync_client(Recorder({})) as client, pytest.raises(httpx.ConnectError, match=r"nowhere\.example"):
        client.get("https://nowhere.example/x.png")


# -- reading under the cap (decoded bytes) ---------------------------------------------------------


def test_a_body_exactly_at_the_cap_is_read_whole() -> None:
    """Above it, by Content-Length or while streaming: over sockets, in
    test_download_policy_emulator.py."""
    url = "https://storage.example/x"
    ok = httpx.Response(200, content=b"0123456789", request=httpx.Request("GET", url))
    assert b"".join(iter_capped(ok, 10, 3)) == b"0123456789"


def test_a_small_gzip_body_is_capped_by_what_it_inflates_to() -> None:
    # The server ignores "Accept-Encoding: identity": 64 KiB on the wire, 64 MiB once decoded.
    body = gzip.compress(bytes(64 * 1024 * 1024))
    assert len(body) < 70_000
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(body))}
    url = "https://storage.example/x"
    response = httpx.Response(200, headers=headers, content=body, request=httpx.Request("GET", url))
    written = io.BytesIO()
    with pytest.raises(OxenDownloadRefusedError, match="more than 1048576"):
        for chunk in iter_capped(response, 1024 * 1024, 256 * 1024):
            written.write(chunk)
    assert written.tell() == 1024 * 1024  # never a byte past the cap
