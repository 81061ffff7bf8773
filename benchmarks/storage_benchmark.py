"""Storage side: ``OxenGenerationToS3Operator`` against a plain boto3 upload of the same bytes.

Serves noise PNGs (incompressible: the file size is the work) of about 1, 20 and 200 MiB
from a local HTTP server (a separate process) as generations' results, and a real S3 API
(moto in server mode, ``tests/fixtures.py``'s helper, in a separate process). Per
repetition, a fresh child process per mode warms up on a small file, then moves each file:

* ``boto3`` — the peer: ``client.upload_fileobj(open(path, "rb"), bucket, key)`` of the
  file already on local disk, boto3's default transfer settings;
* ``diy`` — what a user would write by hand to do the same job: ``httpx.stream`` the result
  URL into a temporary file, then ``client.upload_file`` it (no hashing, no checks, no
  idempotency, no manifest): shows how much of the gap to ``boto3`` is the download itself;
* ``transfer`` — the operator as a DAG would use it (download from the result URL with
  hashing, image checks (full decode), a thumbnail, upload with S3's SHA-256 checksum,
  contact sheet and manifest), ``checks`` allowing 512 MiB;
* ``transfer, checks off`` — the same with ``checks=False, contact_sheet=False``: the
  streaming path alone.

Measured: wall seconds of the call (throughput = file bytes / seconds) and the child's RSS,
sampled every 5 ms, before and at its peak during the call. Also the CPU seconds the call cost
the child, the S3 server and the file server, and how busy the whole machine was during it
(``/proc``): where the time goes, and whether the cores were already saturated. Usage::

    python benchmarks/storage_benchmark.py --sizes-mib 1,20,200 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    REPO,
    current_rss_mb,
    fmt_1,
    fmt_2,
    fmt_int,
    load_average,
    machine_cpu,
    median,
    process_cpu_seconds,
    ratio,
    spread,
    table,
)

MODES = ("boto3", "diy", "transfer", "transfer-nochecks")
# The operator's modes: judged against the goal (the other two are peers).
OPERATOR_MODES = MODES[2:]
LABELS = {
    "boto3": "boto3 `upload_fileobj` (peer)",
    "diy": "hand-written: httpx download to a temp file, then boto3 `upload_file`",
    "transfer": "OxenGenerationToS3Operator",
    "transfer-nochecks": "OxenGenerationToS3Operator, checks and contact sheet off",
}
OPTIONS: dict[str, dict[str, Any]] = {
    "transfer": {"checks": {"max_bytes": 512 * 2**20}},
    "transfer-nochecks": {"checks": False, "contact_sheet": False},
}
BUCKET = "oxen-bench"
WARMUP_EDGE = 64
GOAL_THROUGHPUT = 0.9

# ---------------------------------------------------------------------------------------------
# Child: one mode, every size, in a fresh process.


class CpuMeter:
    """CPU seconds used by this process and the given helper processes while the block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        busy, total = machine_cpu()
        now = {"self": process_cpu_seconds(), "machine_busy": busy, "machine_total": total}
        now.update({name: process_cpu_seconds(pid) for name, pid in self.pids.items()})
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: Any) -> None:
        end = self._now()
        self.used = {name: end[name] - self._start[name] for name in end}


