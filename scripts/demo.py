"""The two-command demo's first command (``make demo``).

Starts the Oxen API emulator and a real S3 API server (moto in server mode) on 127.0.0.1,
runs the marketing-campaign DAG with ``airflow dags test`` in a throwaway AIRFLOW_HOME (no
API key, no network), lets both human-review steps answer themselves through Airflow's own
Human-in-the-loop timeout (each item's default decision), then prints where the images, the
edited variants of the approved key visual, its clip (with a poster frame), the manifests
and contact sheets are — and copies them to ``.demo/output/`` to look at, and prints what a
reader (exiftool) sees in a variant and in the clip: that they are AI-generated, by which
model, from which source image. Stops everything it started, even on failure.

The same DAG runs unchanged against the real Oxen API and real S3: configure the
``oxen_default`` and ``aws_default`` connections and trigger it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_KEY = "demo-key-not-a-secret"
BUCKET = "oxen-campaigns"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 call otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def background(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A helper process in its own process group, stopped (TERM, then KILL) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def airflow_env(home: Path, emulator_url: str, s3_url: str, review_seconds: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        # Airflow's HITL timeout sweep runs in the scheduler: check often so the demo is quick.
        AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="1",
        OXEN_CAMPAIGN_REVIEW_SECONDS=str(review_seconds),
        AIRFLOW_CONN_OXEN_DEFAULT=json.dumps(
            {"conn_type": "oxen", "host": emulator_url, "password": DEMO_KEY, "extra": {"max_retries": 3}}
        ),
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(
            {
                "conn_type": "aws",
                "login": "demo",
                "password": "demo-secret",
                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
            }
        ),
    )
    return env


def _kind(key: str) -> str:
    """What an object of the demo's bucket is, for the listing."""
    if key.endswith(".json"):
        return "manifest"
    if "contact-sheet" in key:
        return "contact sheet"
    where = "approved " if key.startswith("approved/") else "rejected " if key.startswith("rejected/") else ""
    follow_up = "/follow-up/" in key
    if ".poster." in key:
        what = "poster frame of the clip"
    elif key.endswith((".mp4", ".webm", ".mov")):
        what = "clip of the key visual"
    else:
        what = "variant of the key visual" if follow_up else "image"
    return f"{where}{what}" if where else f"stored {what}"


_FIELDS = ("DigitalSourceType", "AISystemUsed", "IngredientsFilePath", "DocumentID", "CreatorTool")


def _reader() -> str:
    return "exiftool" if shutil.which("exiftool") else "exiftool not installed: the XMP packet as parsed here"


def read_provenance(path: Path) -> dict[str, str]:
    """The marking as exiftool reads it; without exiftool, the packet's own attributes and ingredients."""
    if shutil.which("exiftool"):
        out = subprocess.run(
            ["exiftool", "-j", *[f"-XMP:{f}" for f in _FIELDS], str(path)], capture_output=True
        )
        return {k: str(v) for k, v in json.loads(out.stdout)[0].items() if k != "SourceFile"}
    import re
    import xml.etree.ElementTree as ET

    found = re.search(rb"<x:xmpmeta.*</x:xmpmeta>", path.read_bytes(), re.DOTALL)
    if found is None:
        return {"XMP": "none"}
    root = ET.fromstring(found.group())
    description = next(e for e in root.iter() if e.tag.endswith("}Description"))
    fields = {k.rsplit("}", 1)[-1]: v for k, v in description.attrib.items() if not k.endswith("}about")}
    paths = [e.text or "" for e in root.iter() if e.tag.endswith("}filePath")]
    return {**fields, **({"IngredientsFilePath": ", ".join(paths)} if paths else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dag", default="oxen_marketing_campaign")
    parser.add_argument("--workdir", default=str(REPO / ".demo"))
    parser.add_argument("--render-seconds", type=float, default=1.5)
    parser.add_argument("--video-render-seconds", type=float, default=4.0)
    parser.add_argument("--review-seconds", type=int, default=5)
    args = parser.parse_args()

    import boto3

    from airflow_provider_oxen.emulator import start_emulator_process

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    home, output = workdir / "airflow-home", workdir / "output"
    home.mkdir(parents=True)
    output.mkdir(parents=True)

    emulator_args = [
        "--api-key",
        DEMO_KEY,
        "--render-seconds",
        str(args.render_seconds),
        "--video-render-seconds",
        str(args.video_render_seconds),
        "--quiet",
    ]
    with start_emulator_process(emulator_args) as emulator, moto_server() as s3_url:
        print(f">> Oxen emulator on {emulator.url}; S3 (moto) on {s3_url}")
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="demo",
            aws_secret_access_key="demo-secret",
        )
        s3.create_bucket(Bucket=BUCKET)
        env = airflow_env(home, emulator.url, s3_url, args.review_seconds)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True
        )
        if migrate.returncode != 0:
            print(migrate.stderr.decode()[-3000:])
            return 1
        scheduler = [sys.executable, "-m", "airflow", "scheduler"]
        with background(scheduler, env, workdir / "scheduler.log"):
            print(
                f">> airflow dags test {args.dag}  (AIRFLOW_HOME={home}; review answers itself after "
                f"{args.review_seconds} s)"
            )
            started = time.monotonic()
            run = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", args.dag],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
        log = run.stdout + run.stderr
        (workdir / "dags-test.log").write_text(log)
        elapsed = time.monotonic() - started
        if run.returncode != 0 or "state=failed" in log:
            print(log[-5000:])
            print(f"!! the DAG run failed after {elapsed:.1f} s; full log: {workdir / 'dags-test.log'}")
            return 1
        print(f">> DAG run succeeded in {elapsed:.1f} s")

        listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        for obj in sorted(listing, key=lambda o: o["Key"]):
            key = obj["Key"]
            target = output / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, key, str(target))
            kind = _kind(key)
            print(f"   s3://{BUCKET}/{key:<78} {obj['Size']:>8} B  {kind}")
        print(f">> {len(listing)} object(s) in s3://{BUCKET}; copies under {output.relative_to(REPO)}/")
        keys = [obj["Key"] for obj in listing]
        variant = next(
            (k for k in keys if "/follow-up/" in k and _kind(k).endswith("variant of the key visual")), None
        )
        clip = next((k for k in keys if _kind(k).endswith("clip of the key visual")), None)
        for key in (k for k in (variant, clip) if k):
            print(f">> what a reader sees in {key} ({_reader()}):")
            for name, value in read_provenance(output / key).items():
                print(f"   {name:<20} {value}")
    print(f">> Airflow log: {workdir / 'dags-test.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
