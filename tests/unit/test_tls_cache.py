"""One TLS context per process per TLS setting (hooks/tls.py), shared by every client the hooks build.

Real handshakes against a throwaway CA on a loopback HTTPS server: a custom CA bundle is
honoured, ``verify=False`` still skips verification, a client certificate is presented.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import inspect
import ipaddress
import json
import os
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oxen.hooks import ca_directory, tls
from airflow_provider_oxen.hooks.api import OxenSettings
from airflow_provider_oxen.hooks.download_policy import (
    AsyncGuardedTransport,
    DownloadPolicy,
    GuardedTransport,
    build_download_client,
)
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook, OxenHook

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("AIRFLOW__OXEN__CA_DIRECTORY", str(tmp_path / "ca"))
    ca_directory.clear_cache()
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    conn = {"conn_type": "oxen", "host": "https://oxen.test", "password": "tls-test-key"}
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", json.dumps(conn))
    tls.clear_cache()
    yield
    tls.clear_cache()


@dataclass
class Loads:
    """Every CA bundle load (``load_verify_locations``): the thread it ran in."""

    threads: list[int]

    @property
    def count(self) -> int:
        return len(self.threads)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    record = Loads([])
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        # Not a context build: the one-off check, when a hashed CA directory is written, that
        # it trusts what the bundle does (once per host and bundle; see test_ca_directory.py).
        if not any(frame.filename == ca_directory.__file__ for frame in inspect.stack(0)[1:6]):
            record.threads.append(threading.get_ident())
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    return record


def _trust(context: ssl.SSLContext) -> list[bytes]:
    """The CA certificates (DER, sorted) a context trusts: loaded into it, or in its hashed directory."""
    directory = context.__dict__.get("ca_directory")
    if directory is None:
        return sorted(context.get_ca_certs(binary_form=True))
    assert not context.get_ca_certs()  # nothing parsed up front
    found = []
    for name in os.listdir(directory):
        if name != "MANIFEST":
            found.append(ssl.PEM_cert_to_DER_cert((Path(directory) / name).read_text()))
    return sorted(found)


def _contexts(client: httpx.Client | httpx.AsyncClient) -> list[ssl.SSLContext]:
    """The TLS context of every transport of ``client`` (its own and its proxy mounts)."""
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    found = []
    for transport in transports:
        while isinstance(transport, GuardedTransport | AsyncGuardedTransport):
            transport = transport._inner
        found.append(transport._pool._ssl_context)  # type: ignore[attr-defined]
    return found


# -- a throwaway CA and a loopback HTTPS server --------------------------------------------------


@dataclass
class Pki:
    ca: Path  # the CA certificate (the bundle to trust)
    other_ca: Path  # a CA that signed nothing here
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, cert: Any, key: Any = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_suffix(".key")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, client: bool = False
) -> Any:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    elif client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if not ca:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Oxen test CA", ca_key, "Oxen test CA", ca_key, ca=True)
    other = _certificate("Other test CA", other_key, "Other test CA", other_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = _certificate("localhost", server_key, "Oxen test CA", ca_key, ca=False)
    client = _certificate("oxen-client", client_key, "Oxen test CA", ca_key, ca=False, client=True)
    _write(folder / "ca.pem", ca)
    _write(folder / "other-ca.pem", other)
    _write(folder / "server.pem", server, server_key)
    _write(folder / "client.pem", client, client_key)
    return Pki(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(pki: Pki, *, require_client_cert: bool) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def https_url(pki: Pki) -> Iterator[str]:
    yield from _serve(pki, require_client_cert=False)


@pytest.fixture(scope="module")
def mtls_url(pki: Pki) -> Iterator[str]:
    yield from _serve(pki, require_client_cert=True)


def _get(url: str, verify: ssl.SSLContext | bool) -> int:
    with httpx.Client(verify=verify, timeout=5, trust_env=False) as client:
        return client.get(url).status_code


# -- one context per setting ------------------------------------------------------------------


def test_hook_clients_of_one_setting_share_one_context_loaded_once(loads: Loads) -> None:
    clients: list[httpx.Client] = []
    for _ in range(2):  # two task executes in one process: a new hook each time
        hook = OxenHook()
        clients += [hook.get_conn(), hook.get_download_conn()]
    assert loads.count == 1
    contexts = [context for client in clients for context in _contexts(client)]
    assert len(contexts) == 4
    assert all(context is tls.ssl_context() for context in contexts)
    assert OxenHook().client_kwargs(hook.settings)["verify"] is tls.ssl_context()
    for client in clients:
        client.close()


def test_proxy_transports_share_the_context(monkeypatch: pytest.MonkeyPatch, loads: Loads) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    hook = OxenHook()
    api_client, download_client = hook.get_conn(), hook.get_download_conn()
    contexts = _contexts(api_client) + _contexts(download_client)
    assert len(contexts) == 4  # each client: its own transport and the proxy's
    assert all(context is tls.ssl_context() for context in contexts)
    assert loads.count == 1
    hook.close()


async def _async_clients() -> tuple[list[httpx.AsyncClient], dict[str, Any]]:
    hook = OxenAsyncHook()
    # What the triggerer's hub does: settings, then client_kwargs on the loop, the client in a thread.
    hub_kwargs = hook.client_kwargs(await hook.get_settings())
    clients = [await hook.get_async_conn(), await hook.get_download_conn()]
    return clients, hub_kwargs


@pytest.mark.asyncio
async def test_async_hook_builds_the_context_off_the_event_loop(loads: Loads) -> None:
    loop_thread = threading.get_ident()
    clients, hub_kwargs = await _async_clients()
    assert loads.count == 1
    assert loads.threads != [loop_thread]
    assert hub_kwargs["verify"] is tls.ssl_context()
    assert all(context is tls.ssl_context() for client in clients for context in _contexts(client))
    # A second hook (another trigger) loads nothing, wherever it builds its clients.
    more, _ = await _async_clients()
    assert loads.count == 1
    for client in clients + more:
        await client.aclose()


@pytest.mark.asyncio
async def test_async_hook_given_settings_still_builds_the_context_off_the_loop(loads: Loads) -> None:
    settings = OxenSettings.from_connection("https://oxen.test", "key", {})
    hook = OxenAsyncHook(settings=settings)
    client = await hook.get_async_conn()
    assert loads.count == 1 and loads.threads != [threading.get_ident()]
    await client.aclose()


def test_the_default_context_is_httpx_own(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyproject ignores DeprecationWarning: none introduced
        for env in ({}, {"SSL_CERT_FILE": str(pki.ca)}, {"SSL_CERT_DIR": str(pki.ca.parent)}):
            for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
                monkeypatch.delenv(name, raising=False)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            ours, theirs = tls.ssl_context(), httpx.create_ssl_context()
            for attribute in ("verify_mode", "check_hostname", "options", "minimum_version", "verify_flags"):
                assert getattr(ours, attribute) == getattr(theirs, attribute), (env, attribute)
            assert _trust(ours) == _trust(theirs), env
            # A CA bundle file is read through its hashed directory; SSL_CERT_DIR already is one.
            assert (ours.__dict__["ca_directory"] is None) == ("SSL_CERT_DIR" in env)
        hook = OxenHook()
        hook.get_conn(), hook.get_download_conn()
        hook.close()


def test_different_settings_get_different_contexts(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, loads: Loads
) -> None:
    default = tls.ssl_context()
    custom = tls.ssl_context(str(pki.ca))
    other = tls.ssl_context(str(pki.other_ca))
    with_cert = tls.ssl_context(str(pki.ca), (str(pki.client_cert), str(pki.client_key)))
    assert len({id(default), id(custom), id(other), id(with_cert)}) == 4
    assert loads.count == 4
    # The same setting again (a path spelled differently too): the same context, nothing loaded.
    relative = os.path.relpath(pki.ca)
    assert tls.ssl_context(relative) is custom
    assert tls.ssl_context(str(pki.ca), (str(pki.client_cert), str(pki.client_key))) is with_cert
    assert tls.httpx_verify(str(pki.ca)) is custom
    assert loads.count == 4
    # verify=True under SSL_CERT_FILE is that file's setting, not certifi's.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    assert tls.ssl_context() is not default
    assert _trust(tls.ssl_context()) == [ssl.PEM_cert_to_DER_cert(pki.ca.read_text())]


def test_a_replaced_ca_bundle_is_loaded_again(tmp_path: Path, pki: Pki, loads: Loads) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes())
    first = tls.ssl_context(str(bundle))
    assert tls.ssl_context(str(bundle)) is first
    bundle.write_bytes(pki.ca.read_bytes() + pki.other_ca.read_bytes())
    second = tls.ssl_context(str(bundle))
    assert second is not first
    assert len(_trust(second)) == 2
    assert tls.ssl_context(str(bundle)) is second
    assert loads.count == 2


def test_a_missing_ca_bundle_fails_as_httpx_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        httpx.Client()
    with pytest.raises(FileNotFoundError):
        OxenHook().get_conn()
    assert not tls.is_cached()


# -- real handshakes ----------------------------------------------------------------------------


def test_a_custom_ca_bundle_is_honoured(https_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(https_url, tls.httpx_verify())  # certifi does not know the test CA
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(https_url, tls.httpx_verify(str(pki.other_ca)))
    assert _get(https_url, tls.httpx_verify(str(pki.ca))) == 200
    # The one way a connection can name a CA bundle today: httpx's SSL_CERT_FILE, through the hook.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    conn = {"conn_type": "oxen", "host": https_url, "password": "k"}
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", json.dumps(conn))
    with OxenHook() as hook:
        assert hook.get_conn().get("/").status_code == 200


def test_a_ca_among_many_is_found_in_the_hashed_directory_at_handshake(
    https_url: str, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    bundle = tmp_path / "corporate.pem"
    bundle.write_text(Path(certifi.where()).read_text() + pki.ca.read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = tls.ssl_context()
    assert context.__dict__["ca_directory"] is not None and not context.get_ca_certs()
    assert _get(https_url, context) == 200
    # OpenSSL read the test CA (and only what the chain needed) from the directory just now.
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "Oxen test CA"),),)]
    bundle.write_text(Path(certifi.where()).read_text())  # the same bundle without the test CA
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(https_url, tls.ssl_context())


def test_ca_files_removed_by_a_cleaner_are_put_back_for_contexts_built_earlier(
    https_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    context = tls.ssl_context()  # built, no handshake yet: the CA is still only on disk
    directory = Path(context.__dict__["ca_directory"])
    for name in os.listdir(directory):
        os.remove(directory / name)
    assert tls.ssl_context() is context  # the next client build notices and rewrites the files
    assert sorted(os.listdir(directory)) != []
    assert _get(https_url, context) == 200


def test_a_bundle_whose_directory_would_trust_something_else_is_loaded_whole(
    https_url: str, pki: Pki, tmp_path: Path
) -> None:
    # A leaf certificate in a bundle: written to the directory it would be found by subject,
    # but a whole load does not count it among the CAs. Any difference: the bundle loads whole.
    bundle = tmp_path / "mixed.pem"
    bundle.write_text(pki.ca.read_text() + pki.server_cert.read_text())
    assert ca_directory.hashed_directory(str(bundle)) is None
    context = tls.ssl_context(str(bundle))
    assert context.__dict__["ca_directory"] is None
    assert _get(https_url, context) == 200


def test_a_context_whose_directory_cannot_be_put_back_is_replaced_by_a_whole_load(
    https_url: str, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    first = tls.ssl_context()
    directory = Path(first.__dict__["ca_directory"])
    for name in os.listdir(directory):
        os.remove(directory / name)
    directory.parent.chmod(0o777)  # no longer private: it will not be written again
    try:
        second = tls.ssl_context()
    finally:
        directory.parent.chmod(0o700)
    assert second is not first and second.__dict__["ca_directory"] is None
    assert _get(https_url, second) == 200


def test_verify_false_still_skips_verification(https_url: str, loads: Loads) -> None:
    assert tls.httpx_verify(False) is False
    assert _get(https_url, False) == 200
    assert loads.count == 0
    client = build_download_client(DownloadPolicy.from_connection("https://oxen.test", {}), verify=False)
    assert all(context.verify_mode == ssl.CERT_NONE for context in _contexts(client))
    client.close()


def test_a_client_certificate_is_presented(mtls_url: str, pki: Pki) -> None:
    with pytest.raises(httpx.HTTPError):
        _get(mtls_url, tls.httpx_verify(str(pki.ca)))
    with_cert = tls.httpx_verify(str(pki.ca), (str(pki.client_cert), str(pki.client_key)))
    assert _get(mtls_url, with_cert) == 200
    assert _get(mtls_url, with_cert) == 200  # shared by a second client


# -- threads ------------------------------------------------------------------------------------


def test_threads_asking_at_once_get_one_context(monkeypatch: pytest.MonkeyPatch, loads: Loads) -> None:
    slow_load = ssl.SSLContext.load_verify_locations  # the counting one

    def slower(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)  # widen the window two builders could race in
        slow_load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", slower)
    workers = 8
    barrier = threading.Barrier(workers)
    got: list[ssl.SSLContext] = []
    errors: list[BaseException] = []

    def work(build: Callable[[], ssl.SSLContext]) -> None:
        try:
            barrier.wait(5)
            got.append(build())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(tls.ssl_context,)) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert len(got) == workers
    assert all(context is got[0] for context in got)
    assert loads.count == 1


def test_one_context_serves_clients_in_many_threads(https_url: str, pki: Pki) -> None:
    shared = tls.httpx_verify(str(pki.ca))
    statuses: list[int] = []

    def fetch() -> None:
        for _ in range(3):
            statuses.append(_get(https_url, shared))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert statuses == [200] * 12


@pytest.mark.asyncio
async def test_prepare_builds_in_a_thread_once(loads: Loads) -> None:
    await asyncio.gather(*(tls.prepare() for _ in range(4)))
    assert loads.count == 1 and loads.threads != [threading.get_ident()]
    assert tls.is_cached()


def test_warm_builds_the_context_in_a_thread_and_a_client_waits_for_it_not_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook's ``__enter__`` starts the load; the client built later takes the same context,
    and the CA bundle is loaded once, in the warm-up thread, not in the caller's."""
    import certifi

    tls.clear_cache()
    assert ca_directory.hashed_directory(certifi.where()) is not None  # this host's, built once
    loads: list[str] = []
    original = ssl.SSLContext.load_verify_locations
    loading = threading.Event()
    release = threading.Event()

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(threading.current_thread().name)
        loading.set()
        release.wait(5)  # a slow bundle: the caller must wait for this load, not start its own
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    tls.warm()
    tls.warm()  # already warming: no second thread
    assert loading.wait(5)  # the thread is loading (and holds the cache's lock)
    threading.Timer(0.2, release.set).start()
    context = tls.ssl_context()
    assert context is tls.ssl_context()
    assert loads == ["oxen-tls-warm"]
    tls.clear_cache()


