"""How cheaply can one triggerer process wait for N generations? Prints one table.

For each N and strategy, a fresh child process runs N ``OxenGenerationTrigger`` s (one per
generation, as N mapped tasks would) concurrently on one asyncio loop — the way the
triggerer runs them, each rebuilt from its serialised kwargs — against the emulator with a
fixed render time. Strategies: this provider's ``events`` and ``poll``, and a baseline
written the way official providers write polling triggers (own client, fixed interval).

Measured per run: HTTP requests per generation (from the emulator's exact counters:
enqueue + waiting; downloads measured on a sample), the child's peak RSS and CPU seconds,
and completion → TriggerEvent latency (emulator's completed_at → the moment the trigger
yielded). Plus the provider's import time. Usage::

    python benchmarks/wait_benchmark.py                      # N = 100, 1000, 5000 (a few minutes)
    python benchmarks/wait_benchmark.py --sizes 50 --render-seconds 2   # smoke (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
API_KEY = "benchmark-key"
STRATEGIES = ("events", "poll", "baseline")
TARGET_REQUESTS, TARGET_RSS_MB, TARGET_P50_MS = 3.0, 300.0, 100.0


# ---------------------------------------------------------------------------------------------
# Child: one (strategy, N) run in a fresh process, so peak RSS and CPU are its own.


def _rusage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


async def _child(strategy: str, n: int, poll_interval: float, download: int) -> dict[str, Any]:
    from airflow_provider_oxen.hooks.oxen import OxenAsyncHook
    from airflow_provider_oxen.models import build_image_request
    from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
    from benchmarks.baseline_trigger import BaselinePollingTrigger

    request = build_image_request("ideogram-v4", "benchmark", image_size="square")
    async with OxenAsyncHook() as hook:
        await hook.validate_request(request)
        limit = asyncio.Semaphore(8)

        async def enqueue(count: int) -> list[str]:
            async with limit:
                return [g.generation_id for g in await hook.enqueue(request, count, validate=False)]

        chunks = [4] * (n // 4) + ([n % 4] if n % 4 else [])
        ids = [i for batch in await asyncio.gather(*(enqueue(c) for c in chunks)) for i in batch]
    cpu_before, rss_before = _rusage()

    deadline = time.time() + 600
    triggers: list[Any] = []
    for generation_id in ids:
        if strategy == "baseline":
            trigger: Any = BaselinePollingTrigger(generation_id, poll_interval=poll_interval)
        else:
            trigger = OxenGenerationTrigger(
                [generation_id], poll_interval=poll_interval, deadline=deadline, wait_strategy=strategy
            )
        _, kwargs = trigger.serialize()
        triggers.append(type(trigger)(**kwargs))

    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}

    async def run(trigger: Any) -> None:
        async for event in trigger.run():
            fired_at = time.time()
            for row in event.payload["generations"]:
                fired[row["generation_id"]] = fired_at
                statuses[row["generation_id"]] = row["status"]
            return

    started = time.monotonic()
    await asyncio.gather(*(run(t) for t in triggers))
    wall = time.monotonic() - started
    cpu_after, rss_peak = _rusage()

    downloaded = 0
    if download:
        async with OxenAsyncHook() as hook:
            for generation_id in ids[:download]:
                row = await hook.get_generation(generation_id)
                async with hook.open_download(row.result_url or "") as response:
                    async for _ in response.aiter_bytes():
                        pass
                downloaded += 1
    return {
        "ids": ids,
        "fired": fired,
        "statuses": statuses,
        "wall_seconds": wall,
        "cpu_seconds": cpu_after - cpu_before,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "downloaded": downloaded,
    }


# ---------------------------------------------------------------------------------------------
# Parent: emulator, child runs, counting, the table.


def _iso_to_epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _import_time() -> tuple[float, float]:
    """(cold: python start + airflow + provider, warm: provider modules after airflow.sdk)."""
    cold_code = (
        "import time; t = time.perf_counter(); import airflow_provider_oxen.operators.generate, "
        "airflow_provider_oxen.triggers.generation; print(time.perf_counter() - t)"
    )
    warm_code = (
        "import airflow.sdk, airflow.triggers.base, httpx, pydantic, jsonschema, time; "
        "t = time.perf_counter(); "
        "import airflow_provider_oxen.operators.generate, airflow_provider_oxen.triggers.generation, "
        "airflow_provider_oxen.sensors.generation; print(time.perf_counter() - t)"
    )
    results = []
    for code in (cold_code, warm_code):
        runs = [
            float(subprocess.check_output([sys.executable, "-c", code], text=True).split()[-1])
            for _ in range(3)
        ]
        results.append(statistics.median(runs))
    return results[0], results[1]


def _run(emulator_url: str, strategy: str, n: int, args: argparse.Namespace, home: str) -> dict[str, Any]:
    control = httpx.Client(base_url=emulator_url, timeout=60)
    control.post("/_emulator/reset").raise_for_status()
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
        AIRFLOW_CONN_OXEN_DEFAULT=json.dumps(
            {"conn_type": "oxen", "host": emulator_url, "password": API_KEY, "extra": {"max_retries": 5}}
        ),
    )
    command = [
        sys.executable,
        __file__,
        "--child",
        strategy,
        "--n",
        str(n),
        "--poll-interval",
        str(args.poll_interval),
        "--download",
        str(min(n, args.download_sample)),
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"child {strategy} N={n} failed:\n{out.stderr[-3000:]}")
    child = json.loads(out.stdout.strip().splitlines()[-1])
    stats = control.get("/_emulator/stats").json()
    history = httpx.get(
        f"{emulator_url}/api/ai/generations", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ).json()
    rows = history.get("generations") or history.get("data") or []
    completed = {r["generation_id"]: _iso_to_epoch(r["completed_at"]) for r in rows if r.get("completed_at")}
    latencies = [
        (child["fired"][i] - completed[i]) * 1000
        for i in child["ids"]
        if i in completed and i in child["fired"]
    ]
    downloads = stats.get("GET /files/{id}/{name}", 0)
    api_requests = sum(v for k, v in stats.items() if " /api/" in k)
    # Not per generation: the one model-detail read; the sample's status reads (for a fresh URL)
    # belong to the download, not the wait.
    wait_requests = api_requests - 1 - child["downloaded"]
    ok = sum(1 for s in child["statuses"].values() if s == "succeeded")
    return {
        "strategy": strategy,
        "n": n,
        "succeeded": ok,
        "requests_per_gen": wait_requests / n,
        "download_per_gen": (downloads / child["downloaded"]) if child["downloaded"] else float("nan"),
        "rss_peak_mb": child["rss_peak_mb"],
        "rss_before_mb": child["rss_before_mb"],
        "cpu_seconds": child["cpu_seconds"],
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "wall_seconds": child["wall_seconds"],
    }


def _table(results: list[dict[str, Any]], import_times: tuple[float, float], args: argparse.Namespace) -> str:
    lines = [
        f"render time {args.render_seconds:g} s, poll interval {args.poll_interval:g} s, "
        f"one trigger per generation, one process; provider import: {import_times[0]:.2f} s cold "
        f"(python + airflow + provider), {import_times[1] * 1000:.0f} ms for the provider's own modules",
        "",
        "| N | strategy | ok | req/gen (enqueue+wait) | +download | total req/gen | peak RSS MB "
        "| CPU s | p50 ms | p99 ms | req vs baseline | CPU vs baseline | targets |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in sorted({r["n"] for r in results}):
        group = {r["strategy"]: r for r in results if r["n"] == n}
        base = group.get("baseline")
        for strategy in STRATEGIES:
            r = group.get(strategy)
            if r is None:
                continue
            download = r["download_per_gen"] if r["download_per_gen"] == r["download_per_gen"] else 1.0
            total = r["requests_per_gen"] + download
            req_ratio = f"{total / (base['requests_per_gen'] + download):.2f}x" if base else "-"
            cpu_ratio = (
                f"{r['cpu_seconds'] / base['cpu_seconds']:.2f}x" if base and base["cpu_seconds"] else "-"
            )
            targets = "-"
            if strategy == "events":
                checks = [
                    ("req", total <= TARGET_REQUESTS),
                    ("rss", r["rss_peak_mb"] <= TARGET_RSS_MB),
                    ("p50", r["p50_ms"] <= TARGET_P50_MS),
                ]
                targets = " ".join(f"{name}:{'met' if ok else 'MISSED'}" for name, ok in checks)
            lines.append(
                f"| {n} | {strategy} | {r['succeeded']}/{n} | {r['requests_per_gen']:.2f} | {download:.2f} "
                f"| {total:.2f} | {r['rss_peak_mb']:.0f} | {r['cpu_seconds']:.1f} | {r['p50_ms']:.0f} "
                f"| {r['p99_ms']:.0f} | {req_ratio} | {cpu_ratio} | {targets} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Waiting-strategy benchmark (prints a markdown table).")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--render-seconds", type=float, default=15.0)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--download-sample", type=int, default=50)
    parser.add_argument("--child", choices=STRATEGIES)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--download", type=int, default=0)
    args = parser.parse_args()

    if args.child:
        sys.path.insert(0, str(REPO))
        result = asyncio.run(_child(args.child, args.n, args.poll_interval, args.download))
        print(json.dumps(result))
        return 0

    from airflow_provider_oxen.emulator import start_emulator_process

    started = time.monotonic()
    import_times = _import_time()
    results = []
    emulator_args = ["--api-key", API_KEY, "--render-seconds", str(args.render_seconds), "--quiet"]
    with (
        tempfile.TemporaryDirectory(prefix="oxen-bench-") as home,
        start_emulator_process(emulator_args) as emu,
    ):
        for n in [int(s) for s in args.sizes.split(",")]:
            for strategy in args.strategies.split(","):
                result = _run(emu.url, strategy, n, args, home)
                print(
                    f"# N={n} {strategy}: {result['succeeded']}/{n} ok, "
                    f"{result['requests_per_gen']:.2f} req/gen, "
                    f"{result['rss_peak_mb']:.0f} MB, {result['cpu_seconds']:.1f} CPU s, "
                    f"p50 {result['p50_ms']:.0f} ms, wall {result['wall_seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    print(_table(results, import_times, args))
    print(f"\n(total benchmark time {time.monotonic() - started:.0f} s)")
    failed = [r for r in results if r["succeeded"] != r["n"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
