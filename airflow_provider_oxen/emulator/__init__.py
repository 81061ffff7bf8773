"""An emulator of the Oxen.ai inference API: a real HTTP server for tests, demos and benchmarks.

It follows the contract in the project's API notes (queue, sync generation, SSE events, models,
signed result files) and adds a ``/_emulator`` control API for recording and fault injection.
"""

from __future__ import annotations

from .app import create_app
from .config import EmulatorConfig
from .process import EmulatorProcess, start_emulator_process
from .server import EmulatorHandle, EmulatorServer, run_emulator_in_thread
from .state import EmulatorState

__all__ = [
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorProcess",
    "EmulatorServer",
    "EmulatorState",
    "create_app",
    "run_emulator_in_thread",
    "start_emulator_process",
]
