"""Fetching a request's input images (``input_image``) over HTTP, as the real service does.

Any http(s) URL the emulator can reach works, presigned S3 URLs included: the URL is sent exactly as
given (never re-quoted, which would break a signature). Error messages name the parameter
(``input_image``, ``input_image[1]``) and show the URL without its query string, so that a
signature never ends up in a row's ``error_message`` or a log.
"""

from __future__ import annotations

import asyncio
import io
from urllib.parse import urlsplit

import aiohttp
from PIL import Image
from yarl import URL

MAX_INPUT_BYTES = 32 * 1024 * 1024
# How long fetching a request's inputs may take before the generation fails.
INPUT_TIMEOUT_SECONDS = 30.0


class InputError(Exception):
    """An input that could not be used; the message starts with the parameter it came from."""

    def __init__(self, label: str, problem: str) -> None:
        super().__init__(f"{label}: {problem}")


def shown_url(url: str) -> str:
    """The URL as it may be shown: scheme, host and path only (no credentials, query or fragment)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not parts.hostname:
        return repr(url[:80]) if "?" not in url else repr(url.partition("?")[0][:80])
    host = parts.netloc.rpartition("@")[2]  # without credentials
    return f"{parts.scheme}://{host}{parts.path}"


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's secret parts (an exception may quote the whole URL)."""
    parts = urlsplit(url)
    for secret in (url, parts.query, parts.password or ""):
        if secret:
            text = text.replace(secret, "…")
    return text


async def _fetch_one(session: aiohttp.ClientSession, label: str, url: str) -> bytes:
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InputError(label, f"{shown} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(label, f"{shown} is not an http(s) URL the service can fetch")
    try:
        async with session.get(URL(url, encoded=True), allow_redirects=True) as response:
            if response.status >= 400:
                status = f"HTTP {response.status} {response.reason or ''}".rstrip()
                raise InputError(label, f"could not fetch {shown}: {status}")
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > MAX_INPUT_BYTES:
                    raise InputError(label, f"{shown} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB")
            return bytes(data)
    except InputError:
        raise
    except asyncio.TimeoutError:
        raise InputError(
            label, f"could not fetch {shown}: no answer within {INPUT_TIMEOUT_SECONDS:g} s"
        ) from None
    except (aiohttp.ClientError, ValueError, OSError) as exc:
        reason = _scrub(str(exc), url) or type(exc).__name__
        raise InputError(label, f"could not fetch {shown}: {reason}") from None


def _check_image(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


async def fetch_inputs(urls: list[tuple[str, str]]) -> tuple[bytes, ...]:
    """The bytes of every ``(label, url)``, fetched concurrently (within INPUT_TIMEOUT_SECONDS in
    all) and checked to be images.

    Raises InputError for the first (in order) that cannot be fetched or is not a readable image.
    """
    if not urls:
        return ()
    timeout = aiohttp.ClientTimeout(total=INPUT_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        results = await asyncio.gather(
            *(_fetch_one(session, label, url) for label, url in urls), return_exceptions=True
        )
    loop = asyncio.get_running_loop()
    for (label, url), result in zip(urls, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, InputError):
                raise result
            raise InputError(label, f"could not fetch {shown_url(url)}: {type(result).__name__}") from result
        try:
            await loop.run_in_executor(None, _check_image, result)
        except Exception as exc:
            # PIL's messages name the in-memory buffer ("<_io.BytesIO object at 0x...>"): not useful.
            reason = str(exc).split(" <_io.")[0] or type(exc).__name__
            raise InputError(label, f"{shown_url(url)} is not a readable image ({reason})") from None
    return tuple(result for result in results if isinstance(result, bytes))
