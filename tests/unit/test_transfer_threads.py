"""running_alongside (an upload in a thread while the caller decodes), the spool's flushes, and
identify_mime_type (an image's type from its header, before any decoding)."""

from __future__ import annotations

import contextvars
import io
import signal
import threading
import time

import pytest
from PIL import Image

from airflow_provider_oxen.review.checks import identify_mime_type
from airflow_provider_oxen.transfers.spool import Spool
from airflow_provider_oxen.transfers.threads import running_alongside


def test_work_runs_in_another_thread_while_the_block_runs() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def work() -> None:
        seen.append(threading.current_thread().name)
        started.set()
        release.wait(5)

    with running_alongside(work, name="oxen-test"):
        assert started.wait(5)  # the block runs while the work is still going
        release.set()
    assert seen == ["oxen-test"]


def test_the_block_is_left_only_when_the_work_is_done() -> None:
    done: list[str] = []

    def slow() -> None:
        time.sleep(0.2)
        done.append("work")

    with running_alongside(slow, name="t"):
        pass
    assert done == ["work"]  # finished before the with statement returned


def test_the_work_s_error_is_raised_after_the_block() -> None:
    ran: list[str] = []

    def failing() -> None:
        raise LookupError("upload failed")

    with pytest.raises(LookupError, match="upload failed"), running_alongside(failing, name="t"):
        time.sleep(0.05)
        ran.append("block")
    assert ran == ["block"]


def test_the_block_s_error_wins_after_the_work_finished_and_the_work_s_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()
        raise LookupError("the upload failed too")

    with pytest.raises(KeyError), running_alongside(slow, name="oxen-test"):
        raise KeyError("first")
    assert finished.is_set()
    [record] = [r for r in caplog.records if r.name == "airflow_provider_oxen.transfers.threads"]
    assert "oxen-test failed too, while KeyError was being raised" in record.getMessage()
    assert record.exc_info is not None and "the upload failed too" in str(record.exc_info[1])


def test_an_interrupt_while_waiting_takes_effect_once_the_work_is_done() -> None:
    # As an execution_timeout (SIGALRM) or Ctrl-C would: raised in the main thread mid-join.
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.5)
        finished.set()

    def interrupt(signum: int, frame: object) -> None:
        raise TimeoutError("execution_timeout")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(TimeoutError), running_alongside(slow, name="t"):
            pass  # the block is done at once: the interrupt lands in the join
        assert finished.is_set()  # the spool the work reads was never closed under it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_work_runs_in_the_caller_s_context() -> None:
    # Airflow's task runner binds the task's log fields as context variables.
    field: contextvars.ContextVar[str] = contextvars.ContextVar("field")
    field.set("ti-123")
    seen: list[str] = []
    with running_alongside(lambda: seen.append(field.get()), name="t"):
        pass
    assert seen == ["ti-123"]


def test_none_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("no thread should start")

    monkeypatch.setattr("airflow_provider_oxen.transfers.threads.threading.Thread", no_thread)
    ran: list[str] = []
    with running_alongside(None, name="t"):
        ran.append("block")
    assert ran == ["block"]


def test_a_spool_on_disk_flushes_only_what_was_written_since(monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(max_memory=4) as spool:
        spool.write(b"0123456789")
        flushes: list[int] = []
        original = spool.flush
        monkeypatch.setattr(spool, "flush", lambda: (flushes.append(1), original())[1])
        path = spool.path
        assert path is not None and flushes == [1]
        with open(path, "rb") as handle:
            assert handle.read() == b"0123456789"
        assert spool.path == path and flushes == [1]  # nothing new: another thread may ask freely
        spool.write(b"ab")
        assert spool.path == path and flushes == [1, 1]
        spool.reset()
        assert spool.path == path and len(flushes) == 3


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_identify_mime_type_agrees_with_pillow_from_the_first_bytes_and_rewinds(fmt: str, mime: str) -> None:
    data = io.BytesIO()
    Image.effect_noise((512, 384), 64).convert("RGB").save(data, fmt)
    with Image.open(io.BytesIO(data.getvalue())) as opened:
        assert opened.format == fmt  # what a decode reports
    cut = io.BytesIO(data.getvalue()[:16])  # all it reads: a corrupt or cut file is still named
    cut.seek(7)
    assert identify_mime_type(cut) == mime
    assert cut.tell() == 0


@pytest.mark.parametrize(
    "head",
    [
        b"GIF89a" + b"\0" * 16,  # an image, but not a format this provider stores
        b"not an image at all",
        b"RIFF\0\0\0\0WAVEfmt ",  # RIFF, but audio
        b"RIFF\0\0\0\0WEBPXXXX",  # not a chunk Pillow's WebP plugin accepts
        b"\x89PNG\r\n",  # short of the signature
        b"",
    ],
)
def test_identify_mime_type_of_anything_else_is_none(head: bytes) -> None:
    assert identify_mime_type(io.BytesIO(head)) is None


def test_multipart_parts_upload_in_the_caller_s_context() -> None:
    from airflow_provider_oxen.transfers.multipart import MultipartUpload

    field: contextvars.ContextVar[str] = contextvars.ContextVar("field")
    field.set("ti-456")
    seen: list[tuple[int, str]] = []

    class Store:
        def upload_part(self, key: str, upload_id: str, number: int, *args: object) -> dict[str, object]:
            seen.append((number, field.get()))
            return {"PartNumber": number, "ETag": f'"{number}"'}

        def complete_multipart(self, key: str, upload_id: str, parts: list[dict[str, object]]) -> str:
            return '"done-2"'

    upload = MultipartUpload(Store(), "key", "upload-1", workers=2)  # type: ignore[arg-type]
    upload.add_part("/nowhere", 0, 5)
    upload.add_part("/nowhere", 5, 5)
    assert upload.complete() == '"done-2"'
    assert sorted(seen) == [(1, "ti-456"), (2, "ti-456")]
