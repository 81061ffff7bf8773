"""A spool file: bytes in memory up to a threshold, then a named temporary file on disk.

Not :class:`tempfile.SpooledTemporaryFile`: once on disk the file needs a path, which boto3
streams part by part (a multipart upload of a file object reads each 8 MiB part into memory).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from typing import IO, cast

DEFAULT_SPOOL_BYTES = 8 * 1024 * 1024


class Spool(io.IOBase):
    """A seekable, readable, writable binary file that moves to disk past ``max_memory`` bytes."""

    def __init__(self, max_memory: int = DEFAULT_SPOOL_BYTES) -> None:
        super().__init__()
        self.max_memory = max_memory
        self._file: IO[bytes] = io.BytesIO()
        self._path: str | None = None

    @property
    def path(self) -> str | None:
        """The file's path once it is on disk (flushed, so it can be read by path), else None."""
        if self._path is not None:
            self._file.flush()
        return self._path

    def expect(self, size: int) -> None:
        """Announce the final size (e.g. a Content-Length): a file that will not fit in memory
        goes straight to disk instead of first filling ``max_memory`` bytes of RAM."""
        if size > self.max_memory:
            self._roll_over()

    def _roll_over(self) -> None:
        if self._path is not None:
            return
        memory = cast(io.BytesIO, self._file)
        handle, self._path = tempfile.mkstemp(prefix="oxen-spool-")
        self._file = os.fdopen(handle, "w+b")
        # A memoryview avoids copying what is already in memory just to write it out.
        with memory.getbuffer() as view:
            self._file.write(view)
        self._file.seek(memory.tell())
        memory.close()

    # -- file protocol (what httpx, Pillow and boto3 use) ------------------------------------------

    def write(self, data: bytes) -> int:
        if self._file.tell() + len(data) > self.max_memory:
            self._roll_over()
        return self._file.write(data)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def truncate(self, size: int | None = None) -> int:
        return self._file.truncate(size)

    def reset(self) -> None:
        """Empty the spool for a fresh download (e.g. after a refreshed URL)."""
        self._file.seek(0)
        self._file.truncate()

    def close(self) -> None:
        self._file.close()
        if self._path is not None:
            # mkstemp files are not deleted on close (so they can be read by path meanwhile).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None
        super().close()
