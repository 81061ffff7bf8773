"""CLI: ``python -m airflow_provider_oxen.emulator --port 0`` prints ``OXEN_EMULATOR_URL=...``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from .config import EmulatorConfig
from .process import URL_PREFIX
from .server import EmulatorServer


def parse_args(argv: Sequence[str] | None = None) -> EmulatorConfig:
    """The settings the flags name; the others keep EmulatorConfig's defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_oxen.emulator",
        description="Oxen.ai inference API emulator on 127.0.0.1 (for tests and demos).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument("--api-key", help="the only accepted bearer token (default: any)")
    parser.add_argument("--render-seconds", type=float, help="queue and sync render time (default: 2)")
    parser.add_argument("--queue-seconds", type=float, help="time queued before processing (default: 0.2)")
    parser.add_argument("--video-render-seconds", type=float, help="default: 4 x the image render time")
    parser.add_argument(
        "--credits", help="remaining account credits as a decimal (e.g. 1.50); default unlimited"
    )
    parser.add_argument(
        "--row-parameters",
        action="store_true",
        help="queue rows also carry the request's own parameters as top-level fields",
    )
    parser.add_argument("--quiet", dest="log_requests", action="store_false", help="no per-request log lines")
    try:
        return EmulatorConfig(**{"log_requests": True, **vars(parser.parse_args(argv))})
    except ValidationError as exc:
        first = exc.errors()[0]
        parser.error(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")


async def serve(config: EmulatorConfig) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = EmulatorServer(config)
    url = await server.start()
    sys.stdout.write(f"{URL_PREFIX}{url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    # Only the access log goes to stderr: one line per request, without any request headers.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("airflow_provider_oxen.emulator.access").setLevel(logging.INFO)
    # It keeps every generation until a reset, and a full collection each time that heap grew by
    # a quarter paused it up to 0.3 s: enqueues held back then all completed in one burst. So a
    # full pass also waits for 1,000 middle ones (the clients under test must set the pace).
    gc.set_threshold(700, 10, 1000)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
