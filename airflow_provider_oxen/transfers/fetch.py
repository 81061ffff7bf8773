"""Download a result file into a spool, hashing as it streams; refresh an expired URL once.

An expired signed link answers 403, 404 or 410; reading the generation again hands out a fresh
one. A body that breaks off mid-stream is read again from the start (the hook retries a request
only until its headers arrive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO, cast

import httpx

from airflow_provider_oxen.exceptions import OxenAPIStatusError, OxenResultDownloadError
from airflow_provider_oxen.hooks.oxen import DownloadResult, OxenHook
from airflow_provider_oxen.hooks.retry import delay_after_transport_error
from airflow_provider_oxen.models import GenerationStatus
from airflow_provider_oxen.redact import redact_text, strip_query
from airflow_provider_oxen.transfers.spool import Spool

EXPIRED_URL_STATUSES = frozenset({403, 404, 410})


@dataclass(frozen=True)
class Fetched(DownloadResult):
    """What was spooled: size, sha256, the server's Content-Type, and why the URL was refreshed (if so)."""

    refresh_reason: str | None = None


def _download_whole(hook: OxenHook, generation_id: str, url: str, spool: Spool) -> DownloadResult:
    """The hook's guarded download into ``spool``, started again from the first byte while the
    body keeps breaking off (as often as the connection's retry policy allows)."""
    attempt = 0
    while True:
        spool.reset()
        try:
            return hook.download_to(url, cast("IO[bytes]", spool), on_length=spool.expect)
        except httpx.TransportError as exc:
            delay = delay_after_transport_error(exc, attempt, paid=False, policy=hook.settings.retry)
            if delay is None:
                raise OxenResultDownloadError(
                    f"Could not download the result of generation {generation_id}: the download kept "
                    f"breaking off ({type(exc).__name__}: {redact_text(str(exc))})",
                    generation_id=generation_id,
                ) from exc
            attempt += 1
            hook.log.warning(
                "Download of %s broke off (%s): reading it again from the start in %.1f s (attempt %d)",
                strip_query(url),
                type(exc).__name__,
                delay,
                attempt + 1,
            )
            time.sleep(delay)


def _fresh_url(hook: OxenHook, generation_id: str) -> str:
    row = hook.get_generation(generation_id)
    if row.status is not GenerationStatus.SUCCEEDED or not row.result_url:
        raise OxenResultDownloadError(
            f"Generation {generation_id} has no result to download (status {row.status.value})",
            generation_id=generation_id,
        )
    return row.result_url


def fetch_result(hook: OxenHook, generation_id: str, url: str | None, spool: Spool) -> Fetched:
    """Stream ``url`` into ``spool``; on 403/404/410 re-read the generation for a fresh URL, once.

    Any other error (or a second failure) raises :class:`OxenResultDownloadError` naming the
    generation, with no URL query (the signature) in its message.
    """
    reason = None
    if not url:
        url, reason = _fresh_url(hook, generation_id), "no result_url"
    elif "?" not in url:
        # Results keep the URL without its signed query (it is a credential): the signed one is
        # read afresh, as a matter of course (not a refresh), rather than trying a bare link.
        url = _fresh_url(hook, generation_id)
    while True:
        try:
            done = _download_whole(hook, generation_id, url, spool)
            return Fetched(done.size, done.sha256, done.content_type, refresh_reason=reason)
        except OxenAPIStatusError as exc:
            if reason is not None or exc.status_code not in EXPIRED_URL_STATUSES:
                raise OxenResultDownloadError(
                    f"Could not download the result of generation {generation_id}"
                    f"{', even with a refreshed URL' if reason else ''}: {redact_text(str(exc))}",
                    generation_id=generation_id,
                ) from exc
            url, reason = _fresh_url(hook, generation_id), f"HTTP {exc.status_code} (expired URL)"
