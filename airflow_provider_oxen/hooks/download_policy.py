"""Which result URLs a hook may fetch, and how many bytes it may read from them (docs/connection.md).

Refused, with :class:`~airflow_provider_oxen.exceptions.OxenDownloadRefusedError`: a scheme other
than https (plain http only to the connection's own origin or a ``download_allow_http_hosts``
host); a host resolving to a non-global address unless it is the own origin or listed in
``download_allowed_hosts``; a body above ``download_max_bytes``. The download client's event
hooks check every redirect hop before it is sent. Messages never show a URL's query or user info.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from airflow_provider_oxen.exceptions import OxenDownloadRefusedError, OxenValidationError
from airflow_provider_oxen.redact import strip_query

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # room for video results, not only images
_DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64 well-known prefix: 64:ff9b::a.b.c.d reaches the IPv4 address a.b.c.d through a gateway.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


@dataclass(frozen=True)
class DownloadPolicy:
    """What may be downloaded (:meth:`from_connection`): ``origin`` is the API's ``(scheme, host, port)``;
    host sets hold normalised names, a leading ``.`` meaning "this domain and its subdomains"."""

    origin: tuple[str, str, int]
    allowed_hosts: frozenset[str] = frozenset()
    allow_http_hosts: frozenset[str] = frozenset()
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_connection(cls, base_url: str, extras: Mapping[str, Any] | None = None) -> DownloadPolicy:
        """The policy of a connection: its API base URL and its ``download_*`` extras."""
        extras = extras or {}
        url = httpx.URL(base_url)
        scheme = url.scheme.lower()
        origin = (scheme, normalise_host(url.host), url.port or _DEFAULT_PORTS.get(scheme, 0))
        return cls(
            origin=origin,
            allowed_hosts=parse_hosts(extras.get("download_allowed_hosts"), "download_allowed_hosts"),
            allow_http_hosts=parse_hosts(
                extras.get("download_allow_http_hosts"), "download_allow_http_hosts"
            ),
            max_bytes=parse_max_bytes(extras.get("download_max_bytes")),
        )

    def is_own_origin(self, scheme: str, host: str, port: int) -> bool:
        return (scheme.lower(), normalise_host(host), port) == self.origin

    def is_allowed_host(self, host: str) -> bool:
        """Listed in ``download_allowed_hosts``: fetched even if it resolves to a private address."""
        return _host_listed(normalise_host(host), self.allowed_hosts)

    def allows_http(self, host: str) -> bool:
        """Listed in ``download_allow_http_hosts``: may be fetched over plain http."""
        return _host_listed(normalise_host(host), self.allow_http_hosts)


def normalise_host(host: str) -> str:
    """Lower case, no IPv6 brackets, no trailing dot, IDNA-encoded (what httpx puts in ``URL.host``)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _host_listed(host: str, entries: frozenset[str]) -> bool:
    if host in entries:
        return True
    return any(entry.startswith(".") and (host.endswith(entry) or host == entry[1:]) for entry in entries)


def parse_hosts(value: Any, name: str) -> frozenset[str]:
    """A list of host names, or one comma-separated string of them; ``*.x`` / ``.x`` match subdomains."""
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        raise OxenValidationError(
            f"Connection extra '{name}' must be a list of host names or a comma-separated string",
            field=name,
        )
    hosts: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise OxenValidationError(f"Connection extra '{name}' holds a non-string entry", field=name)
        entry = item.strip()
        if not entry:
            continue
        wildcard = entry.startswith(("*.", "."))
        host = normalise_host(entry.lstrip("*").lstrip("."))
        if not host or "/" in host or "*" in host or (":" in host and literal_ip(host) is None):
            raise OxenValidationError(
                f"Connection extra '{name}': {entry!r} is not a host name (no scheme, port or path)",
                field=name,
            )
        hosts.add(f".{host}" if wildcard else host)
    return frozenset(hosts)