def test_entering_the_sync_hook_warms_the_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(tls, "warm", lambda *args, **kwargs: calls.append(args))
    with OxenHook("oxen_default"):
        pass
    assert calls == [(True,)]


def test_warm_with_verification_off_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    tls.warm(False)
    assert started == []


def test_a_shared_context_sets_its_alpn_protocols_once() -> None:
    """httpcore sets ALPN before every TLS connection; on a context shared by threads that is
    a race in OpenSSL, so the shared context has HTTP/1.1 set at build time and ignores the
    same request again (a different one still applies)."""
    tls.clear_cache()
    context = tls.ssl_context()
    calls: list[Any] = []
    original = ssl.SSLContext.set_alpn_protocols
    try:
        ssl.SSLContext.set_alpn_protocols = lambda self, p: calls.append(p) or original(self, p)  # type: ignore[method-assign]
        context.set_alpn_protocols(["http/1.1"])
        context.set_alpn_protocols(("http/1.1",))
        assert calls == []
        context.set_alpn_protocols(["http/1.1", "h2"])
        assert calls == [["http/1.1", "h2"]]
    finally:
        ssl.SSLContext.set_alpn_protocols = original  # type: ignore[method-assign]
        tls.clear_cache()
    assert isinstance(context, ssl.SSLContext)


def test_warm_and_prepare_pass_a_given_context_through() -> None:
    given = ssl.create_default_context()
    tls.warm(given)  # nothing to load, nothing raised
    asyncio.run(tls.prepare(given))
    assert tls.httpx_verify(given) is given


def test_entering_the_hook_never_fails_over_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(tls, "warm", broken)
    with OxenHook("oxen_default") as hook:
        assert hook is not None
