"""The emulator as a child process (``python -m airflow_provider_oxen.emulator``)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

URL_PREFIX = "OXEN_EMULATOR_URL="
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class EmulatorProcess(AbstractContextManager["EmulatorProcess"]):
    """A started emulator process: ``.url``, ``.stop()``; usable as a context manager."""

    def __init__(self, popen: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        self.popen = popen
        self.url = url
        # The file receiving the process's stderr (its request log); deleted by stop().
        self.log_path = Path(log.name)
        self._log = log

    def log_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        return self.popen.returncode

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read_url(popen: subprocess.Popen[bytes], timeout: float) -> str | None:
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = os.read(popen.stdout.fileno(), 4096)
            if not chunk:
                return None
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode().strip()
    return line[len(URL_PREFIX) :] if line.startswith(URL_PREFIX) else None


def start_emulator_process(
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
    python: str = sys.executable,
) -> EmulatorProcess:
    """Launch the emulator (``--port 0`` unless ``args`` name a port) and wait for its URL line."""
    command = [python, "-m", "airflow_provider_oxen.emulator"]
    if "--port" not in args and not any(arg.startswith("--port=") for arg in args):
        command += ["--port", "0"]
    command += list(args)
    child_env = dict(os.environ if env is None else env)
    # The child must import this package even when it is not installed (a source checkout).
    child_env["PYTHONPATH"] = os.pathsep.join(
        part for part in (_PACKAGE_ROOT, child_env.get("PYTHONPATH", "")) if part
    )
    child_env["PYTHONUNBUFFERED"] = "1"
    log = tempfile.NamedTemporaryFile(prefix="oxen-emulator-", suffix=".log", delete=False)  # noqa: SIM115
    popen = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=child_env
    )
    process = EmulatorProcess(popen, _read_url(popen, timeout) or "", log)
    if not process.url:
        popen.kill()
        popen.wait()
        text = process.log_text()
        process.stop()
        raise RuntimeError(f"emulator process did not report its URL; stderr:\n{text[-2000:]}")
    return process
