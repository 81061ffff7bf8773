"""Run one piece of a transfer in a thread while the caller does another (an upload, a decode)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def running_alongside(work: Callable[[], None] | None, *, name: str) -> Iterator[None]:
    """Run ``work`` in a thread while the ``with`` block runs; its error is raised after the block.

    The block always waits for ``work`` to finish, even when the block fails (whose error then
    wins): ``work`` may read a file the caller deletes as soon as the block is left. ``None``
    runs nothing.
    """
    if work is None:
        yield
        return
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if errors:
        raise errors[0]
