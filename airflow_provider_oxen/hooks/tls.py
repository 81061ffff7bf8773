"""One TLS context per process per TLS setting, shared by every httpx client the provider builds.

Left to itself, httpx builds an ``ssl.SSLContext`` for every client and every transport it
creates, and each one loads the whole CA bundle (~45 ms; more on a busy machine). A task that
builds an API client and a download client paid that twice per execute. An ``SSLContext`` can be
shared by any number of clients and threads once built, so :func:`httpx_verify` builds one per
setting per process and hands the same one out again.

A CA bundle file is not parsed whole: the context reads the same CAs from a hashed directory
built once per host (:mod:`~airflow_provider_oxen.hooks.ca_directory`), only those a handshake
needs, so a fresh task process builds its context in about a millisecond.

A setting is what httpx's ``verify=`` / ``cert=`` would say: ``True`` (httpx's default trust:
``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's bundle), a CA bundle file or directory,
and an optional client certificate. A context is keyed by where its files are and their
modification time and size, so a CA bundle replaced on disk is loaded again by the next client.

httpcore sets the ALPN protocols on the context for each connection it opens. On a context
shared by threads that is a race in OpenSSL (one thread frees the protocol list while another
copies it into a new connection), so a shared context has them set once, when it is built, and
ignores a request for the same protocols again; every client the provider builds speaks
HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from typing import Any, TypeGuard

import httpx

from airflow_provider_oxen.hooks import ca_directory

# What httpx's ``cert=`` takes: a file with both, (certfile, keyfile) or (certfile, keyfile, password).
ClientCert = str | tuple[str, str] | tuple[str, str, str]

_lock = threading.Lock()
# Where the files come from -> (their modification times and sizes, the context built from them).
_contexts: dict[tuple[Any, ...], tuple[tuple[Any, ...], ssl.SSLContext]] = {}
# Settings whose context a :func:`warm` thread is building.
_warming: set[tuple[Any, ...]] = set()


def _reset_lock() -> None:
    # A process forked while another thread held the lock (building a context) gets a free one.
    global _lock
    _lock = threading.Lock()
    _warming.clear()  # no warm-up thread survives a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)


def httpx_verify(
    verify: ssl.SSLContext | str | bool = True, cert: ClientCert | None = None
) -> ssl.SSLContext | bool:
    """What to pass as httpx's ``verify=`` for this setting (and no ``cert=``).

    ``False`` without a client certificate stays ``False`` (httpx builds a context that loads
    nothing); a context passes through; anything else is this process's shared context.
    """
    if isinstance(verify, ssl.SSLContext) and cert is not None:
        raise ValueError("Load the client certificate into the SSLContext passed as verify.")
    if _shared(verify, cert):
        return ssl_context(verify, cert)
    assert not isinstance(verify, str)  # a given context, or False
    return verify


def _shared(verify: ssl.SSLContext | str | bool, cert: ClientCert | None) -> TypeGuard[str | bool]:
    """Whether this setting takes the process's shared context (not a given one, not ``False``)."""
    return not isinstance(verify, ssl.SSLContext) and not (verify is False and cert is None)


def ssl_context(verify: str | bool = True, cert: ClientCert | None = None) -> ssl.SSLContext:
    """The process's context for this TLS setting, built on first use (thread-safe).

    It is the context httpx would build for ``verify=verify, cert=cert``, without the arguments
    httpx 0.28 deprecates (a path as ``verify``, ``cert=``).
    """
    where = _where(verify, cert)
    stamp = tuple(_stamp(path) for path in _files(where))
    if None in stamp:  # a file is missing: build uncached, so the error is httpx's own
        return _build(where)
    with _lock:
        cached = _contexts.get(where)
        if cached is not None and cached[0] == stamp:
            directory = cached[1].__dict__.get("ca_directory")
            # Puts back CA files a cleaner removed (the context reads them from the same path);
            # if that is no longer possible, a context that loads the bundle replaces it.
            if directory is None or ca_directory.hashed_directory(where[2]) == directory:
                return cached[1]
        context = _build(where)
        _contexts[where] = (stamp, context)
        return context


def is_cached(verify: str | bool = True, cert: ClientCert | None = None) -> bool:
    """Whether :func:`ssl_context` would return at once (no CA bundle to load)."""
    where = _where(verify, cert)
    cached = _contexts.get(where)
    return cached is not None and cached[0] == tuple(_stamp(path) for path in _files(where))