class RssSampler:
    """The process's largest resident set while the block runs (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> RssSampler:
        self.peak = current_rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_mb())
            self._stop.wait(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mb())


def _result(name: str, url: str, edge: int) -> dict[str, Any]:
    return {
        "generation_id": f"bench-{name}-{uuid.uuid4().hex[:8]}",
        "status": "succeeded",
        "media_type": "image",
        "model": "black-forest-labs-flux-2-klein-4b",
        "prompt": "noise",
        # A signed URL, as the generate task hands it over (a bare one would be read afresh).
        "result_url": f"{url}?signature=benchmark",
        "output_format": "png",
        "width": edge,
        "height": edge,
    }


def child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    import gc

    endpoint, files_url = spec["s3_endpoint"], spec["files_url"]
    if mode in ("boto3", "diy"):
        import boto3
        import httpx

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def move(name: str, path: str, edge: int) -> None:
            key = f"{mode}/{uuid.uuid4().hex}/{name}.png"
            if mode == "boto3":
                with open(path, "rb") as handle:
                    client.upload_fileobj(handle, BUCKET, key)
                return
            with tempfile.NamedTemporaryFile(suffix=".png") as spool:
                with httpx.stream("GET", f"{files_url}/{Path(path).name}") as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        spool.write(chunk)
                spool.flush()
                client.upload_file(spool.name, BUCKET, key)

    else:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

        # One warmed-up hook, as a worker process reuses its boto3 client (see tests/transfers).
        hook = S3Hook(aws_conn_id="aws_default")
        OxenGenerationToS3Operator.s3_hook = lambda self: hook  # type: ignore[method-assign]
        options = OPTIONS[mode]

        def move(name: str, path: str, edge: int) -> None:
            run = uuid.uuid4().hex[:8]
            operator = OxenGenerationToS3Operator(
                task_id="store",
                results=[_result(name, f"{files_url}/{Path(path).name}", edge)],
                bucket=BUCKET,
                prefix=f"{mode}/{run}",
                **options,
            )
            [record] = operator.execute({"run_id": run})  # type: ignore[arg-type]
            assert record["action"] == "stored", record
            assert record["checks"] is None or record["checks"]["ok"], record

    move("warmup", spec["warmup"]["path"], spec["warmup"]["edge"])
    out = []
    for item in spec["files"]:
        gc.collect()
        started = time.perf_counter()
        with CpuMeter(spec.get("pids", {})) as cpu, RssSampler() as rss:
            before = rss.peak
            move(item["name"], item["path"], item["edge"])
        seconds = time.perf_counter() - started
        used = cpu.used
        out.append(
            {
                "name": item["name"],
                "bytes": item["bytes"],
                "seconds": seconds,
                "rss_before_mb": before,
                "rss_peak_mb": rss.peak,
                "cpu_self_s": used["self"],
                "cpu_s3_server_s": used.get("s3_server", 0.0),
                "cpu_file_server_s": used.get("file_server", 0.0),
                # Share of all cores busy during the call (1.0 = every core, whoever used it).
                "machine_busy": used["machine_busy"] / used["machine_total"]
                if used["machine_total"]
                else 0.0,
            }
        )
    return {"mode": mode, "files": out}


# ---------------------------------------------------------------------------------------------
# Parent: files, servers, children, the table.


def noise_png(path: Path, mib: float) -> tuple[int, int]:
    """A PNG of random RGB pixels about ``mib`` MiB large (stored, not compressed); (bytes, edge)."""
    from PIL import Image

    edge = max(8, int((mib * 2**20 / 3) ** 0.5))
    Image.frombytes("RGB", (edge, edge), os.urandom(edge * edge * 3)).save(path, "PNG", compress_level=0)
    return path.stat().st_size, edge


@contextlib.contextmanager
def _server(code: str, args: list[str], env: dict[str, str] | None = None) -> Any:
    """A helper process that prints its URL on its first line, stopped on exit: (url, pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"helper server did not start: {url!r}")
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


FILE_SERVER = r"""
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=sys.argv[1]))
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
"""

MOTO_SERVER = r"""
import signal, sys, threading
sys.path.insert(0, sys.argv[1])
from tests.fixtures import moto_s3_server
with moto_s3_server() as endpoint:
    print(endpoint, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait()
"""


