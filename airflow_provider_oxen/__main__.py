"""``python -m airflow_provider_oxen plan DAG_ID``: what a DAG's Oxen tasks would cost, before a run.

Exits 0 when the plan has no problem and fits the budget, 1 otherwise, 2 when the DAG cannot be
loaded. Nothing is enqueued.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from decimal import Decimal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_oxen")
    commands = parser.add_subparsers(dest="command", required=True)
    plan_command = commands.add_parser(
        "plan", help="render, check and price every Oxen task of a DAG; nothing is enqueued"
    )
    plan_command.add_argument("dag_id")
    plan_command.add_argument(
        "--logical-date",
        type=datetime.fromisoformat,
        help="ISO date and time of the planned run (default: now, UTC)",
    )
    plan_command.add_argument("--conf", type=json.loads, default={}, help="the run's conf, as JSON")
    plan_command.add_argument("--budget", type=Decimal, help="fail when the estimated total is above this")
    plan_command.add_argument(
        "--dag-folder", "--subdir", help="file or folder to load DAGs from (default: [core] dags_folder)"
    )
    args = parser.parse_args(argv)
    # Imported after parsing: --help needs no Airflow.
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag

    from airflow_provider_oxen.plan import plan_dag, plan_run

    bag = DagBag(dag_folder=args.dag_folder or settings.DAGS_FOLDER)
    dag = bag.dags.get(args.dag_id)
    if dag is None:
        errors = "".join(f"\n{path}: {error}" for path, error in bag.import_errors.items())
        print(f"DAG {args.dag_id!r} not found in {bag.dag_folder}.{errors}", file=sys.stderr)
        return 2
    logical_date = args.logical_date or datetime.now(timezone.utc)
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=timezone.utc)
    plan = plan_dag(dag, plan_run(dag.dag_id, logical_date=logical_date, conf=args.conf), budget=args.budget)
    print(plan.table())
    return 1 if plan.problems else 0


if __name__ == "__main__":
    sys.exit(main())