async def prepare(verify: ssl.SSLContext | str | bool = True, cert: ClientCert | None = None) -> None:
    """Build the context in a thread unless it is built: a client then built on the loop loads nothing."""
    if _shared(verify, cert) and not is_cached(verify, cert):
        await asyncio.to_thread(ssl_context, verify, cert)


def warm(verify: ssl.SSLContext | str | bool = True, cert: ClientCert | None = None) -> None:
    """Start building the context in a background thread unless it is built or being built.

    Loading a CA bundle releases the GIL, so a task that calls this before its round trips to
    Airflow (XCom, connection, the money-safety ledger) gets its context for free by the time it
    builds a client, which then waits only for what is left of the load (see :func:`ssl_context`).
    """
    if not _shared(verify, cert):
        return
    _start_warming(verify, cert)


def _start_warming(verify: str | bool, cert: ClientCert | None) -> None:
    where = _where(verify, cert)
    if where in _warming or is_cached(verify, cert):
        return
    _warming.add(where)

    def build() -> None:
        try:
            ssl_context(verify, cert)
        except Exception:  # e.g. a missing CA file: the client build raises it where it belongs
            pass
        finally:
            _warming.discard(where)

    threading.Thread(target=build, name="oxen-tls-warm", daemon=True).start()


def clear_cache() -> None:
    """Forget every context (tests; the clients built meanwhile keep theirs)."""
    with _lock:
        _contexts.clear()


def _where(verify: str | bool, cert: ClientCert | None) -> tuple[Any, ...]:
    """``(httpx default?, "cafile" | "capath" | None, CA path, client cert files...)``."""
    certs: tuple[str, ...] = ()
    password: str | None = None
    if isinstance(cert, str):
        certs = (os.path.abspath(cert),)
    elif cert is not None:
        certfile, keyfile, *rest = cert
        certs, password = (os.path.abspath(certfile), os.path.abspath(keyfile)), (rest[0] if rest else None)
    if verify is True:
        # httpx's own choice for verify=True (its trust_env is on for every client here).
        if os.environ.get("SSL_CERT_FILE"):
            kind, path = "cafile", os.path.abspath(os.environ["SSL_CERT_FILE"])
        elif os.environ.get("SSL_CERT_DIR"):
            kind, path = "capath", os.path.abspath(os.environ["SSL_CERT_DIR"])
        else:
            import certifi

            kind, path = "cafile", certifi.where()
        return (True, kind, path, certs, password)
    if verify is False:
        return (False, None, None, certs, password)
    path = os.path.abspath(verify)
    return (None, "capath" if os.path.isdir(path) else "cafile", path, certs, password)


def _files(where: tuple[Any, ...]) -> tuple[str, ...]:
    _, _, path, certs, _ = where
    return ((path,) if path else ()) + certs


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _build(where: tuple[Any, ...]) -> ssl.SSLContext:
    default, kind, path, certs, password = where
    directory = ca_directory.hashed_directory(path) if kind == "cafile" else None
    if directory is not None:
        # The same CAs, read by OpenSSL only when a handshake needs one (see ca_directory).
        context = ssl.create_default_context(capath=directory)
    elif default is not None:
        # verify=True or False: httpx's own function, called without deprecated arguments.
        context = httpx.create_ssl_context(verify=default)
    else:
        # What httpx 0.28 does with verify=<path> (and recommends instead of it).
        context = ssl.create_default_context(**{kind: path})
    if certs:
        context.load_cert_chain(certs[0], certs[1] if len(certs) > 1 else None, password)
    # ``ssl.SSLContext`` is a Python class without slots: the same object, with the override below.
    context.__class__ = SharedSSLContext
    # What it trusts when not loaded whole: ssl_context() keeps that directory complete.
    context.__dict__["ca_directory"] = directory
    context.set_alpn_protocols(list(HTTP11))
    return context


HTTP11 = ("http/1.1",)


class SharedSSLContext(ssl.SSLContext):
    """An ``SSLContext`` whose ALPN protocols, once set, are not set again to the same value.

    httpcore calls :meth:`set_alpn_protocols` before every TLS connection; OpenSSL replaces the
    context's protocol list in place while other threads may be copying it into their new
    connections (CPython releases the GIL there). Setting them once at build time, under the
    cache's lock, and ignoring identical requests afterwards removes that race.
    """

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        protocols = tuple(alpn_protocols)
        if self.__dict__.get("_oxen_alpn") == protocols:
            return
        super().set_alpn_protocols(list(protocols))
        self.__dict__["_oxen_alpn"] = protocols
