"""The cluster's process handling: a component's whole session is stopped, including the
descendants that left its process group (as Airflow's task processes do with setpgid)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Process, session_pids, stop_session

# A leader that forks a child which moves to its own process group, then both sleep.
TREE = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    time.sleep(600)
    sys.exit(0)
print(pid, flush=True)
time.sleep(600)
"""


def _start(tmp_path: Path, *, ignore_term: bool = False) -> tuple[Process, int]:
    code = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "") + TREE
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert popen.stdout is not None
    child = int(popen.stdout.readline())
    popen.stdout.close()
    return Process("tree", popen, tmp_path / "tree.log"), child


@pytest.mark.parametrize("ignore_term", [False, True], ids=["stops-on-sigterm", "ignores-sigterm"])
def test_a_session_is_stopped_with_the_descendants_that_left_its_group(
    tmp_path: Path, ignore_term: bool
) -> None:
    """A leader that ignores SIGTERM is killed after the grace period."""
    component, child = _start(tmp_path, ignore_term=ignore_term)
    assert sorted(session_pids(component.sid)) == sorted([component.popen.pid, child])
    started = time.monotonic()
    stop_session(component, grace=1)
    assert session_pids(component.sid) == []
    assert (1 if ignore_term else 0) <= time.monotonic() - started < 10
