"""Every performance figure in one run: triggerer, worker and storage side, plus sizing.

Prints the three tables (markdown) and the sizing figures derived from them; with
``--write-docs`` it also rewrites the generated blocks of ``docs/performance.md`` (between
their ``BEGIN GENERATED`` / ``END GENERATED`` markers) with exactly what it printed, and
``--json-out`` keeps every run. Usage::

    .venv/bin/python benchmarks/run_all.py --write-docs     # the documented run (docs/performance.md)
    .venv/bin/python benchmarks/run_all.py --smoke          # CI: every code path, small sizes, about 3 min

Exit status 1 when a run did not complete (a wait that never fired, a DAG run that failed);
goals missed are reported in the tables, not as a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import storage_benchmark, wait_benchmark, worker_benchmark
from benchmarks.common import REPO, load_average, median, replace_generated, stamp

DOC = REPO / "docs" / "performance.md"
SIDES = ("triggerer", "worker", "storage")


def _namespace(module: Any, **overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def sizing(results: dict[str, Any]) -> str:
    """What the figures mean for a deployment, computed from this run's medians."""
    lines = []
    trig = results.get("triggerer")
    if trig:
        runs = [r for r in trig["runs"] if r["strategy"] == "events"]
        if runs:
            largest = max(r["n"] for r in runs)
            group = [r for r in runs if r["n"] == largest]
            base = median(r["rss_before_mb"] for r in group)
            per_1k = median(r["rss_per_1k_mb"] for r in group)
            cpu_1k = median(r["cpu_per_1k"] for r in group)
            s = trig["settings"]
            mean_render = (s["render_seconds"] + s["render_seconds_max"]) / 2
            lines += [
                f"* Triggerer memory (events): about {base:.0f} MB for the process before the first "
                f"wait, plus {per_1k:.1f} MB per 1,000 concurrent waits (measured at N = {largest:,}): "
                f"{base + per_1k * 10:.0f} MB for 10,000, {base + per_1k * 50:.0f} MB for 50,000.",
                f"* Triggerer CPU (events): {cpu_1k:.2f} CPU s per 1,000 waits of {mean_render:g} s on "
                f"average, i.e. {cpu_1k:.2f} ms per generation waited for; one core kept half free "
                f"for the rest of the triggerer finishes about {500 / max(cpu_1k, 1e-9):,.0f} waits per "
                "second (waits per second, not concurrent waits: a wait that lasts longer costs "
                "little more while it is idle).",
            ]
            peer = [r for r in trig["runs"] if r["strategy"] == wait_benchmark.PEER]
            if peer:
                peer_n = max(r["n"] for r in peer)
                pg = [r for r in peer if r["n"] == peer_n]
                eg = [r for r in runs if r["n"] == peer_n]
                if eg:
                    lines.append(
                        f"* Oxen API load while waiting, at N = {peer_n:,}: "
                        f"{median(r['requests_per_gen'] for r in eg):.3f} requests per generation "
                        f"(events) against {median(r['requests_per_gen'] for r in pg):.2f} for the "
                        f"http provider's trigger polling every {s['poll_interval']:g} s (about one "
                        "per poll interval of render time, per generation)."
                    )
    work = results.get("worker")
    if work and work["runs"]:
        slot = median(r["oxen"]["slot_s"] for r in work["runs"])
        null = median(r["null"]["slot_s"] for r in work["runs"])
        lines.append(
            f"* Worker slots: {slot:.1f} slot-seconds per image (both phases, task start-up "
            f"included; Airflow's own deferring task: {null:.1f} s), so one slot handles about "
            f"{3600 / max(slot, 1e-9):,.0f} images an hour whatever the render time: the render "
            "itself is waited for in the triggerer."
        )
    store = results.get("storage")
    if store and store["runs"]:
        rows = [r for r in store["runs"] if r["mode"] == "transfer"]
        if rows:
            largest = max(r["bytes"] for r in rows)
            group = [r for r in rows if r["bytes"] == largest]
            rate = median(r["bytes"] / 2**20 / r["seconds"] for r in group)
            peak = median(r["rss_peak_mb"] for r in group)
            lines.append(
                f"* Storage: one transfer task moves about {rate:.0f} MiB/s on this machine for "
                f"{largest / 2**20:,.0f} MiB files, at a peak of {peak:.0f} MB RSS for that file: size "
                "worker memory for the largest image you expect, not for the batch (files are "
                "stored one at a time)."
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run every benchmark; print (and optionally document) the tables."
    )
    parser.add_argument("--sides", default=",".join(SIDES), help=f"of {','.join(SIDES)}")
    parser.add_argument("--smoke", action="store_true", help="small sizes, one repetition (CI)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the generated blocks of {DOC}")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: render (and with --write-docs, document) a run kept with --json-out",
    )
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    repeat = 1 if args.smoke else args.repeat

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    log(f"# run_all: {stamp()}, {load_average()}")
    results: dict[str, Any] = {}
    if args.from_json:
        # The tables of an earlier run, rendered again (e.g. after a fix to how a figure is
        # summarised); the summary keeps the original run's command, date and duration.
        saved = json.loads(args.from_json.read_text())
        results = {side: saved[side] for side in SIDES if side in saved}
        sides = []
    if "triggerer" in sides:
        if args.smoke:
            opts = _namespace(
                wait_benchmark,
                sizes="50",
                render_seconds=2.0,
                poll_interval=1.0,
                repeat=repeat,
                strategies="events,poll,http",
            )
        else:
            opts = _namespace(wait_benchmark, repeat=repeat)
        wait_benchmark.finish_args(opts)
        results["triggerer"] = wait_benchmark.run_all(opts, log=log)
    if "worker" in sides:
        opts = _namespace(worker_benchmark, repeat=repeat, tasks=2 if args.smoke else 4)
        results["worker"] = worker_benchmark.run_all(opts, log=log)
    if "storage" in sides:
        opts = _namespace(storage_benchmark, repeat=repeat, sizes_mib="1" if args.smoke else "1,20,200")
        results["storage"] = storage_benchmark.run_all(opts, log=log)
    total = time.monotonic() - started

    blocks = {
        "triggerer": wait_benchmark.render(results["triggerer"]) if "triggerer" in results else None,
        "worker": worker_benchmark.render(results["worker"]) if "worker" in results else None,
        "storage": storage_benchmark.render(results["storage"]) if "storage" in results else None,
    }
    blocks["sizing"] = sizing(results)
    if args.from_json:
        blocks["summary"] = str(results.get("summary") or "")
    else:
        blocks["summary"] = (
            f"Run of {stamp()}: `{' '.join(['benchmarks/run_all.py', *sys.argv[1:]])}`, "
            f"{total / 60:.1f} minutes on this machine ({load_average()} at the end)."
        )
        results["summary"] = blocks["summary"]
    for name in ("summary", "triggerer", "worker", "storage", "sizing"):
        if blocks[name]:
            print(f"\n## {name}\n\n{blocks[name]}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    if args.write_docs:
        for name, body in blocks.items():
            if body:
                replace_generated(DOC, name, body)
        log(f"# run_all: {DOC} rewritten")
    incomplete = [r for r in results.get("triggerer", {}).get("runs", []) if r["succeeded"] != r["n"]]
    incomplete += [
        r
        for r in results.get("worker", {}).get("runs", [])
        if r["null_state"] != "success" or r["oxen_state"] != "success"
    ]
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
