"""TLS is httpx's default trust: a real handshake with a throwaway certificate named by SSL_CERT_FILE.

Each client builds its own TLS context (see ``client_kwargs``); the async hook builds its
clients off the event loop, so loading the CA bundle never holds up the triggerer.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oxen.hooks.api import OxenSettings
from airflow_provider_oxen.hooks.oxen import OxenAsyncHook, OxenHook
from tests.integration.helpers import LocalServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@dataclass
class Pki:
    cert: Path  # self-signed for 127.0.0.1: the server's certificate and the bundle to trust
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Oxen test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder(
            subject_name=name,
            issuer_name=name,
            public_key=key.public_key(),
            serial_number=x509.random_serial_number(),
            not_valid_before=now - datetime.timedelta(minutes=5),
            not_valid_after=now + datetime.timedelta(days=1),
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    pki = Pki(cert=folder / "server.pem", key=folder / "server.key")
    pki.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


@pytest.fixture(scope="module")
def https_url(pki: Pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    server = LocalServer(tls=context)  # answers "ok"
    yield server.origin
    server.close()


def test_the_hook_trusts_the_ca_that_ssl_cert_file_names(
    https_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "oxen", "host": https_url, "password": "k", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_DEFAULT", json.dumps(conn))
    with OxenHook() as hook, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        hook.get_conn().get("/")  # certifi does not know the test certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.cert))
    with OxenHook() as hook:
        assert hook.get_conn().get("/").status_code == 200
        buffer = io.BytesIO()
        assert hook.download_to(f"{https_url}/result.png", buffer).size == 2  # the download client too
    assert buffer.getvalue() == b"ok"


@pytest.mark.asyncio
async def test_the_async_hook_builds_its_clients_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []
    original = ssl.SSLContext.load_verify_locations

    def recording(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(threading.get_ident())
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", recording)
    hook = OxenAsyncHook(settings=OxenSettings.from_connection("https://oxen.test", "key", {}))
    clients = [await hook.get_async_conn(), await hook.new_client(limits=httpx.Limits(max_connections=4))]
    assert len(loads) == 2 and threading.get_ident() not in loads
    for client in clients:
        await client.aclose()