def parse_max_bytes(value: Any) -> int:
    """``download_max_bytes``: a positive integer (a JSON number or a string of digits)."""
    if value is None or value == "":
        return DEFAULT_MAX_BYTES
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number <= 0:
        raise OxenValidationError(
            f"Connection extra 'download_max_bytes' must be a positive integer, not {value!r}",
            field="download_max_bytes",
        )
    return number


@dataclass(frozen=True)
class ParsedTarget:
    """One URL that passed the scheme/host rules; ``trusted`` ones skip the address check."""

    scheme: str
    host: str
    port: int
    own_origin: bool
    allowed_host: bool
    shown_url: str  # scheme://host:port/path: no user info, no query

    @property
    def trusted(self) -> bool:
        return self.own_origin or self.allowed_host


def refused(reason: str, host: str | None, url: str) -> OxenDownloadRefusedError:
    """The error for a refused download: reason and host only, never the query."""
    return OxenDownloadRefusedError(f"Download refused for host {host or '(none)'}: {reason}", url=url)


def check_url(url: str | httpx.URL, policy: DownloadPolicy) -> ParsedTarget:
    """Scheme and host rules (no I/O). Raises :class:`OxenDownloadRefusedError`."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise refused("the URL cannot be parsed", None, strip_query(str(url))) from None
    shown = strip_query(str(parsed))
    scheme = parsed.scheme.lower()
    host = normalise_host(parsed.host)
    if scheme not in _DEFAULT_PORTS:
        raise refused(f"scheme {scheme or '(none)'!r} is not allowed: result URLs must be https", host, shown)
    if not host:
        raise refused("the URL has no host", None, shown)
    port = parsed.port or _DEFAULT_PORTS[scheme]
    own = policy.is_own_origin(scheme, host, port)
    if scheme == "http" and not own and not policy.allows_http(host):
        own_scheme, own_host, own_port = policy.origin
        raise refused(
            "plain http is only allowed to the connection's own host "
            f"({own_scheme}://{own_host}:{own_port}) or to hosts in the download_allow_http_hosts extra",
            host,
            shown,
        )
    return ParsedTarget(scheme, host, port, own, policy.is_allowed_host(host), shown)


def literal_ip(host: str) -> IPAddress | None:
    """The address a host literally is (``127.0.0.1``, ``::1``, ``[fe80::1%eth0]``), else ``None``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_problem(address: IPAddress | str) -> str | None:
    """Why a download may not go to ``address`` (``"link-local"``, …), or ``None`` if it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded, form = _embedded_ipv4(ip)
        if embedded is not None:
            problem = address_problem(embedded)
            if problem is not None:
                return f"{form} {problem}"
            if form in ("IPv4-mapped", "NAT64"):
                return None  # only a wrapping of that (public) IPv4 address
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, str]:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None, ""


def check_addresses(target: ParsedTarget, addresses: Iterable[str | IPAddress]) -> None:
    """Refuse ``target`` if any address it resolves to is not public (unless the host is trusted).

    Every address must pass: the connection may use any of them.
    """
    if target.trusted:
        return
    addresses = list(addresses)
    if not addresses:
        raise refused("it resolves to no address", target.host, target.shown_url)
    for address in addresses:
        try:
            problem = address_problem(address)
        except ValueError:
            problem = "unparsable"
        if problem is not None:
            raise refused(
                f"its address {address} is {problem}; list the host in the connection's "
                "download_allowed_hosts extra if it is trusted",
                target.host,
                target.shown_url,
            )


def check_content_length(response: httpx.Response, max_bytes: int) -> None:
    """Refuse a response whose declared size is above the cap, before any byte is read."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(response.request.url, max_bytes, declared=int(declared))


def too_large(url: httpx.URL, max_bytes: int, *, declared: int | None = None) -> OxenDownloadRefusedError:
    size = f"declares {declared} bytes" if declared is not None else f"streamed more than {max_bytes} bytes"
    reason = f"the response {size}, above the download_max_bytes limit of {max_bytes}"
    return refused(reason, normalise_host(url.host), strip_query(str(url)))


