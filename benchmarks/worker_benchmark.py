"""Worker side: slot seconds and Oxen requests per image, on a real Airflow run of mapped tasks.

Starts the emulator and a real Airflow 3.3 (api-server, scheduler with the LocalExecutor,
dag-processor, triggerer: ``tests/cluster.py``) with two DAGs from
``benchmarks/worker_dags/``, then, per repetition, runs:

* ``oxen_bench_null`` — M mapped tasks that defer on a ``TimeDeltaTrigger`` and return when
  resumed, importing nothing of this provider: Airflow's own cost of a deferring task;
* ``oxen_bench_worker`` — M mapped ``OxenGenerateImageOperator`` tasks (one image each,
  deferrable, events), the operator as shipped with each phase timed.

Each task process records, per phase (execute until it defers, resume until it returns),
when the process was created (the supervisor forks one per phase), when the operator was
entered and when it left (:mod:`benchmarks.worker_timing`). Slot time per image = both
phases from process creation to the operator's exit; "beyond Airflow's own" = ours minus
the null task's. Oxen requests per image on the worker come from the emulator's request log,
told apart by the User-Agent (the worker's sync hook says ``(sync)``, the triggerer's async
hook ``(async)``). The provider's bytecode is compiled first, as a wheel install leaves it
(``scripts/bootstrap.sh`` compiles the environment's packages the same way). Usage::

    python benchmarks/worker_benchmark.py --tasks 4 --repeat 3
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    REPO,
    fmt_2,
    fmt_int,
    load_average,
    median,
    spread,
    table,
)

API_KEY = "benchmark-key"
NULL_DAG, OXEN_DAG = "oxen_bench_null", "oxen_bench_worker"
GOAL_OVERHEAD_S, GOAL_REQUESTS = 1.0, 2.0


def _phases(records: list[dict[str, Any]], kind: str, run_id: str) -> dict[int, dict[str, dict[str, Any]]]:
    tasks: dict[int, dict[str, dict[str, Any]]] = {}
    for rec in records:
        if rec["kind"] == kind and rec["run_id"] == run_id:
            tasks.setdefault(int(rec["map_index"]), {})[rec["phase"]] = rec
    return tasks


def _task_figures(phases: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    if "execute" not in phases or "resume" not in phases:
        return None
    ex, re = phases["execute"], phases["resume"]
    startup = (ex["entered"] - ex["process_started"]) + (re["entered"] - re["process_started"])
    # Of the start-up: until the DAG file was imported, and from there to the operator's entry.
    to_dag = (ex["dag_imported"] - ex["process_started"]) + (re["dag_imported"] - re["process_started"])
    # Of the first part: the DAG file's own imports (runs kept from before it was recorded: none).
    dag_imports = sum(p["dag_imported"] - p.get("dag_file_started", p["dag_imported"]) for p in (ex, re))
    operator = (ex["left"] - ex["entered"]) + (re["left"] - re["entered"])
    return {
        "startup_s": startup,
        "to_dag_s": to_dag,
        "dag_imports_s": dag_imports,
        "dag_to_operator_s": startup - to_dag,
        "operator_s": operator,
        "operator_execute_s": ex["left"] - ex["entered"],
        "operator_resume_s": re["left"] - re["entered"],
        "slot_s": startup + operator,
    }


def _summarise(records: list[dict[str, Any]], kind: str, run_id: str, tasks: int) -> dict[str, Any]:
    figures = [f for f in (_task_figures(p) for p in _phases(records, kind, run_id).values()) if f]
    out: dict[str, Any] = {"complete": len(figures), "tasks": tasks}
    for key in (
        "startup_s",
        "to_dag_s",
        "dag_imports_s",
        "dag_to_operator_s",
        "operator_s",
        "operator_execute_s",
        "operator_resume_s",
        "slot_s",
    ):
        out[key] = statistics.median(f[key] for f in figures) if figures else float("nan")
    return out


def _requests(emulator_url: str) -> tuple[Counter[str], Counter[str]]:
    """Requests per route made by workers (the sync hook) and by the triggerer (the async one),
    told apart by the User-Agent each hook sends."""
    entries = httpx.get(f"{emulator_url}/_emulator/requests", timeout=60).json()["requests"]
    worker, triggerer = Counter[str](), Counter[str]()
    for e in entries:
        side = worker if e.get("user_agent", "").endswith("(sync)") else triggerer
        side[f"{e['method']} {e['route']}"] += 1
    return worker, triggerer


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    from tests.cluster import Cluster

    started = time.monotonic()
    load_before = load_average()
    runs: list[dict[str, Any]] = []
    # The provider as a wheel install leaves it, bytecode compiled (the checkout may lack it, and
    # PYTHONDONTWRITEBYTECODE stops task processes from writing it): else every task process
    # would compile this provider from source, and that would be measured as its start-up.
    compileall.compile_dir(str(REPO / "airflow_provider_oxen"), quiet=1)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oxen-bench-worker-")))
        dags = work / "dags"
        dags.mkdir()
        for source in (REPO / "benchmarks" / "worker_dags").glob("*.py"):
            shutil.copy(source, dags / source.name)
        timings = work / "timings.jsonl"
        env = {
            "OXEN_BENCH_TIMINGS": str(timings),
            "OXEN_BENCH_WORKER_TASKS": str(args.tasks),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        }
        cluster_started = time.monotonic()
        cluster = stack.enter_context(
            Cluster(
                dags=[dags],
                env=env,
                api_key=API_KEY,
                render_seconds=args.render_seconds,
                emulator_args=["--quiet"],
                expect_dags=[NULL_DAG, OXEN_DAG],
            )
        )
        emulator_url = cluster.emulator_url
        log(f"# worker: Airflow up in {time.monotonic() - cluster_started:.0f} s ({load_average()})")
        cluster.unpause(NULL_DAG)
        cluster.unpause(OXEN_DAG)
        # A first run of each is not measured: the first task processes of a fresh cluster are
        # slower (bundle and DAG parsing, connection pools), and would count against one DAG only.
        for dag_id in (NULL_DAG, OXEN_DAG):
            cluster.wait_for_run(dag_id, cluster.trigger(dag_id), timeout=args.run_timeout)
        log(f"# worker: warm-up runs done ({load_average()})")
        for rep in range(args.repeat):
            null_run = cluster.trigger(NULL_DAG)
            null_state = cluster.wait_for_run(NULL_DAG, null_run, timeout=args.run_timeout)
            httpx.post(f"{emulator_url}/_emulator/reset", timeout=30).raise_for_status()
            oxen_run = cluster.trigger(OXEN_DAG)
            oxen_state = cluster.wait_for_run(OXEN_DAG, oxen_run, timeout=args.run_timeout)
            worker_requests, trigger_requests = _requests(emulator_url)
            records = [json.loads(line) for line in timings.read_text().splitlines() if line.strip()]
            null = _summarise(records, "null", null_run, args.tasks)
            ours = _summarise(records, "oxen", oxen_run, args.tasks)
            run = {
                "side": "worker",
                "rep": rep,
                "tasks": args.tasks,
                "null_state": null_state,
                "oxen_state": oxen_state,
                "null": null,
                "oxen": ours,
                "beyond_airflow_s": ours["slot_s"] - null["slot_s"],
                "worker_requests": dict(worker_requests),
                "triggerer_requests": dict(trigger_requests),
                "worker_requests_per_image": sum(worker_requests.values()) / args.tasks,
            }
            runs.append(run)
            log(
                f"# worker rep {rep + 1}/{args.repeat}: null {null_state} slot {null['slot_s']:.2f} s, "
                f"oxen {oxen_state} slot {ours['slot_s']:.2f} s (operator {ours['operator_s']:.2f} s), "
                f"{run['worker_requests_per_image']:.2f} worker req/image {dict(worker_requests)} "
                f"({load_average()})"
            )
            if null_state != "success" or oxen_state != "success":
                cluster.print_log_tails()
    return {
        "settings": {"tasks": args.tasks, "repeat": args.repeat, "render_seconds": args.render_seconds},
        "runs": runs,
        "load_before": load_before,
        "load_after": load_average(),
        "seconds": time.monotonic() - started,
    }


def render(result: dict[str, Any]) -> str:
    s, runs = result["settings"], result["runs"]

    def col(path: tuple[str, ...], fmt: Any = fmt_2) -> str:
        values = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:  # None: a figure runs kept from older versions do not have
                values.append(value)
        return spread(values, fmt) if values else "-"

    lines = [
        f"{s['tasks']} mapped tasks per DAG run (one image each), LocalExecutor (parallelism 8), real "
        f"Airflow 3.3 on SQLite; per run the median task, then the median of {s['repeat']} run(s) "
        f"(min-max). {result['load_before']} before, {result['load_after']} after "
        f"({result['seconds']:.0f} s).",
        "",
    ]
    header = [
        "task",
        "done",
        "task start-up s (both phases)",
        "of which: to DAG file imported",
        "of that: the DAG file's imports",
        "of which: DAG imported to operator",
        "operator s: execute to defer",
        "operator s: resume to return",
        "slot s per image",
        "Oxen requests per image (worker)",
    ]
    rows = [
        [
            "Airflow's own deferring task (null)",
            col(("null", "complete"), fmt_int) + f"/{s['tasks']}",
            col(("null", "startup_s")),
            col(("null", "to_dag_s")),
            col(("null", "dag_imports_s")),
            col(("null", "dag_to_operator_s")),
            col(("null", "operator_execute_s"), lambda v: f"{v * 1000:.0f} ms"),
            col(("null", "operator_resume_s"), lambda v: f"{v * 1000:.0f} ms"),
            col(("null", "slot_s")),
            "0",
        ],
        [
            "OxenGenerateImageOperator (deferrable)",
            col(("oxen", "complete"), fmt_int) + f"/{s['tasks']}",
            col(("oxen", "startup_s")),
            col(("oxen", "to_dag_s")),
            col(("oxen", "dag_imports_s")),
            col(("oxen", "dag_to_operator_s")),
            col(("oxen", "operator_execute_s")),
            col(("oxen", "operator_resume_s")),
            col(("oxen", "slot_s")),
            col(("worker_requests_per_image",)),
        ],
    ]
    lines += table(header, "lrrrrrrrrr", rows)
    beyond = median(r["beyond_airflow_s"] for r in runs)
    operator = median(r["oxen"]["operator_s"] for r in runs)
    per_image = median(r["worker_requests_per_image"] for r in runs)
    routes: Counter[str] = Counter()
    for run in runs:
        routes.update(run["worker_requests"])
    per_route = ", ".join(
        f"`{route}` {count / (len(runs) * s['tasks']):.2f}" for route, count in sorted(routes.items())
    )
    trig: Counter[str] = Counter()
    for run in runs:
        trig.update(run["triggerer_requests"])
    trig_text = ", ".join(f"`{route}` {count / len(runs):.1f}" for route, count in sorted(trig.items()))
    lines += [
        "",
        "* Slot time beyond Airflow's own (ours minus null, per image): "
        f"{spread([r['beyond_airflow_s'] for r in runs], fmt_2)} s, "
        f"of which the operator's own code {operator:.2f} s: goal < {GOAL_OVERHEAD_S:.0f} s "
        f"{'met' if beyond < GOAL_OVERHEAD_S else 'MISSED'}.",
        f"* Oxen requests per image made by the worker: {per_image:.2f} (goal <= {GOAL_REQUESTS:.0f}: "
        f"{'met' if per_image <= GOAL_REQUESTS else 'MISSED'}); per route: {per_route}.",
        f"* The triggerer's requests per DAG run (all {s['tasks']} waits together): {trig_text or 'none'}.",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=4, help="mapped tasks per DAG run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--render-seconds", type=float, default=4.0)
    parser.add_argument("--run-timeout", type=float, default=300.0)


def main() -> int:
    parser = argparse.ArgumentParser(description="Worker-side benchmark on a real Airflow (markdown table).")
    add_arguments(parser)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    result = run_all(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    print(render(result))
    ok = all(r["null_state"] == "success" and r["oxen_state"] == "success" for r in result["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