def _env(s3_endpoint: str, files_url: str, home: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
        # Only used to refresh an expired URL (not here). The file server is a plain-http
        # loopback host: allowed explicitly, as the download policy requires.
        AIRFLOW_CONN_OXEN_DEFAULT=json.dumps(
            {
                "conn_type": "oxen",
                "host": "http://127.0.0.1:9",
                "password": "benchmark-key",
                "extra": {
                    "download_allowed_hosts": ["127.0.0.1"],
                    "download_allow_http_hosts": ["127.0.0.1"],
                },
            }
        ),
    )
    return env


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    load_before = load_average()
    sizes = [float(s) for s in str(args.sizes_mib).split(",") if s]
    modes = [m for m in str(args.modes).split(",") if m]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="oxen-bench-storage-") as work:
        folder = Path(work)
        files = []
        for mib in sizes:
            name = f"{mib:g}mib"
            size, edge = noise_png(folder / f"{name}.png", mib)
            files.append({"name": name, "path": str(folder / f"{name}.png"), "bytes": size, "edge": edge})
        wsize, wedge = noise_png(folder / "warmup.png", 0.01)
        warmup = {"name": "warmup", "path": str(folder / "warmup.png"), "bytes": wsize, "edge": wedge}
        log(f"# storage: files {[f['bytes'] for f in files]} bytes ready ({load_average()})")
        with (
            _server(FILE_SERVER, [work]) as (files_url, files_pid),
            _server(MOTO_SERVER, [str(REPO)]) as (s3_endpoint, s3_pid),
        ):
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=s3_endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.create_bucket(Bucket=BUCKET)
            env = _env(s3_endpoint, files_url, str(folder / "airflow-home"))
            spec = {
                "s3_endpoint": s3_endpoint,
                "files_url": files_url,
                "files": files,
                "warmup": warmup,
                "pids": {"s3_server": s3_pid, "file_server": files_pid},
            }
            for rep in range(args.repeat):
                for mode in modes:
                    out = subprocess.run(
                        [sys.executable, str(Path(__file__).resolve()), "--child", mode, json.dumps(spec)],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=args.child_timeout,
                        check=False,
                        cwd=str(REPO),
                    )
                    if out.returncode != 0:
                        raise RuntimeError(f"storage child {mode} failed:\n{out.stderr[-3000:]}")
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    for item in result["files"]:
                        item.update(mode=mode, rep=rep, side="storage")
                        runs.append(item)
                        log(
                            f"# storage rep {rep + 1}/{args.repeat} {mode} {item['name']}: "
                            f"{item['bytes'] / 2**20 / item['seconds']:.0f} MiB/s, {item['seconds']:.2f} s, "
                            f"RSS {item['rss_before_mb']:.0f} -> {item['rss_peak_mb']:.0f} MB, "
                            f"CPU s child {item['cpu_self_s']:.2f} S3 {item['cpu_s3_server_s']:.2f} "
                            f"files {item['cpu_file_server_s']:.2f}, machine busy {item['machine_busy']:.0%} "
                            f"({load_average()})"
                        )
                    _empty_bucket(s3)  # moto keeps objects in memory
    return {
        "settings": {"sizes_mib": sizes, "repeat": args.repeat, "modes": modes},
        "runs": runs,
        "load_before": load_before,
        "load_after": load_average(),
        "seconds": time.monotonic() - started,
    }


