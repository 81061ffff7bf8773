"""Run one piece of a transfer in a thread while the caller does another (an upload, a decode)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def running_alongside(work: Callable[[], None] | None, *, name: str) -> Iterator[None]:
    """Run ``work`` in a thread while the ``with`` block runs; its error is raised after the block.

    The block is never left before ``work`` has finished, even when the block fails or an
    interrupt (an ``execution_timeout``, Ctrl-C) arrives while waiting: ``work`` may read a
    file the caller deletes as soon as the block is left, so abandoning it would turn an
    interrupted upload into a broken one. An interrupt therefore takes effect once ``work``
    is done (for an upload: at most its remaining time). The block's own error wins; an
    error of ``work`` at the same time is logged, not lost. ``None`` runs nothing.

    ``work`` runs in a copy of the caller's context, so the task's log fields (bound as
    context variables by Airflow's task runner) stay on what it logs.
    """
    if work is None:
        yield
        return
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), name=name, daemon=True)
    thread.start()
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
    interrupt = _wait(done)
    failure = failure or interrupt
    if failure is not None:
        if errors:
            log.warning(
                "%s failed too, while %s was being raised", name, type(failure).__name__, exc_info=errors[0]
            )
        raise failure
    if errors:
        raise errors[0]


def _wait(done: threading.Event) -> BaseException | None:
    """Wait for ``done`` whatever interrupts the wait; the first interrupt is returned.

    An event, not ``Thread.join``: a join interrupted by an exception from a signal handler
    can take the thread for finished while it still runs (CPython 3.11's bpo-45274 handling).
    """
    interrupt: BaseException | None = None
    while True:
        try:
            done.wait()
            return interrupt
        except BaseException as exc:
            interrupt = interrupt or exc
