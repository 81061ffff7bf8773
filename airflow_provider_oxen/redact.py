"""Keep signed URL queries out of what the provider stores, returns, logs and raises.

Oxen's result URLs (and presigned URLs passed as model inputs, e.g. ``input_image``) carry
their signature in the query string: whoever holds the whole URL can read the file until it
expires. Manifests live for years and XComs are readable by everyone with access to the DAG,
so both keep a URL without its query (and without any ``user:password@``), which still says
which file it was. The transfer itself downloads from the full URL, which never leaves it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# A URL inside free text (an error message, a log line): scheme, then no whitespace or quotes.
_URL_IN_TEXT = re.compile(r"""\bhttps?://[^\s"'<>`]+""", re.IGNORECASE)
# Punctuation that ends the sentence around a URL rather than the URL ("(GET https://…):").
_TRAILING = re.compile(r"[)\].,;:!}]+$")
# Query parameters that sign a URL rather than name the file (AWS SigV4 and V2, CloudFront, GCS,
# Azure SAS): a fresh signature of the same object changes only these.
_SIGNATURE_PARAMS = frozenset(
    {"signature", "expires", "awsaccesskeyid", "policy", "key-pair-id"}
    | {"sig", "se", "st", "sp", "sv", "sr", "spr"}
)
_SIGNATURE_PREFIXES = ("x-amz-", "x-goog-")


def strip_query(url: str) -> str:
    """``url`` without its query, fragment and credentials; text without a URL scheme as is.

    The one redaction of a URL in the package: manifests, XComs, log lines and error messages
    (a refused download's, a failed request's) all show a URL through it.
    """
    if (
        url.startswith(("https://", "http://"))
        and not url.startswith(("https:///", "http:///"))
        and url.isprintable()
        and "#" not in url
        and "@" not in url
    ):
        # No fragment or credentials to cut: at most a query, cut at its first "?". What the
        # parse below gives, without ~10 µs per trigger payload.
        return url.partition("?")[0]
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: cut by hand, as much as can be told
        head = url.split("?", 1)[0].split("#", 1)[0]
        scheme, sep, rest = head.partition("://")
        authority, slash, path = rest.partition("/")
        return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}" if sep else head
    if not parts.scheme:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def strip_signature(url: str) -> str:
    """``url`` without the query parameters that sign it, its fragment and credentials.

    What tells two inputs apart (the ledger's fingerprint, recovery's comparison): a URL signed
    afresh on a retry is the same input, while ``?id=1`` and ``?id=2`` stay different. Not a
    redaction: whatever is stored, logged or raised goes through :func:`strip_query`.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return strip_query(url)
    if not parts.scheme:
        return url
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair
        and (name := unquote_plus(pair.partition("=")[0]).lower()) not in _SIGNATURE_PARAMS
        and not name.startswith(_SIGNATURE_PREFIXES)
    ]
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "&".join(kept), ""))


def _is_url(text: str) -> bool:
    return _URL_IN_TEXT.fullmatch(text.strip()) is not None


def strip_url_queries(value: Any, cut: Callable[[str], str] = strip_query) -> Any:
    """A copy of ``value`` (dicts and lists, at any depth) in which every string that is a URL
    has lost its query (or what ``cut`` removes, e.g. :func:`strip_signature`). Other strings,
    such as a prompt mentioning a link, are left alone."""
    if isinstance(value, str):
        return cut(value.strip()) if "://" in value and _is_url(value) else value
    if isinstance(value, Mapping):
        return {key: strip_url_queries(item, cut) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_url_queries(item, cut) for item in value]
    return value


def redact_text(text: str) -> str:
    """Free text (an error message) with every URL in it cut before its query."""

    def cut(match: re.Match[str]) -> str:
        url = match.group(0)
        trailing = _TRAILING.search(url)
        tail = trailing.group(0) if trailing else ""
        return strip_query(url[: len(url) - len(tail)]) + tail

    return _URL_IN_TEXT.sub(cut, text)
