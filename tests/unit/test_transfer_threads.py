"""running_alongside (an upload in a thread while the caller decodes), the spool's flushes, and
identify_mime_type (an image's type from its header, before any decoding)."""

from __future__ import annotations

import io
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


def test_the_block_s_error_wins_but_only_after_the_work_finished() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()
        raise LookupError("second")

    with pytest.raises(KeyError), running_alongside(slow, name="t"):
        raise KeyError("first")
    assert finished.is_set()


def test_none_runs_nothing() -> None:
    before = threading.active_count()
    with running_alongside(None, name="t"):
        assert threading.active_count() == before


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
def test_identify_mime_type_reads_the_header_and_rewinds(fmt: str, mime: str) -> None:
    data = io.BytesIO()
    Image.effect_noise((512, 384), 64).convert("RGB").save(data, fmt)
    data.seek(7)
    assert identify_mime_type(data) == mime
    assert data.tell() == 0


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_identify_mime_type_needs_only_the_header(fmt: str, mime: str) -> None:
    data = io.BytesIO()
    Image.effect_noise((512, 384), 64).convert("RGB").save(data, fmt)
    assert identify_mime_type(io.BytesIO(data.getvalue()[: len(data.getvalue()) // 2])) == mime


def test_identify_mime_type_of_something_else_is_none() -> None:
    assert identify_mime_type(io.BytesIO(b"GIF89a" + b"\0" * 64)) is None  # not a stored format
    assert identify_mime_type(io.BytesIO(b"not an image at all")) is None
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, "GIF")
    assert identify_mime_type(gif) is None
