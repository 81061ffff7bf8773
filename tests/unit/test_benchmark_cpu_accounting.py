"""The storage benchmark's CPU accounting (what shows the S3 server, not the client, sets the pace)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.common import machine_cpu, process_cpu_seconds
from benchmarks.storage_benchmark import CpuMeter, render


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_cpu_seconds_counts_this_process_and_others() -> None:
    before = process_cpu_seconds()
    _spin(0.2)
    assert process_cpu_seconds() - before >= 0.15
    spin = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
        "print('spun', flush=True)\ninput()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spun"
        assert process_cpu_seconds(child.pid) >= 0.3  # its spin at least, counted by another process
    finally:
        child.communicate("\n", timeout=10)


def test_machine_cpu_and_the_meter_count_work_and_an_unreadable_process_counts_as_zero() -> None:
    assert process_cpu_seconds(2**22 + 12345) == 0.0  # above pid_max's default: never a process
    busy, total = machine_cpu()
    assert 0 < busy <= total
    with CpuMeter({"me_again": os.getpid()}) as meter:
        _spin(0.2)
    busy_after, total_after = machine_cpu()
    assert busy_after - busy >= 0.15
    assert total_after - total >= busy_after - busy
    assert meter.used["self"] >= 0.15
    assert meter.used["me_again"] >= 0.15
    assert meter.used["machine_total"] >= meter.used["machine_busy"] >= 0.15


def _run(mode: str, seconds: float, **cpu: float) -> dict[str, object]:
    return {
        "mode": mode,
        "name": "20mib",
        "bytes": 20 * 2**20,
        "seconds": seconds,
        "rep": 0,
        "rss_before_mb": 50.0,
        "rss_peak_mb": 60.0,
        **cpu,
    }


def test_render_names_the_server_load_and_tolerates_runs_kept_without_cpu() -> None:
    measured = {"cpu_self_s": 0.1, "cpu_s3_server_s": 0.24, "cpu_file_server_s": 0.0, "machine_busy": 0.7}
    result = {
        "settings": {"repeat": 1},
        "load_before": "-",
        "load_after": "-",
        "seconds": 1.0,
        "runs": [_run("boto3", 0.25, **measured), _run("transfer-nochecks", 0.35, **measured)],
    }
    text = render(result)
    assert "S3 server CPU seconds per second of the peer's upload: 0.96 at 20 MiB (machine 70% busy)" in text
    assert "| 0.24 | 70% |" in text

    old = {**result, "runs": [_run("boto3", 0.25), _run("transfer-nochecks", 0.35)]}
    text = render(old)
    assert "S3 server CPU" not in text
    assert "| - | - | - |" in text
