#!/usr/bin/env python3
"""A production-shaped Airflow on this machine: PostgreSQL, Redis, CeleryExecutor, two triggerers.

    .venv/bin/python scripts/cluster.py up      # start it, keep it up until Ctrl-C (make cluster)
    .venv/bin/python scripts/cluster.py soak    # the CI-sized chaos soak
    .venv/bin/python scripts/cluster.py soak --tasks 320 --images 4 --render-seconds 15   # at scale

Everything runs on 127.0.0.1 from a throwaway directory (tests/cluster.py); missing pieces
are installed first (apt-get: postgresql, redis-server). Everything started is stopped on
exit, Ctrl-C included. See docs/deployment.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster import REPO, Cluster, log
from tests.production.soak import DAGS, SoakConfig, run_soak_cluster


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> int:
    with Cluster(
        executor="CeleryExecutor",
        dags=[REPO / "dags", DAGS],
        render_seconds=args.render_seconds,
        workers=args.workers,
        worker_concurrency=args.concurrency,
        triggerers=args.triggerers,
        expect_dags=["oxen_generate_images"],
        keep=args.keep,
    ) as cluster:
        print(
            f"""
Airflow UI / REST API   {cluster.api_url}   (every user is admin)
Oxen API (emulator)     {cluster.emulator_url}   (control API: {cluster.emulator_url}/_emulator/stats)
PostgreSQL              127.0.0.1:{cluster.pg_port} (database airflow, user airflow)
Redis (Celery broker)   127.0.0.1:{cluster.redis_port}
components              {", ".join(cluster.processes)}
logs                    {cluster.run_dir}

Open the UI and trigger oxen_generate_images. Ctrl-C stops everything.
""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while True:
                cluster.check_alive()
                time.sleep(2)
        except KeyboardInterrupt:
            log("stopping")
    return 0


def soak(args: argparse.Namespace) -> int:
    config = SoakConfig(
        tasks=args.tasks,
        images_per_task=args.images,
        render_seconds=args.render_seconds,
        workers=args.workers,
        worker_concurrency=args.concurrency,
        timeout=args.timeout,
        keep=args.keep,
    )
    started = time.monotonic()
    report = run_soak_cluster(config)
    print(report.render(), flush=True)
    log(f"soak finished in {time.monotonic() - started:.0f} s (start-up and shutdown included)")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = SoakConfig()
    for name in ("up", "soak"):
        command = sub.add_parser(name)
        command.add_argument("--workers", type=int, default=defaults.workers)
        command.add_argument(
            "--concurrency", type=int, default=defaults.worker_concurrency, help="slots per worker"
        )
        render_seconds = 5.0 if name == "up" else defaults.render_seconds
        command.add_argument("--render-seconds", type=float, default=render_seconds)
        command.add_argument("--keep", action="store_true", help="keep the run directory (logs, database)")
    sub.choices["up"].add_argument("--triggerers", type=int, default=2)
    soak_parser = sub.choices["soak"]
    soak_parser.add_argument(
        "--tasks", type=int, default=defaults.tasks, help="mapped generate tasks (plus 8 more)"
    )
    soak_parser.add_argument(
        "--images", type=int, default=defaults.images_per_task, help="per generate task (1-4)"
    )
    soak_parser.add_argument(
        "--timeout", type=float, default=defaults.timeout, help="give up on the run after this"
    )
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else soak(args)


if __name__ == "__main__":
    sys.exit(main())
