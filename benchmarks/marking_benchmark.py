"""What provenance marking adds to the S3 transfer, per 1024x1024 image and per 5 s clip.

Files: a 1024x1024 noise PNG (about 3 MiB, the storage benchmark's kind of file), the same
noise as a JPEG, and a 5 s 1280x720 H.264 clip at 24 fps of moving noise (PyAV), served by a local HTTP server
as generations' results, stored in moto S3 (both servers in their own processes, as in
``storage_benchmark.py``). Per file and repetition, the operator (default checks, contact
sheet, poster frame) runs with ``mark_provenance`` on and off, alternately, each into a fresh
prefix; and the marking step alone (``mark_file`` on the spooled file plus hashing what is
stored, what the transfer adds) is timed on its own. Reported: the step's median cost as a
share of the median transfer time without marking (the goal: at most 10%), and the two
transfer medians. Usage::

    python benchmarks/marking_benchmark.py --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, load_average
from benchmarks.storage_benchmark import FILE_SERVER, MOTO_SERVER, _env, _server

BUCKET = "oxen-bench-marking"
GOAL = 0.10


def _files(folder: Path) -> list[dict[str, Any]]:
    import av
    from PIL import Image, ImageChops

    noise = Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3))
    noise.save(folder / "image.png", "PNG", compress_level=1)
    noise.save(folder / "image.jpg", quality=90)
    frame = Image.frombytes("RGB", (1280, 720), os.urandom(1280 * 720 * 3))
    with av.open(str(folder / "clip.mp4"), "w") as clip:
        stream = clip.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(5 * 24):
            shifted = ImageChops.offset(frame, index * 7, index * 3)
            for packet in stream.encode(av.VideoFrame.from_image(shifted)):
                clip.mux(packet)
        for packet in stream.encode():
            clip.mux(packet)
    return [
        {"name": "1024x1024 PNG", "file": "image.png", "format": "png", "media_type": "image"},
        {"name": "1024x1024 JPEG", "file": "image.jpg", "format": "jpeg", "media_type": "image"},
        {"name": "5 s 720p clip", "file": "clip.mp4", "format": "mp4", "media_type": "video"},
    ]


def _result(item: dict[str, Any], files_url: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "generation_id": f"bench-{uuid.uuid4().hex[:8]}",
        "status": "succeeded",
        "model": "bench-model",
        "media_type": item["media_type"],
        "prompt": "noise",
        "result_url": f"{files_url}/{item['file']}?signature=benchmark",
        "output_format": item["format"],
        "input_uris": ["s3://brand/approved/key-visual.png"],
    }
    if item["media_type"] == "image":
        result.update(width=1024, height=1024)
    else:
        result["parameters"] = {"duration": 5, "aspect_ratio": "16:9"}
    return result


def _mark_step(data: bytes) -> float:
    """Seconds of what marking adds to one file's transfer: mark the spool, hash what is stored."""
    from airflow_provider_oxen.provenance.facts import Ingredient, Provenance
    from airflow_provider_oxen.provenance.xmp import mark_file
    from airflow_provider_oxen.transfers.spool import Spool

    facts = Provenance(
        "bench", "bench-model", "airflow-provider-oxen", (Ingredient("s3://b/k.png", "image/png"),)
    )
    with Spool() as spool:
        spool.write(data)
        started = time.perf_counter()
        assert mark_file(spool, facts)  # type: ignore[arg-type]
        spool.seek(0)
        digest = hashlib.sha256()
        while chunk := spool.read(1024 * 1024):
            digest.update(chunk)
        return time.perf_counter() - started


def run(repeat: int, log: Any = print) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="oxen-bench-marking-") as work:
        folder = Path(work)
        items = _files(folder)
        with _server(FILE_SERVER, [work]) as (files_url, _), _server(MOTO_SERVER, [str(REPO)]) as (s3_url, _):
            os.environ.update(_env(s3_url, files_url, str(folder / "airflow-home")))
            import boto3
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

            boto3.client(
                "s3",
                endpoint_url=s3_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).create_bucket(Bucket=BUCKET)
            hook = S3Hook(aws_conn_id="aws_default")  # one warm client, as a worker reuses it
            OxenGenerationToS3Operator.s3_hook = lambda self: hook  # type: ignore[method-assign]

            def transfer(item: dict[str, Any], marks: bool) -> float:
                run_id = uuid.uuid4().hex[:8]
                operator = OxenGenerationToS3Operator(
                    task_id="store",
                    results=[_result(item, files_url)],
                    bucket=BUCKET,
                    prefix=f"bench/{run_id}",
                    mark_provenance=marks,
                )
                started = time.perf_counter()
                [record] = operator.execute({"run_id": run_id})  # type: ignore[arg-type]
                seconds = time.perf_counter() - started
                assert record["provenance"]["state"] == ("marked" if marks else "unmarked"), record
                return seconds

            rows = []
            for item in items:
                data = (folder / item["file"]).read_bytes()
                transfer(item, True)  # warm-up
                on, off, step = [], [], []
                for _ in range(repeat):
                    off.append(transfer(item, False))
                    on.append(transfer(item, True))
                    step.append(_mark_step(data))
                row = {
                    "name": item["name"],
                    "bytes": len(data),
                    "mark_s": median(step),
                    "off_s": median(off),
                    "on_s": median(on),
                }
                log(
                    f"# {row['name']}: marking {row['mark_s'] * 1000:.2f} ms, transfer "
                    f"{row['off_s']:.3f} s unmarked / {row['on_s']:.3f} s marked ({load_average()})"
                )
                rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], repeat: int) -> str:
    lines = [
        f"Median of {repeat} run(s) each; {load_average()} after.",
        "",
        "| file | bytes | marking step | transfer, unmarked | transfer, marked | step / transfer | ≤ 10% |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        share = r["mark_s"] / r["off_s"]
        lines.append(
            f"| {r['name']} | {r['bytes']:,} | {r['mark_s'] * 1000:.2f} ms | {r['off_s'] * 1000:.0f} ms | "
            f"{r['on_s'] * 1000:.0f} ms | {share:.1%} | {'met' if share <= GOAL else 'MISSED'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(render(run(args.repeat), args.repeat))


if __name__ == "__main__":
    main()
