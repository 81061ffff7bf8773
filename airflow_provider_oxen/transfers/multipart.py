"""Upload a large result while it downloads: parts go to S3 as soon as they are in the spool file.

Downloading a whole file and only then uploading it costs the sum of both. A file big enough
to be uploaded in parts anyway can instead have each part sent as soon as the download has
written it to the spool (read back by range from the spool's file, like boto3's ``upload_file``
does, so memory does not grow with the file). The spool still holds the whole file, so checks
and thumbnails work on it as before.

The catch is the metadata: S3 fixes it when a multipart upload starts, and the file's sha256
is known only when its last byte has arrived. So the parts go up under the metadata known at
the start (``generation-id`` among it, never the sha256), and once the upload is complete an
in-place copy (:meth:`S3ObjectStore.seal`) sets the final metadata and Content-Type and makes
S3 compute a full-object SHA-256, which a re-run's HEAD can compare (a multipart upload's
own checksum is only a checksum of its parts).

A run that dies between completing the upload and that copy leaves an object with our
``generation-id`` and no sha256: the next run does not count it as stored (no recorded
sha256 to prove) nor as foreign (our generation id), but rewrites it. A run that dies before
completing leaves only an unfinished upload (invisible, removed by an abort or by a bucket
lifecycle rule), never an object.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_provider_oxen.transfers.spool import Spool

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from airflow_provider_oxen.transfers.store import S3ObjectStore

# Past this an in-place CopyObject is refused by S3 (and the part sizes would need adjusting):
# such a file takes the download-then-upload path.
MAX_STREAMED_BYTES = 5 * 1024**3


class MultipartUpload:
    """A multipart upload whose parts are byte ranges of a file that is still being written.

    Parts are uploaded by a small thread pool (the hook's ``max_concurrency``), each read
    from the file by range, so what is held in memory is bounded by the pool, not the file.
    Each part carries S3's SHA-256 checksum.
    """

    def __init__(self, store: S3ObjectStore, key: str, upload_id: str, workers: int) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="oxen-part")
        self._parts: list[Future[dict[str, Any]]] = []
        self._failure: BaseException | None = None

    def add_part(self, path: str, offset: int, length: int) -> None:
        """Queue ``length`` bytes of ``path`` from ``offset`` (already written and flushed) as the next part.

        Raises a failed part's error at once: downloading the rest would be wasted.
        """
        if self._failure is not None:
            raise self._failure
        number = len(self._parts) + 1
        # In a copy of the caller's context: the task's log fields (context variables) stay on
        # what the part logs.
        future = self._pool.submit(
            contextvars.copy_context().run,
            self._store.upload_part,
            self._key,
            self._upload_id,
            number,
            path,
            offset,
            length,
        )
        future.add_done_callback(self._note_failure)
        self._parts.append(future)

    def _note_failure(self, future: Future[dict[str, Any]]) -> None:
        if self._failure is None and not future.cancelled():
            self._failure = future.exception()

    def complete(self) -> str:
        """Wait for every part, complete the upload; returns the object's ETag."""
        try:
            parts = [future.result() for future in self._parts]
        except BaseException:
            # A failed part (or a kill) dooms the upload: parts still queued are not worth sending.
            self._pool.shutdown(wait=True, cancel_futures=True)
            raise
        self._pool.shutdown(wait=True)
        return self._store.complete_multipart(self._key, self._upload_id, parts)

    def abort(self) -> None:
        """Stop queued parts, wait for running ones, then abort (parts still uploading would survive it).

        Called while another error propagates: a failed abort is logged, not raised over it (the
        unfinished upload is invisible, and a bucket lifecycle rule removes it).
        """
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._store.abort_multipart(self._key, self._upload_id)
        except Exception:
            log.warning(
                "Could not abort the multipart upload %s of %s",
                self._upload_id,
                self._store.uri(self._key),
                exc_info=True,
            )


class StreamingSpool:
    """The download's sink: a spool that, for a file big enough, also uploads it part by part.

    Whether to stream is decided when the download announces its size (``expect``): only a
    file of known size past the hook's multipart threshold, spooled to disk (the parts are
    read back from the file), and small enough for an in-place copy. Otherwise (or when
    ``allowed`` is False) this is just the spool, and :meth:`save` uploads it afterwards as
    before. Used as a context manager: leaving it without :meth:`save` (an error, a refused
    write) aborts a started upload, so no part and no object is left behind.
    """

    def __init__(
        self,
        spool: Spool,
        store: S3ObjectStore,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        allowed: bool,
    ) -> None:
        self.spool = spool
        self._store = store
        self._key = key
        self._allowed = allowed
        self._content_type = content_type
        self._metadata = metadata
        self._upload: MultipartUpload | None = None
        self._part_size = 0
        self._written = 0
        self._queued = 0

    @property
    def streaming(self) -> bool:
        return self._upload is not None

    # -- what fetch_result writes through ------------------------------------------------------------

    def reset(self) -> None:
        """A fresh download (a refreshed URL): whatever was uploaded of the last one is dropped."""
        self._abort()
        self.spool.reset()
        self._written = self._queued = 0

    def expect(self, size: int | None) -> None:
        self.spool.expect(size)
        if not self._allowed or size is None or size > MAX_STREAMED_BYTES or not self.spool.on_disk:
            return
        part_size = self._store.part_size(size)
        if part_size is not None:
            self._part_size = part_size
            self._upload = self._store.start_multipart(
                self._key, content_type=self._content_type, metadata=self._metadata
            )

    def write(self, data: bytes) -> int:
        written = self.spool.write(data)
        self._written += written
        if self._upload is not None and self._written - self._queued >= self._part_size:
            self._queue_parts(final=False)
        return written

    def flush(self) -> None:
        self.spool.flush()

    # -- the end ----------------------------------------------------------------------------------

    def save(self, *, content_type: str, metadata: dict[str, str]) -> None:
        """Store the downloaded file at the key with its final Content-Type and metadata (sha256 included)."""
        if self._upload is None:
            self._store.upload(self.spool, self._key, content_type=content_type, metadata=metadata)
            return
        self._queue_parts(final=True)
        upload, self._upload = self._upload, None
        try:
            etag = upload.complete()
        except BaseException:
            upload.abort()
            raise
        self._store.seal(self._key, etag, content_type=content_type, metadata=metadata)

    def _queue_parts(self, *, final: bool) -> None:
        assert self._upload is not None
        path = self.spool.path  # flushes what was written so far
        assert path is not None
        while self._written - self._queued >= self._part_size or (final and self._written > self._queued):
            length = min(self._part_size, self._written - self._queued)
            self._upload.add_part(path, self._queued, length)
            self._queued += length

    def _abort(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            upload.abort()

    def __enter__(self) -> StreamingSpool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._abort()
