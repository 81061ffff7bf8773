"""Triggerer side: how cheaply can one triggerer-like process wait for N generations at once?

For each N, repetition and strategy, a fresh child process enqueues N generations against
the emulator, then runs N triggers (one per generation, each rebuilt from its
``serialize()`` kwargs, as the triggerer does) concurrently on one asyncio loop. Each
trigger starts after a seeded random delay in ``[0, poll_interval)``, and the emulator
renders each generation for a seeded uniform draw in ``[render_seconds,
render_seconds_max]``, so no result depends on pollers and completions being in phase.

Strategies:

* ``events`` — this provider, ``OxenGenerationTrigger(wait_strategy="events")``.
* ``poll`` — this provider, ``OxenGenerationTrigger(wait_strategy="poll")``.
* ``http`` — the real peer: the http provider's ``HttpEventTrigger`` polling
  ``GET /api/ai/queue/{id}`` with a response check (:mod:`benchmarks.http_peer`).
* ``own`` — OWN INVENTION (:mod:`benchmarks.baseline_trigger`), never used for ratios.

Measured per run: waiting requests per generation (the emulator's exact per-route
counters, minus the enqueue and the one model read), the child's peak RSS, its RSS when the
first trigger starts, its CPU seconds while waiting, the largest event-loop lag, and the
completion → TriggerEvent latency of *every* generation (the emulator's ``completed_at``,
read by paging ``/api/ai/generations``, against the moment the trigger yielded), and the
collector's full (generation 2) passes while waiting: how many, and the longest pause (timed
by ``gc.callbacks``; each stops the loop). Each figure
is the median of ``--repeat`` runs, with the range. Usage::

    python benchmarks/wait_benchmark.py                        # the full table (see docs/performance.md)
    python benchmarks/wait_benchmark.py --sizes 50 --repeat 1 --render-seconds 2 --poll-interval 1
    # 50,000 waits, completions in enqueue order (issue 22; docs/performance.md):
    python benchmarks/wait_benchmark.py --sizes 20000,50000 --strategies events --repeat 1 \
        --render-seconds 15 --render-seconds-max 15 --child-timeout 900
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    NAN,
    REPO,
    current_rss_mb,
    fmt_1,
    fmt_2,
    fmt_int,
    is_number,
    load_average,
    median,
    percentile,
    process_cpu_seconds,
    ratio,
    rusage_self,
    spread,
    table,
)

API_KEY = "benchmark-key"
STRATEGIES = ("events", "poll", "http", "own")
DEFAULT_STRATEGIES = "events,poll,http"
PEER = "http"
LABELS = {
    "events": "events (this provider)",
    "poll": "poll (this provider)",
    "http": "HttpEventTrigger (http provider)",
    "own": "own-invention per-trigger client (not a baseline)",
}
# Goals for the events strategy (docs/performance.md): peak RSS MB and p99 ms by the largest N
# they apply to (issue 22: one core cannot keep up with 50,000 completions in 17 s, so latency
# gives there, within bounds), CPU per 1,000 waits growth, and per-id status reads per wait.
GOALS_BY_N = ((20_000, 400.0, 100.0), (50_000, 800.0, 1000.0))
GOAL_CPU_FLATNESS, GOAL_READS_PER_WAIT = 1.3, 0.01
LAG_TICK = 0.1
HISTORY_PAGE = 5000
# Which model the waits are for does not matter to waiting; this one has no request schema,
# so the emulator enqueues it fastest (it validates every other model's parameters per row).
ENQUEUE_MODEL = "flux-2-dev"
# Enqueue requests in flight at once (and the client's connections).
SENDERS = 8
# Seconds per generation from the enqueue until its trigger is built and registered, until a run
# measures it (a generation that finishes before its trigger started measures nothing of waiting).
ENQUEUE_RATE_GUESS = 0.001
# Seconds allowed for building the triggers after the enqueue, and a margin on top.
START_MARGIN = 3.0


# ---------------------------------------------------------------------------------------------
# Child: one (strategy, N) run in a fresh process, so peak RSS and CPU are its own.


async def _enqueue(n: int, emulator_url: str, rate: float = 0.0) -> list[str]:
    """N generations, 4 per request (the API's most), through a plain aiohttp session: the
    emulator is the bottleneck here, and this keeps the client's share of two cores small.

    With ``rate`` (generations a second), request k is sent at k * 4 / rate seconds: every
    render taking the same time, the completions then arrive at that rate."""
    import aiohttp

    body = json.dumps({"model": ENQUEUE_MODEL, "prompt": "benchmark", "num_generations": 4})
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=SENDERS)
    async with aiohttp.ClientSession(emulator_url, headers=headers, connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()

        chunks = [4] * (n // 4) + ([n % 4] if n % 4 else [])
        batches: list[list[str]] = [[] for _ in chunks]
        requests = iter(enumerate(chunks))

        # As many senders as connections, taking the requests in order: one task per request
        # (12,500 at 50,000) made this process collect for ~140 ms as the enqueue began, and the
        # requests held up meanwhile all completed in the same instant.
        async def sender() -> None:
            for k, count in requests:
                if rate:
                    await asyncio.sleep(max(0.0, start + k * 4 / rate - loop.time()))
                payload = body.replace('"num_generations": 4', f'"num_generations": {count}')
                async with session.post("/api/ai/queue", data=payload) as response:
                    response.raise_for_status()
                    batches[k] = [row["generation_id"] for row in (await response.json())["generations"]]

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        return [i for batch in batches for i in batch]


def _build(strategy: str, generation_id: str, poll_interval: float, deadline: float) -> Any:
    if strategy == PEER:
        from benchmarks.http_peer import build_trigger

        return build_trigger(generation_id, poll_interval)
    if strategy == "own":
        from benchmarks.baseline_trigger import BaselinePollingTrigger

        return BaselinePollingTrigger(generation_id, poll_interval=poll_interval)
    from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger

    return OxenGenerationTrigger(
        [generation_id],
        poll_interval=poll_interval,
        deadline=deadline,
        wait_strategy=strategy,
    )


def _rows(strategy: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    if strategy == PEER:
        from benchmarks.http_peer import event_rows

        return event_rows(payload)
    return list(payload.get("generations") or [])


async def _child(
    strategy: str,
    n: int,
    poll_interval: float,
    seed: int,
    timeout: float,
    emulator_url: str,
    enqueue_rate: float = 0.0,
) -> dict[str, Any]:
    # Import what the triggers need first: the renders start at the enqueue, the waits should too.
    _build(strategy, "warm-up", poll_interval, time.time())
    enqueue_started = time.time()
    ids = await _enqueue(n, emulator_url, enqueue_rate)
    enqueue_seconds = time.time() - enqueue_started
    gc.collect()
    full_passes: list[tuple[float, float]] = []  # (wall-clock start, seconds)
    full_started = [0.0, 0.0]

    def time_full_passes(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            full_started[:] = [time.perf_counter(), time.time()]
        else:
            full_passes.append((full_started[1], time.perf_counter() - full_started[0]))

    gc.callbacks.append(time_full_passes)
    cpu_before, _ = rusage_self()
    rss_before = current_rss_mb()

    deadline = time.time() + timeout
    triggers = []
    for generation_id in ids:
        trigger = _build(strategy, generation_id, poll_interval, deadline)
        classpath, kwargs = trigger.serialize()  # the triggerer rebuilds each trigger from these
        module, name = classpath.rsplit(".", 1)
        triggers.append((generation_id, getattr(sys.modules[module], name)(**kwargs)))
    rng = random.Random(seed)
    delays = [rng.uniform(0.0, poll_interval) for _ in triggers]

    started: dict[str, float] = {}
    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}
    lags: list[float] = []
    loop = asyncio.get_running_loop()

    async def run(generation_id: str, trigger: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        started[generation_id] = time.time()
        events = trigger.run()
        try:
            event = await events.__anext__()
        finally:
            await events.aclose()
        fired_at = time.time()
        for row in _rows(strategy, event.payload):
            statuses[row["generation_id"]] = row["status"]
        fired[generation_id] = fired_at

    async def watch_lag() -> None:
        while True:
            tick = loop.time()
            await asyncio.sleep(LAG_TICK)
            lags.append(max(0.0, loop.time() - tick - LAG_TICK))

    # Only the running coroutines hold the triggers, as in the triggerer: a trigger that fired
    # is garbage (keeping 20,000 of them, with their rows, would only feed the GC).
    runs = [run(g, t, d) for (g, t), d in zip(triggers, delays, strict=True)]
    del triggers
    watcher = asyncio.create_task(watch_lag())
    wall_started = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), timeout=timeout)
    del runs
    wall = time.monotonic() - wall_started
    watcher.cancel()
    gc.callbacks.remove(time_full_passes)
    cpu_after, rss_peak = rusage_self()
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {
        "ids": ids,
        "started": started,
        "fired": fired,
        "statuses": statuses,
        "errors": errors[:5],
        "error_count": len(errors),
        "enqueue_seconds": enqueue_seconds,
        # From the enqueue until the last trigger started, less the spread of the starts.
        "ready_seconds": max(started.values(), default=enqueue_started) - enqueue_started - poll_interval,
        "wall_seconds": wall,
        "cpu_seconds": cpu_after - cpu_before,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "lag_max_ms": max(lags, default=0.0) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000 if lags else 0.0,
        "full_gc_passes": len(full_passes),
        "full_gc_max_ms": max((d for _, d in full_passes), default=0.0) * 1000,
        "full_gc": full_passes,
    }


# ---------------------------------------------------------------------------------------------
# Parent: emulator, child runs, counting, the table.


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def completion_times(emulator_url: str) -> dict[str, float]:
    """``completed_at`` of every generation, paging the history (the default page is 100 rows)."""
    times: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=emulator_url, headers=headers, timeout=120) as client:
        offset = 0
        while True:
            body = client.get("/api/ai/generations", params={"limit": HISTORY_PAGE, "offset": offset}).json()
            rows = body.get("generations") or []
            for row in rows:
                if row.get("completed_at"):
                    times[row["generation_id"]] = _epoch(row["completed_at"])
            offset += len(rows)
            if not rows or offset >= int(body.get("count", 0)):
                return times


def child_env(emulator_url: str, home: str) -> dict[str, str]:
    from benchmarks.http_peer import HTTP_CONN_ID, http_connection_json

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
    env[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = http_connection_json(emulator_url, API_KEY)
    env["OXEN_BENCH_EMULATOR_URL"] = emulator_url
    return env


def hold_seconds(n: int, args: argparse.Namespace, rate: float) -> float:
    """The emulator's ``queue_seconds`` for a run: long enough that no generation finishes
    before every trigger started (enqueueing N and starting N triggers take a while), so all
    N waits overlap."""
    paced = n / args.enqueue_rate if args.enqueue_rate else 0.0
    return max(0.2, max(n * rate, paced * 1.3) + args.poll_interval + START_MARGIN - args.render_seconds)


def _cpu_of(pid: int | None) -> float:
    return NAN if pid is None else process_cpu_seconds(pid)


def run_once(
    emulator_url: str,
    strategy: str,
    n: int,
    rep: int,
    args: argparse.Namespace,
    home: str,
    rate: float,
    emulator_pid: int | None = None,
) -> dict[str, Any]:
    seed = args.seed + rep
    queue_seconds = hold_seconds(n, args, rate)
    with httpx.Client(base_url=emulator_url, timeout=60) as control:
        control.post("/_emulator/reset").raise_for_status()
        control.post(
            "/_emulator/config",
            json={
                "render_seconds": args.render_seconds,
                "render_seconds_max": args.render_seconds_max,
                "render_seed": seed,
                "queue_seconds": queue_seconds,
            },
        ).raise_for_status()
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            strategy,
            "--n",
            str(n),
            "--poll-interval",
            str(args.poll_interval),
            "--seed",
            str(seed),
            "--child-timeout",
            str(args.child_timeout),
            "--enqueue-rate",
            str(args.enqueue_rate),
        ]
        server_cpu_before = _cpu_of(emulator_pid)
        out = subprocess.run(
            command,
            env=child_env(emulator_url, home),
            capture_output=True,
            text=True,
            timeout=args.child_timeout + 120,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"child {strategy} N={n} failed:\n{out.stderr[-3000:]}")
        child = json.loads(out.stdout.strip().splitlines()[-1])
        server_cpu = _cpu_of(emulator_pid) - server_cpu_before
        stats = control.get("/_emulator/stats").json()
    completed = completion_times(emulator_url)
    latencies = [
        (child["fired"][i] - completed[i]) * 1000
        for i in child["ids"]
        if i in completed and i in child["fired"]
    ]
    early = sum(1 for i in child["ids"] if i in completed and completed[i] < child["started"].get(i, 0.0))
    api_requests = sum(v for k, v in stats.items() if " /api/" in k)
    enqueue_requests = stats.get("POST /api/ai/queue", 0)
    model_reads = stats.get("GET /api/ai/models/{id}", 0)
    wait_requests = api_requests - enqueue_requests - model_reads
    reads = stats.get("GET /api/ai/queue/{id}", 0)
    ok = sum(1 for s in child["statuses"].values() if s == "succeeded")
    return {
        "side": "triggerer",
        "strategy": strategy,
        "n": n,
        "rep": rep,
        "succeeded": ok,
        "errors": child["errors"],
        "error_count": child["error_count"],
        "sampled": len(latencies),
        "early": early,
        "requests_per_gen": wait_requests / n,
        "reads_per_gen": reads / n,
        "enqueue_requests_per_gen": enqueue_requests / n,
        "rss_peak_mb": child["rss_peak_mb"],
        "rss_before_mb": child["rss_before_mb"],
        "rss_per_1k_mb": (child["rss_peak_mb"] - child["rss_before_mb"]) / n * 1000,
        "cpu_seconds": child["cpu_seconds"],
        "cpu_per_1k": child["cpu_seconds"] / n * 1000,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=NAN),
        "lag_max_ms": child["lag_max_ms"],
        "full_gc_passes": child["full_gc_passes"],
        "full_gc_max_ms": child["full_gc_max_ms"],
        **_passes_among_completions(child["full_gc"], [completed[i] for i in child["ids"] if i in completed]),
        "wall_seconds": child["wall_seconds"],
        "enqueue_seconds": child["enqueue_seconds"],
        "ready_seconds": child["ready_seconds"],
        "queue_seconds": queue_seconds,
        "server_cpu_seconds": server_cpu,
    }


def plan(args: argparse.Namespace) -> list[tuple[int, str]]:
    """(N, strategy) pairs to run; the peers only up to their largest N."""
    sizes = [int(s) for s in str(args.sizes).split(",") if s]
    pairs = []
    for n in sizes:
        for strategy in str(args.strategies).split(","):
            limit = {"http": args.peer_max_n, "own": args.own_max_n, "poll": args.poll_max_n}.get(strategy)
            if limit is not None and n > limit:
                continue
            pairs.append((n, strategy))
    return pairs


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Every run, repetitions interleaved (rep 1 of each pair, then rep 2, ...), so load drift
    on a shared machine hits every strategy alike."""
    from airflow_provider_oxen.emulator import start_emulator_process

    started = time.monotonic()
    load_before = load_average()
    runs: list[dict[str, Any]] = []
    emulator_args = ["--api-key", API_KEY, "--render-seconds", str(args.render_seconds), "--quiet"]
    with (
        tempfile.TemporaryDirectory(prefix="oxen-bench-") as home,
        start_emulator_process(emulator_args) as emu,
    ):
        rate = ENQUEUE_RATE_GUESS
        for rep in range(args.repeat):
            for n, strategy in plan(args):
                run = run_once(emu.url, strategy, n, rep, args, home, rate, emu.popen.pid)
                if n >= 1000:  # the last large run says how long the next one takes to start
                    rate = max(ENQUEUE_RATE_GUESS / 6, run["ready_seconds"] / n * 1.3)
                log(
                    f"# triggerer rep {rep + 1}/{args.repeat} N={n} {strategy}: {run['succeeded']}/{n} ok, "
                    f"{run['requests_per_gen']:.2f} req/gen ({run['reads_per_gen']:.4f} per-id reads), "
                    f"{run['rss_peak_mb']:.0f} MB peak, "
                    f"{run['cpu_seconds']:.1f} CPU s (server {run['server_cpu_seconds']:.1f}), "
                    f"p50 {run['p50_ms']:.0f} ms p99 {run['p99_ms']:.0f} ms "
                    f"over {run['sampled']} ({run['early']} done before their trigger started), lag max "
                    f"{run['lag_max_ms']:.0f} ms, full GC {run['full_gc_passes']} "
                    f"(longest {run['full_gc_max_ms']:.0f} ms; among completions "
                    f"{run['full_gc_among_completions']}, "
                    f"longest {run['full_gc_among_completions_max_ms']:.0f} ms), "
                    f"enqueue {run['enqueue_seconds']:.1f} s, "
                    f"wall {run['wall_seconds']:.1f} s "
                    f"({load_average()})"
                )
                if run["error_count"]:
                    log(f"#   {run['error_count']} trigger error(s), e.g. {run['errors'][:2]}")
                runs.append(run)
    return {
        "settings": {
            "render_seconds": args.render_seconds,
            "render_seconds_max": args.render_seconds_max,
            "poll_interval": args.poll_interval,
            "enqueue_rate": args.enqueue_rate,
            "repeat": args.repeat,
            "seed": args.seed,
            "peer_max_n": args.peer_max_n,
        },
        "runs": runs,
        "load_before": load_before,
        "load_after": load_average(),
        "seconds": time.monotonic() - started,
    }


def _passes_among_completions(passes: list[list[float]], completed: list[float]) -> dict[str, Any]:
    """The full passes that began or lasted into the span of completions (the ones that can delay an
    event: a pass while the triggers only register delays nothing measured here)."""
    if not completed:
        return {"full_gc_among_completions": 0, "full_gc_among_completions_max_ms": 0.0}
    first, last = min(completed), max(completed)
    among = [seconds for start, seconds in passes if start <= last and start + seconds >= first]
    return {
        "full_gc_among_completions": len(among),
        "full_gc_among_completions_max_ms": max(among, default=0.0) * 1000,
    }


def _full_gc(group: list[dict[str, Any]]) -> str:
    """Full collections while waiting, and the longest pause; then those among the completions
    (runs kept before 0.4.0 lack these figures)."""
    if any("full_gc_among_completions" not in r for r in group):
        return "n/a"
    passes = spread([r["full_gc_passes"] for r in group], fmt_int)
    among = spread([r["full_gc_among_completions"] for r in group], fmt_int)
    return (
        f"{passes} ({spread([r['full_gc_max_ms'] for r in group], fmt_int)}); "
        f"{among} ({spread([r['full_gc_among_completions_max_ms'] for r in group], fmt_int)})"
    )


def _group(runs: list[dict[str, Any]], n: int, strategy: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["n"] == n and r["strategy"] == strategy]


def render(result: dict[str, Any]) -> str:
    """The triggerer table (markdown): medians over repetitions with their range, ratios to the peer."""
    s, runs = result["settings"], result["runs"]
    sizes = sorted({r["n"] for r in runs})
    order = [st for st in STRATEGIES if any(r["strategy"] == st for r in runs)]
    lines = [
        f"Render time uniform {s['render_seconds']:g}-{s['render_seconds_max']:g} s (seeded), poll interval "
        f"{s['poll_interval']:g} s, "
        + (f"enqueued {s['enqueue_rate']:g} a second, " if s.get("enqueue_rate") else "")
        + "trigger starts spread over one interval; one trigger per generation, "
        f"one process; median of {s['repeat']} run(s), (min-max) when they differ. Latency over every "
        f"generation. {result['load_before']} before, {result['load_after']} after "
        f"({result['seconds']:.0f} s).",
        "",
    ]
    header = [
        "N",
        "strategy",
        "ok",
        "wait req/gen",
        "per-id reads /gen",
        "peak RSS MB",
        "MB /1k waits",
        "CPU s",
        "CPU s /1k waits",
        "p50 ms",
        "p99 ms",
        "max ms",
        "loop lag max ms",
        "full GC passes (longest ms); of them among completions (longest ms)",
    ]
    rows = []
    for n in sizes:
        for strategy in order:
            group = _group(runs, n, strategy)
            if not group:
                continue
            ok = spread([r["succeeded"] for r in group], fmt_int, show_range=True)
            rows.append(
                [
                    f"{n:,}",
                    LABELS[strategy],
                    f"{ok}/{n:,}",
                    spread([r["requests_per_gen"] for r in group], fmt_2),
                    spread([r.get("reads_per_gen", NAN) for r in group], lambda v: f"{v:.4f}"),
                    spread([r["rss_peak_mb"] for r in group], fmt_int),
                    spread([r["rss_per_1k_mb"] for r in group], fmt_1),
                    spread([r["cpu_seconds"] for r in group], fmt_1),
                    spread([r["cpu_per_1k"] for r in group], fmt_2),
                    spread([r["p50_ms"] for r in group], fmt_int),
                    spread([r["p99_ms"] for r in group], fmt_int),
                    spread([r["max_ms"] for r in group], fmt_int),
                    spread([r["lag_max_ms"] for r in group], fmt_int),
                    _full_gc(group),
                ]
            )
    lines += table(header, "rlrrrrrrrrrrrr", rows)

    # Ratios against the real peer, at each N where it ran (medians over medians).
    ratio_rows = []
    for n in sizes:
        peer = _group(runs, n, PEER)
        if not peer:
            continue
        for strategy in ("events", "poll"):
            ours = _group(runs, n, strategy)
            if not ours:
                continue

            def m(group: list[dict[str, Any]], key: str) -> float:
                return median(r[key] for r in group)

            ratio_rows.append(
                [
                    f"{n:,}",
                    LABELS[strategy],
                    ratio(m(ours, "rss_peak_mb"), m(peer, "rss_peak_mb")),
                    ratio(m(ours, "cpu_seconds"), m(peer, "cpu_seconds")),
                    ratio(m(ours, "requests_per_gen"), m(peer, "requests_per_gen")),
                    ratio(m(ours, "p50_ms"), m(peer, "p50_ms")),
                    ratio(m(ours, "p99_ms"), m(peer, "p99_ms")),
                ]
            )
    if ratio_rows:
        lines += [
            "",
            f"Against the real peer ({LABELS[PEER]}) at the same N, same run (ours ÷ peer, medians):",
            "",
        ]
        lines += table(
            ["N", "strategy", "peak RSS", "CPU", "wait requests", "p50 latency", "p99 latency"],
            "rlrrrrr",
            ratio_rows,
        )
    peer_sizes = sorted({r["n"] for r in runs if r["strategy"] == PEER})
    if peer_sizes and peer_sizes[-1] < sizes[-1]:
        lines += [
            "",
            f"The peer ran up to N = {peer_sizes[-1]:,} (`--peer-max-n`); larger N for the events "
            "strategy only.",
        ]
    lines += ["", *goals(result)]
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> list[str]:
    """The goals for this provider's events strategy, checked at every N (medians)."""
    out = []
    strategy = "events"
    runs = [r for r in result["runs"] if r["strategy"] == strategy]
    sizes = sorted({r["n"] for r in runs})
    cpu_per_1k = {}
    for n in sizes:
        group = _group(runs, n, strategy)
        rss, p99 = median(r["rss_peak_mb"] for r in group), median(r["p99_ms"] for r in group)
        reads = median(r.get("reads_per_gen", NAN) for r in group)
        cpu_per_1k[n] = median(r["cpu_per_1k"] for r in group)
        ok = all(r["succeeded"] == n for r in group)
        goal_rss, goal_p99 = next(((m, p) for limit, m, p in GOALS_BY_N if n <= limit), GOALS_BY_N[-1][1:])
        out.append(
            f"Goals, {LABELS[strategy]} at N = {n:,}: peak RSS {rss:.0f} MB <= {goal_rss:.0f}: "
            f"{'met' if rss <= goal_rss else 'MISSED'}; p99 {p99:,.0f} ms <= {goal_p99:.0f}: "
            f"{'met' if p99 <= goal_p99 else 'MISSED'}; "
            + (  # runs kept before issue 22 did not count them
                f"per-id reads {reads:.2%} of waits <= {GOAL_READS_PER_WAIT:.0%}: "
                f"{'met' if reads <= GOAL_READS_PER_WAIT else 'MISSED'}; "
                if is_number(reads)
                else ""
            )
            + f"every wait succeeded: {'yes' if ok else 'NO'}."
        )
    values = [cpu_per_1k[n] for n in sizes if is_number(cpu_per_1k[n]) and cpu_per_1k[n] > 0]
    if len(values) > 1:
        # Growth as N grows: the largest ratio of a larger N's figure to a smaller N's. A
        # figure that falls (fixed per-process costs spread over more waits) is not growth.
        growth = max(values[j] / values[i] for i in range(len(values)) for j in range(i + 1, len(values)))
        listed = ", ".join(f"{cpu_per_1k[n]:.2f} at {n:,}" for n in sizes)
        verdict = "does not grow, met" if growth <= GOAL_CPU_FLATNESS else "GROWS, MISSED"
        out.append(
            f"CPU s per 1,000 waits, {LABELS[strategy]} ({listed}): largest growth from a smaller "
            f"to a larger N {growth:.2f}x <= {GOAL_CPU_FLATNESS}x: {verdict}."
        )
    return [f"* {line}" for line in out]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1000,5000,20000", help="comma-separated N")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES, help=f"of {','.join(STRATEGIES)}")
    parser.add_argument("--render-seconds", type=float, default=8.0, help="shortest render")
    parser.add_argument(
        "--render-seconds-max", type=float, default=None, help="longest render (default 2 x --render-seconds)"
    )
    parser.add_argument("--poll-interval", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--peer-max-n", type=int, default=5000, help="largest N the http peer runs at")
    parser.add_argument("--poll-max-n", type=int, default=1000, help="largest N the poll strategy runs at")
    parser.add_argument("--own-max-n", type=int, default=1000, help="largest N the own-invention runs at")
    parser.add_argument("--child-timeout", type=float, default=300.0)
    parser.add_argument(
        "--enqueue-rate",
        type=float,
        default=0.0,
        help="generations enqueued a second (0: as fast as the emulator takes them); with equal "
        "render times this is the rate the completions arrive at",
    )


def finish_args(args: argparse.Namespace) -> None:
    if args.render_seconds_max is None:
        args.render_seconds_max = 2 * args.render_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description="Triggerer-side benchmark (prints a markdown table).")
    add_arguments(parser)
    parser.add_argument("--child", choices=STRATEGIES)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--json-out", type=Path, help="also write every run as JSON")
    args = parser.parse_args()
    finish_args(args)

    if args.child:
        url = os.environ["OXEN_BENCH_EMULATOR_URL"]
        child = _child(
            args.child, args.n, args.poll_interval, args.seed, args.child_timeout, url, args.enqueue_rate
        )
        profile_to = os.environ.get("OXEN_BENCH_PROFILE")  # a developer's aid: cProfile the child
        if profile_to:
            import cProfile

            with cProfile.Profile() as profiler:
                result = asyncio.run(child)
            profiler.dump_stats(profile_to)
        else:
            result = asyncio.run(child)
        print(json.dumps(result))
        return 0

    result = run_all(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    print(render(result))
    failed = [r for r in result["runs"] if r["succeeded"] != r["n"] and r["strategy"] != "own"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
