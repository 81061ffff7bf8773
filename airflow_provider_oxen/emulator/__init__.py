"""An emulator of the Oxen.ai inference API: a real HTTP server for tests, demos and benchmarks.

It follows the contract in the project's API notes (queue, sync generation, SSE events, models,
signed result files) and adds a ``/_emulator`` control API for recording and fault injection.
"""

from __future__ import annotations

from .config import EmulatorConfig
from .process import EmulatorProcess, start_emulator_process
from .server import EmulatorServer, run_emulator_in_thread

__all__ = [
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "run_emulator_in_thread",
    "start_emulator_process",
]
