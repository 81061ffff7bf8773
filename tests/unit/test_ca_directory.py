"""A CA bundle as OpenSSL's hashed directory (hooks/ca_directory.py): same CAs, read on demand.

The handshakes through such a directory (a custom CA trusted, an unknown one refused) are in
``test_tls_cache.py``; here: the hashes are OpenSSL's own, the directory holds exactly the
bundle, is built once, repaired when files vanish, and never used when it is not private.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest

from airflow_provider_oxen.hooks import ca_directory, tls

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):  # httpx's default trust: certifi's bundle
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__OXEN__CA_DIRECTORY", str(tmp_path / "default-ca"))
    ca_directory.clear_cache()
    tls.clear_cache()
    yield
    ca_directory.clear_cache()
    tls.clear_cache()


def _bundle_ders(path: str | Path) -> list[bytes]:
    return sorted(ssl.PEM_cert_to_DER_cert(pem) for pem in _PEM.findall(Path(path).read_text()))


def _directory_ders(directory: str) -> list[bytes]:
    return sorted(
        ssl.PEM_cert_to_DER_cert((Path(directory) / name).read_text())
        for name in os.listdir(directory)
        if name != "MANIFEST"
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to compare with")
def test_subject_hashes_are_openssls_own_for_every_certifi_ca() -> None:
    subject_hash = ca_directory.subject_hash_function()
    assert subject_hash is not None
    pems = _PEM.findall(Path(certifi.where()).read_text())
    assert len(pems) > 50
    for pem in pems:
        command = ["openssl", "x509", "-noout", "-subject_hash"]
        cli = subprocess.run(command, input=pem, capture_output=True, text=True, check=True).stdout.strip()
        assert f"{subject_hash(ssl.PEM_cert_to_DER_cert(pem)):08x}" == cli


def test_the_directory_holds_exactly_the_bundle_under_hash_names(tmp_path: Path) -> None:
    directory = ca_directory.hashed_directory(certifi.where(), tmp_path / "ca")
    assert directory is not None and Path(directory).parent == tmp_path / "ca"
    assert _directory_ders(directory) == _bundle_ders(certifi.where())
    subject_hash = ca_directory.subject_hash_function()
    assert subject_hash is not None
    for name in os.listdir(directory):
        if name == "MANIFEST":
            continue
        stem, index = name.split(".")
        der = ssl.PEM_cert_to_DER_cert((Path(directory) / name).read_text())
        assert stem == f"{subject_hash(der):08x}" and index.isdigit()
    assert os.stat(tmp_path / "ca").st_mode & 0o777 == 0o700


def test_names_that_share_a_hash_are_numbered(tmp_path: Path) -> None:
    pems = [pem.encode() for pem in _PEM.findall(Path(certifi.where()).read_text())[:3]]
    bundle = tmp_path / "three.pem"
    bundle.write_bytes(b"\n".join(pems) + b"\n")
    (tmp_path / "ca").mkdir(mode=0o700)
    directory = ca_directory._write(tmp_path / "ca" / "x", str(bundle), pems, lambda der: 0xABC)
    assert directory is not None
    assert sorted(os.listdir(directory)) == ["00000abc.0", "00000abc.1", "00000abc.2", "MANIFEST"]


def test_built_once_and_reused_by_the_next_process(tmp_path: Path) -> None:
    first = ca_directory.hashed_directory(certifi.where(), tmp_path / "ca")
    assert first is not None
    stamps = {name: os.stat(Path(first) / name).st_mtime_ns for name in os.listdir(first)}
    ca_directory.clear_cache()  # as a fresh process would find it
    assert ca_directory.hashed_directory(certifi.where(), tmp_path / "ca") == first
    assert {name: os.stat(Path(first) / name).st_mtime_ns for name in os.listdir(first)} == stamps
    assert len(os.listdir(tmp_path / "ca")) == 1  # no staging directory left behind


def test_a_directory_missing_files_is_built_again(tmp_path: Path) -> None:
    directory = ca_directory.hashed_directory(certifi.where(), tmp_path / "ca")
    assert directory is not None
    victim = sorted(name for name in os.listdir(directory) if name != "MANIFEST")[0]
    os.remove(Path(directory) / victim)
    ca_directory.clear_cache()
    assert ca_directory.hashed_directory(certifi.where(), tmp_path / "ca") == directory
    assert _directory_ders(directory) == _bundle_ders(certifi.where())


def test_a_changed_bundle_gets_its_own_directory(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    pems = _PEM.findall(Path(certifi.where()).read_text())
    bundle.write_text(pems[0] + "\n")
    first = ca_directory.hashed_directory(str(bundle), tmp_path / "ca")
    bundle.write_text(pems[0] + "\n" + pems[1] + "\n")
    second = ca_directory.hashed_directory(str(bundle), tmp_path / "ca")
    assert first is not None and second is not None and first != second
    assert _directory_ders(second) == _bundle_ders(bundle)


def test_a_directory_others_can_write_is_never_used(tmp_path: Path) -> None:
    base = tmp_path / "ca"
    base.mkdir(mode=0o700)
    base.chmod(0o777)  # anyone could add a CA
    assert ca_directory.hashed_directory(certifi.where(), base) is None
    assert os.listdir(base) == []


def test_a_symlinked_directory_is_never_used(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "ca").symlink_to(real)
    assert ca_directory.hashed_directory(certifi.where(), tmp_path / "ca") is None


def test_an_empty_option_turns_it_off_and_the_bundle_loads_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OXEN__CA_DIRECTORY", "")
    assert ca_directory.base_directory() is None
    context = tls.ssl_context()
    assert context.__dict__["ca_directory"] is None
    assert sorted(context.get_ca_certs(binary_form=True)) == _bundle_ders(certifi.where())


def test_the_option_chooses_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__OXEN__CA_DIRECTORY", str(tmp_path / "chosen"))
    context = tls.ssl_context()
    assert Path(context.__dict__["ca_directory"]).parent == tmp_path / "chosen"
    assert not context.get_ca_certs()  # nothing parsed up front


def test_an_unreadable_certificate_leaves_the_error_to_the_bundle_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "broken.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    assert ca_directory.hashed_directory(str(bundle), tmp_path / "ca") is None
    monkeypatch.setenv("AIRFLOW__OXEN__CA_DIRECTORY", str(tmp_path / "ca"))
    with pytest.raises(ssl.SSLError):
        tls.ssl_context(str(bundle))


def test_a_directory_under_a_parent_others_can_write_is_never_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could rename "ca" and put their own in its place
    assert ca_directory.hashed_directory(certifi.where(), shared / "ca") is None
    shared.chmod(0o1777)  # sticky, like /tmp: entries can be renamed only by their owners
    ca_directory.clear_cache()  # as a fresh process would find it
    assert ca_directory.hashed_directory(certifi.where(), shared / "ca") is not None


def test_the_parent_it_creates_is_private(tmp_path: Path) -> None:
    directory = ca_directory.hashed_directory(certifi.where(), tmp_path / "per-user" / "ca")
    assert directory is not None
    assert os.stat(tmp_path / "per-user").st_mode & 0o777 == 0o700


def test_a_bundle_with_other_pem_blocks_is_loaded_whole(tmp_path: Path) -> None:
    pems = _PEM.findall(Path(certifi.where()).read_text())
    body = pems[1].split("\n", 1)[1].rsplit("\n", 1)[0]
    bundle = tmp_path / "trust.pem"  # OpenSSL's trusted-certificate format, which a whole load accepts
    bundle.write_text(
        pems[0] + "\n-----BEGIN TRUSTED CERTIFICATE-----\n" + body + "\n-----END TRUSTED CERTIFICATE-----\n"
    )
    assert ca_directory.hashed_directory(str(bundle), tmp_path / "ca") is None


def test_a_file_cut_short_counts_as_missing(tmp_path: Path) -> None:
    directory = ca_directory.hashed_directory(certifi.where(), tmp_path / "ca")
    assert directory is not None
    victim = Path(directory) / sorted(n for n in os.listdir(directory) if n != "MANIFEST")[0]
    victim.write_bytes(victim.read_bytes()[:100])
    ca_directory.clear_cache()
    assert ca_directory.hashed_directory(certifi.where(), tmp_path / "ca") == directory
    assert _directory_ders(directory) == _bundle_ders(certifi.where())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_while_the_lock_is_held_does_not_hang() -> None:
    with ca_directory._lock:
        pid = os.fork()
        if pid == 0:  # the child: the lock must be free here
            os._exit(0 if ca_directory._lock.acquire(timeout=2) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