def _empty_bucket(s3: Any) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def render(result: dict[str, Any]) -> str:
    s, runs = result["settings"], result["runs"]
    names = list(dict.fromkeys(r["name"] for r in runs))
    modes = [m for m in MODES if any(r["mode"] == m for r in runs)]

    def group(mode: str, name: str) -> list[dict[str, Any]]:
        return [r for r in runs if r["mode"] == mode and r["name"] == name]

    def mibps(r: dict[str, Any]) -> float:
        return float(r["bytes"] / 2**20 / r["seconds"])

    lines = [
        f"Noise PNGs from a local HTTP server to moto S3 (both in their own processes); a fresh child "
        f"process per mode and repetition, warmed up on a small file; median of {s['repeat']} run(s) "
        f"(min-max). {result['load_before']} before, {result['load_after']} after "
        f"({result['seconds']:.0f} s).",
        "",
    ]
    rows = []
    for name in names:
        peer = group("boto3", name)
        for mode in modes:
            g = group(mode, name)
            if not g:
                continue
            rows.append(
                [
                    f"{g[0]['bytes'] / 2**20:,.1f}",
                    LABELS[mode],
                    spread([mibps(r) for r in g], fmt_1),
                    spread([r["seconds"] for r in g], lambda v: f"{v:.2f}"),
                    ratio(median(mibps(r) for r in g), median(mibps(r) for r in peer)) if peer else "-",
                    spread([r["rss_before_mb"] for r in g], fmt_int),
                    spread([r["rss_peak_mb"] for r in g], fmt_int),
                    spread([r["rss_peak_mb"] - r["rss_before_mb"] for r in g], fmt_int),
                    _cpu(g, "cpu_self_s"),
                    _cpu(g, "cpu_s3_server_s"),
                    _busy(g),
                ]
            )
    lines += table(
        [
            "file MiB",
            "how",
            "MiB/s",
            "seconds",
            "throughput vs boto3",
            "RSS before MB",
            "peak RSS MB",
            "peak growth MB",
            "CPU s: this process",
            "CPU s: S3 server",
            "machine busy",
        ],
        "rlrrrrrrrrr",
        rows,
    )

    def ratios(mode: str, peer_mode: str) -> list[str]:
        parts = []
        for name in names:
            ours, peer = group(mode, name), group(peer_mode, name)
            if ours and peer:
                value = median(mibps(r) for r in ours) / median(mibps(r) for r in peer)
                parts.append(f"{value:.2f}x at {ours[0]['bytes'] / 2**20:,.0f} MiB")
        return parts

    verdicts = []
    for mode in OPERATOR_MODES:
        if mode not in modes:
            continue
        growth = [median(r["rss_peak_mb"] - r["rss_before_mb"] for r in group(mode, n)) for n in names]
        diy = ratios(mode, "diy")
        verdicts.append(
            f"* {LABELS[mode]}: throughput vs boto3 {', '.join(ratios(mode, 'boto3'))} "
            f"(goal >= {GOAL_THROUGHPUT}x)"
            + (f"; vs the hand-written download and upload {', '.join(diy)}" if diy else "")
            + f"; peak growth {', '.join(f'{g:.0f}' for g in growth)} MB for the sizes above "
            f"({'flat' if max(growth) - min(growth) < 32 else 'grows with the file'})."
        )
    lines += ["", *verdicts, *_bottleneck(runs, names)]
    return "\n".join(lines)


def _cpu(group: list[dict[str, Any]], name: str) -> str:
    """Median CPU seconds (runs kept from before the CPU was measured have none: "-")."""
    values = [r[name] for r in group if name in r]
    return spread(values, fmt_2) if values else "-"


def _busy(group: list[dict[str, Any]]) -> str:
    values = [r["machine_busy"] for r in group if "machine_busy" in r]
    return spread(values, lambda v: f"{v:.0%}") if values else "-"


def _bottleneck(runs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """What bounds the peer: the S3 server's CPU seconds per wall second of its upload.

    moto handles requests in one Python interpreter, so about 1.0 (one core) means the server,
    not the client, sets the pace; a transfer then adds whatever of its download it cannot
    overlap.
    """
    parts = []
    for name in names:
        peer = [r for r in runs if r["mode"] == "boto3" and r["name"] == name and "cpu_s3_server_s" in r]
        if peer:
            load = median(r["cpu_s3_server_s"] / r["seconds"] for r in peer)
            busy = median(r["machine_busy"] for r in peer)
            parts.append(f"{load:.2f} at {peer[0]['bytes'] / 2**20:,.0f} MiB (machine {busy:.0%} busy)")
    if not parts:
        return []
    return [
        "* S3 server CPU seconds per second of the peer's upload: "
        + ", ".join(parts)
        + " (about 1.0 is about one core: moto handles requests in one interpreter, which its socket"
        " reads and hashing let go of for a little more)."
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes-mib", default="1,20,200")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child-timeout", type=float, default=600.0)


def main() -> int:
    parser = argparse.ArgumentParser(description="Storage-side benchmark (markdown table).")
    add_arguments(parser)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("spec", nargs="?")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.spec))))
        return 0
    result = run_all(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
