"""CLI: ``python -m airflow_provider_oxen.emulator --port 0`` prints ``OXEN_EMULATOR_URL=...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal

from .config import EmulatorConfig, parse_credits
from .process import URL_PREFIX
from .server import EmulatorServer


def _credits(text: str) -> Decimal:
    try:
        amount = parse_credits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert amount is not None
    return amount


def parse_args(argv: Sequence[str] | None = None) -> EmulatorConfig:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_oxen.emulator",
        description="Oxen.ai inference API emulator (for tests and demos).",
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None, help="the only accepted bearer token (default: any)")
    parser.add_argument("--render-seconds", type=float, default=2.0)
    parser.add_argument("--queue-seconds", type=float, default=0.2)
    parser.add_argument(
        "--sync-render-seconds",
        type=float,
        default=None,
        help="sync endpoint render time (default: --render-seconds)",
    )
    parser.add_argument(
        "--video-render-seconds",
        type=float,
        default=None,
        help="video render time, queue and sync (default: 4 x the image render time)",
    )
    parser.add_argument(
        "--input-timeout-seconds",
        type=float,
        default=30.0,
        help="how long fetching an input_image may take",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--url-ttl-seconds", type=float, default=3600.0)
    parser.add_argument("--keepalive-seconds", type=float, default=15.0)
    parser.add_argument("--public-url", default=None, help="base URL put in result-file URLs")
    parser.add_argument("--no-events", action="store_true", help="GET /api/events answers 404")
    parser.add_argument(
        "--row-parameters",
        action="store_true",
        help="queue rows also carry the request's own parameters as top-level fields",
    )
    parser.add_argument(
        "--credits",
        type=_credits,
        default=None,
        help="remaining account credits as a decimal (e.g. 1.50); default unlimited",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines on stderr")
    args = parser.parse_args(argv)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        render_seconds=args.render_seconds,
        queue_seconds=args.queue_seconds,
        sync_render_seconds=args.sync_render_seconds,
        video_render_seconds=args.video_render_seconds,
        input_timeout_seconds=args.input_timeout_seconds,
        latency_ms=args.latency_ms,
        url_ttl_seconds=args.url_ttl_seconds,
        keepalive_seconds=args.keepalive_seconds,
        public_url=args.public_url,
        events_enabled=not args.no_events,
        row_parameters=args.row_parameters,
        credits=args.credits,
        log_requests=not args.quiet,
    )


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
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