def _capped(chunks: Iterable[bytes], max_bytes: int, url: httpx.URL) -> Iterator[bytes]:
    """``chunks``, refused once their total passes ``max_bytes``."""
    count = 0
    for chunk in chunks:
        count += len(chunk)
        if count > max_bytes:
            raise too_large(url, max_bytes)
        yield chunk


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (a literal IP is returned as is). Raises ``OSError``."""
    literal = literal_ip(host)
    if literal is not None:
        return [str(literal)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _redirect_target(request: httpx.Request, response: httpx.Response) -> httpx.URL | None:
    if not response.has_redirect_location:
        return None
    try:
        return request.url.join(response.headers["Location"])
    except (httpx.InvalidURL, ValueError):
        return None  # httpx refuses it itself


class _CappedStream(httpx.SyncByteStream):
    """The body as it arrives (before any decoding), refused once past the cap."""

    def __init__(self, stream: httpx.SyncByteStream, max_bytes: int, url: httpx.URL) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._url = url

    def __iter__(self) -> Iterator[bytes]:
        return _capped(self._stream, self._max_bytes, self._url)

    def close(self) -> None:
        self._stream.close()


@dataclass(frozen=True)
class _Guard:
    """A :class:`DownloadPolicy` as a client's event hooks (httpx closes a response they refuse).

    :param resolver: ``(host, port) -> addresses``; :func:`resolve` by default.
    """

    policy: DownloadPolicy
    resolver: Resolver | None = None

    def check_request(self, request: httpx.Request) -> None:
        target = check_url(request.url, self.policy)
        if target.trusted:
            return
        try:
            addresses = (self.resolver or resolve)(target.host, target.port)
        except OSError as exc:
            # A transport error: the hooks' retry policy treats it like any failed connection.
            reason = exc.strerror or type(exc).__name__
            raise httpx.ConnectError(
                f"Could not resolve download host {target.host}: {reason}", request=request
            ) from exc
        check_addresses(target, addresses)

    def check_response(self, response: httpx.Response) -> None:
        request = response.request
        check_content_length(response, self.policy.max_bytes)
        location = _redirect_target(request, response)
        if location is not None:
            # The next hop comes back through check_request (and its address check); refusing
            # a bad scheme here gives the typed error instead of httpx's UnsupportedProtocol.
            check_url(location, self.policy)
        stream = cast(httpx.SyncByteStream, response.stream)
        response.stream = _CappedStream(stream, self.policy.max_bytes, request.url)


def iter_capped(response: httpx.Response, max_bytes: int, chunk_size: int | None = None) -> Iterator[bytes]:
    """``response.iter_bytes`` that refuses a body above ``max_bytes`` (declared or streamed).

    Counted after decoding: a small gzip body that inflates past the cap is refused, and no
    chunk that would cross it is handed out.
    """
    check_content_length(response, max_bytes)
    return _capped(response.iter_bytes(chunk_size), max_bytes, response.url)


def build_download_client(
    policy: DownloadPolicy, *, resolver: Resolver | None = None, **client_kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` that sends no request (no redirect hop) the policy refuses.

    ``client_kwargs`` are the API client's (auth, timeout, headers…): the API key stays the
    client's default auth, so callers must pass ``auth=None`` for URLs off the API's origin.
    Proxies are httpx's own (``HTTP(S)_PROXY``, ``NO_PROXY``), as for the API client.
    """
    guard = _Guard(policy, resolver)
    # Result files are binary; ``identity`` keeps the streamed count equal to the file size.
    headers = {**(client_kwargs.get("headers") or {}), "Accept": "*/*", "Accept-Encoding": "identity"}
    hooks = {"request": [guard.check_request], "response": [guard.check_response]}
    kwargs = {**client_kwargs, "headers": headers, "follow_redirects": True, "event_hooks": hooks}
    return httpx.Client(**kwargs)
