#!/usr/bin/env python3
"""A production-shaped Airflow on this machine: PostgreSQL, Redis, CeleryExecutor, two triggerers.

    .venv/bin/python scripts/cluster.py up      # start it, keep it up until Ctrl-C (make cluster)
    .venv/bin/python scripts/cluster.py soak    # the CI-sized chaos soak: 40 tasks
    .venv/bin/python scripts/cluster.py soak --tasks 300 --images 4 --render-seconds 15   # at scale

Everything runs on 127.0.0.1 from a throwaway directory: a PostgreSQL cluster of its own (run
as ``nobody`` when started as root), Redis without persistence, the Oxen API emulator, and
Airflow's api-server, scheduler, dag-processor, two triggerers and two Celery workers.
Missing pieces are installed first (apt-get: postgresql, redis-server; pip: the
``production`` extra). Everything started is stopped on exit, Ctrl-C included.
See docs/deployment.md.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.production.cluster import EXAMPLE_DAG, SOAK_DAGS, ProductionCluster, log, run_until_interrupted
from tests.production.soak import SoakConfig, run_soak_cluster


def up(args: argparse.Namespace) -> int:
    api_key = f"oxen-cluster-{secrets.token_hex(12)}"
    with ProductionCluster(
        api_key,
        dags=[EXAMPLE_DAG, SOAK_DAGS],
        workers=args.workers,
        worker_concurrency=args.concurrency,
        triggerers=args.triggerers,
        render_seconds=args.render_seconds,
        expect_dags=["oxen_generate_images"],
        keep=args.keep,
    ) as cluster:
        token = cluster.api("GET", "/auth/token")  # simple auth manager: everyone is admin
        token.raise_for_status()
        print(
            f"""
Airflow UI / REST API   {cluster.api_url}   (every user is admin)
Oxen API (emulator)     {cluster.emulator_url}   (control API: {cluster.emulator_url}/_emulator/stats)
PostgreSQL              127.0.0.1:{cluster.pg_port} (database airflow, user airflow)
Redis (Celery broker)   127.0.0.1:{cluster.redis_port}
components              {", ".join(cluster.components)}
logs                    {cluster.run_dir}

Try:  curl -X PATCH {cluster.api_url}/api/v2/dags/oxen_generate_images -H "Authorization: Bearer $TOKEN" \\
        -H 'Content-Type: application/json' -d '{{"is_paused": false}}'
      (or open the UI and trigger oxen_generate_images). Ctrl-C stops everything.
""",
            flush=True,
        )
        try:
            run_until_interrupted(cluster)
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
    for name in ("up", "soak"):
        command = sub.add_parser(name)
        command.add_argument("--workers", type=int, default=2)
        command.add_argument("--concurrency", type=int, default=8, help="task slots per Celery worker")
        command.add_argument("--keep", action="store_true", help="keep the run directory (logs, dumps)")
    sub.choices["up"].add_argument("--triggerers", type=int, default=2)
    sub.choices["up"].add_argument("--render-seconds", type=float, default=5.0)
    soak_parser = sub.choices["soak"]
    soak_parser.add_argument(
        "--tasks", type=int, default=32, help="mapped generate tasks (plus 8 chaos tasks)"
    )
    soak_parser.add_argument("--images", type=int, default=2, help="images per generate task (1-4)")
    soak_parser.add_argument("--render-seconds", type=float, default=8.0)
    soak_parser.add_argument("--timeout", type=float, default=1800.0, help="give up on the run after this")
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else soak(args)


if __name__ == "__main__":
    sys.exit(main())
