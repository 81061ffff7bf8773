"""A CA bundle as OpenSSL's hashed directory, so a process loads only the CAs it verifies against.

``load_verify_locations(cafile=bundle)`` parses every certificate of the bundle into the
context's store: about 45 ms of CPU for certifi's 117 CAs, paid by every task process that
talks to Oxen, twice per deferring task, and several times that on a busy worker.
``load_verify_locations(capath=directory)`` costs nothing up front: OpenSSL reads a CA's file
when a handshake first needs it, by the hash of its subject name (``<hash>.<n>``, the layout of
``openssl rehash`` and of ``/etc/ssl/certs``). Trust is the same: the directory holds exactly
the bundle's certificates, which is checked once, when it is written, against what a whole
load of the bundle trusts (any difference: the bundle is loaded whole).

The directory is built once per bundle content and user (``[oxen] ca_directory`` chooses where;
empty turns this off), written under a temporary name and renamed into place, so a reader sees
all of it or none. A process checks it against its manifest (names and sizes) when it first
uses it, and its names at every client build after that, and writes it again if a file went
missing. It is used only if nobody else can change it (``options.private_directory``: a CA
directory someone else can swap would let them add a CA).
The subject hashes come from the OpenSSL library this process already has loaded
(``X509_subject_name_hash`` through ``ctypes``), never re-implemented. Whenever anything here
is not possible (no such library, an unreadable certificate, no safe directory) the caller
loads the bundle as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from airflow_provider_oxen.options import private_directory, provider_directory

log = logging.getLogger(__name__)

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)
_MANIFEST = "MANIFEST"
_lock = threading.Lock()
# Bundle path and content stamp -> the directory (or None: not possible, load the bundle).
_known: dict[tuple[str, int, int], str | None] = {}
# Directory -> the certificate file names it was complete with when this process checked it.
_listed: dict[str, set[str]] = {}


def _reset_lock() -> None:
    # A process forked while a warm-up thread was building holds a lock nobody will release.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)


def base_directory() -> Path | None:
    """``[oxen] ca_directory``, else a per-user directory under the system temp dir; None if empty."""
    return provider_directory("ca_directory", "ca")


def hashed_directory(bundle: str, base: Path | None = None) -> str | None:
    """The hashed directory holding exactly ``bundle``'s certificates; None to load the bundle instead."""
    try:
        st = os.stat(bundle)
    except OSError:
        return None  # the caller's load raises the error where it belongs
    key = (os.path.abspath(bundle), st.st_mtime_ns, st.st_size)
    with _lock:
        known = _known.get(key, "")
        if known is None:
            return None  # not possible here: asking again would only repeat the work
        # Checked on every call, by its names only (one listing, well under a millisecond; the
        # sizes were checked when this process first used it): a temp-dir cleaner may have
        # removed files since, and a context built earlier reads them on demand from the same
        # path, so putting them back repairs it too.
        if not known or _listed.get(known) != _names(Path(known)):
            where = base if base is not None else base_directory()
            _known[key] = known = _build(bundle, where) if where is not None else None
            if known is not None:
                _listed[known] = _names(Path(known))
        return known


def _build(bundle: str, base: Path) -> str | None:
    try:
        data = Path(bundle).read_bytes()
        if not private_directory(base):
            return None
        target = base / hashlib.sha256(data).hexdigest()[:32]
        if target.is_dir() and _complete(target):
            return str(target)
        pems = _PEM.findall(data)
        name_hash = subject_hash_function()
        if name_hash is None or not pems:
            return None
        return _write(target, bundle, pems, name_hash)
    except Exception:  # never worth failing a request over: the bundle loads as before
        log.debug("Could not build a hashed CA directory for %s", bundle, exc_info=True)
        return None


def _write(
    target: Path, bundle: str, pems: list[bytes], name_hash: Callable[[bytes], int | None]
) -> str | None:
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        taken: dict[int, int] = {}
        ders = set()
        for pem in pems:
            der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
            subject = name_hash(der)
            if subject is None:
                return None  # a certificate OpenSSL cannot read: let the bundle load report it
            index = taken.get(subject, 0)
            taken[subject] = index + 1
            (staging / f"{subject:08x}.{index}").write_bytes(pem + b"\n")
            ders.add(der)
        # Once per host and bundle, the whole load it replaces, to prove the same CAs are trusted
        # (a block this does not write, e.g. OpenSSL's "TRUSTED CERTIFICATE", makes them differ).
        if ders != set(ssl.create_default_context(cafile=bundle).get_ca_certs(binary_form=True)):
            return None
        (staging / _MANIFEST).write_text(_manifest(staging))
        _swap_in(staging, target)
        return str(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` at ``target``; an incomplete one there is moved aside first, so
    at no time is a finished directory removed without another in its place."""
    try:
        staging.rename(target)
        return
    except OSError:
        if not target.is_dir():
            raise
    if _complete(target):
        return  # another process put its own finished copy there first
    aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target.parent))
    target.rename(aside / "old")
    try:
        staging.rename(target)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _manifest(directory: Path) -> str:
    # Names and sizes: a file cut short (a crash while writing) counts as missing.
    return "".join(f"{name} {os.stat(directory / name).st_size}\n" for name in sorted(_names(directory)))


def _names(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if name != _MANIFEST}


def _complete(directory: Path) -> bool:
    """Whether every certificate file the manifest lists is there, at its size (and nothing else)."""
    try:
        listed = (directory / _MANIFEST).read_text()
        return bool(listed.strip()) and listed == _manifest(directory)
    except OSError:
        return False


# -- OpenSSL's subject hash ----------------------------------------------------------------------


def subject_hash_function() -> Callable[[bytes], int | None] | None:
    """``X509_subject_name_hash`` of a DER certificate, from the libcrypto ``ssl`` is linked to."""
    library = _libcrypto()
    if library is None:
        return None
    d2i, name_hash, free = library.d2i_X509, library.X509_subject_name_hash, library.X509_free
    d2i.restype = ctypes.c_void_p
    d2i.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
    name_hash.restype, name_hash.argtypes = ctypes.c_ulong, [ctypes.c_void_p]
    free.restype, free.argtypes = None, [ctypes.c_void_p]

    def subject_hash(der: bytes) -> int | None:
        cursor = ctypes.c_char_p(der)  # d2i moves the cursor; ``der`` keeps the bytes alive
        cert = d2i(None, ctypes.byref(cursor), len(der))
        if not cert:
            return None
        try:
            value = int(name_hash(cert)) & 0xFFFFFFFF
        finally:
            free(cert)
        return value or None  # 0 is also OpenSSL's error value: not worth the doubt

    return subject_hash


def _libcrypto() -> ctypes.CDLL | None:
    """A libcrypto already loaded in this process: ``_ssl`` itself if OpenSSL is linked into it,
    else a mapped ``libcrypto`` (the subject hash is the same in every OpenSSL since 1.0)."""
    import _ssl

    candidates = [getattr(_ssl, "__file__", None)]  # OpenSSL linked into _ssl itself
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        candidates += sorted({line.split()[-1] for line in maps if "libcrypto" in line.rsplit("/", 1)[-1]})
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        try:
            library = ctypes.CDLL(path)
            for symbol in ("d2i_X509", "X509_subject_name_hash", "X509_free"):
                getattr(library, symbol)
        except (OSError, AttributeError):
            continue
        return library
    return None


def clear_cache() -> None:
    """Forget which directories were built (tests)."""
    with _lock:
        _known.clear()
        _listed.clear()
