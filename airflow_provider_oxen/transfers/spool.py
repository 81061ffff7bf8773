"""A spool file: bytes in memory up to a threshold, then a named temporary file on disk.

Like :class:`tempfile.SpooledTemporaryFile`, except that once on disk the file has a path.
That matters for the upload: boto3 streams a *path* from disk part by part, but a multipart
upload of an open file object reads each part (8 MiB by default, several at once) into
memory. With a path, a large image is never held in memory, whatever its size.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from typing import IO, cast

DEFAULT_SPOOL_BYTES = 8 * 1024 * 1024


class Spool(io.IOBase):
    """A seekable, readable, writable binary file that moves to disk past ``max_memory`` bytes.

    Closing it (or leaving its ``with`` block) deletes the file on disk.
    """

    def __init__(self, max_memory: int = DEFAULT_SPOOL_BYTES, *, directory: str | None = None) -> None:
        super().__init__()
        self.max_memory = max_memory
        self._directory = directory
        self._file: IO[bytes] = io.BytesIO()
        self._path: str | None = None

    @property
    def path(self) -> str | None:
        """The file's path once it is on disk (flushed, so it can be read by path), else None."""
        if self._path is not None:
            self._file.flush()
        return self._path

    @property
    def on_disk(self) -> bool:
        return self._path is not None

    def size(self) -> int:
        position = self._file.tell()
        end = self._file.seek(0, os.SEEK_END)
        self._file.seek(position)
        return end

    def expect(self, size: int | None) -> None:
        """Announce the final size (e.g. a Content-Length): a file that will not fit in memory
        goes straight to disk instead of first filling ``max_memory`` bytes of RAM."""
        if size is not None and size > self.max_memory:
            self._roll_over()

    def _roll_over(self) -> None:
        if self._path is not None:
            return
        memory = cast(io.BytesIO, self._file)
        handle, self._path = tempfile.mkstemp(prefix="oxen-spool-", dir=self._directory)
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
