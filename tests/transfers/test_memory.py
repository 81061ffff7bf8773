"""The transfer streams: a file much larger than its buffers is never held in (Python) memory.

The emulator's images are smooth gradients that compress to a few hundred KB even at
2048x2048, smaller than the download buffer, so they cannot show anything. This test serves
incompressible files (a 2048x2048 PNG of random noise, about 12 MB, past the 8 MiB spool
threshold; a 200 MB clip of lossless noise) from a loopback stand-in for Oxen (``fake_oxen``) as result URLs.

The operator runs in a child process so that tracemalloc sees only the transfer: the moto
server (which buffers each request body) lives in this process. The child warms up on a small
file of each kind, then measures the peak Python allocation (and peak RSS) of a small and of a
big transfer. Pillow's decoded pixels are native memory, not Python allocations, and are not
counted (one image at a time, while it is checked and thumbnailed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import FileServer, connection_json, png_bytes
from tests.transfers.conftest import aws_connection_json
from tests.transfers.helpers import image_result, make_noise_clip, video_result

# Big files and a child process: outside `make test-fast`.
pytestmark = pytest.mark.slow

CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

args = json.loads(sys.argv[1])
# Each execute() would build a new S3Hook, and boto3 loading its service models allocates
# ~13 MB that the garbage collector frees whenever it likes: noise far larger than the signal.
# One warmed-up hook, through the operator's s3_hook() seam, keeps only the per-file costs.
hook = S3Hook(aws_conn_id="aws_default")
OxenGenerationToS3Operator.s3_hook = lambda self: hook

def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

def transfer(name):
    operator = OxenGenerationToS3Operator(
        task_id="store", results=[args["results"][name]], bucket=args["bucket"], prefix="mem",
        key_template="mem/{generation_id}.{ext}",
    )
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    rss_before = peak_rss()
    started = time.monotonic()
    [record] = operator.execute({"run_id": name})
    seconds = time.monotonic() - started
    assert record["action"] == "stored" and record["checks"]["ok"], record
    return {
        "python_peak": tracemalloc.get_traced_memory()[1] - before,
        "rss_peak_growth": peak_rss() - rss_before,
        "rss_peak": peak_rss(),
        "seconds": round(seconds, 2),
        "frames": record["checks"].get("frames"),
        "poster_s3_key": record.get("poster_s3_key"),
    }

tracemalloc.start()
# Each kind's warm-up comes first (imports, plugins, fonts, PyAV's decoder, connection pools).
print(json.dumps({name: transfer(name) for name in args["results"]}))
"""
# 200 MB, as the issue asks; OXEN_VIDEO_MEMORY_MB picks another size (e.g. 64 on a slow machine).
VIDEO_MEMORY_BYTES = int(os.environ.get("OXEN_VIDEO_MEMORY_MB", "200")) * 1024 * 1024


def test_a_large_image_and_a_large_video_are_streamed_checked_and_posted_at_flat_memory(
    tmp_path: Path, fake_oxen: FileServer, moto_endpoint: str, s3_client: Any, bucket: str
) -> None:
    """A 12 MB noise PNG, and a 200 MB clip (720p lossless noise, H.264) that goes through
    download, checks (every frame decoded), poster frame and multipart upload.

    The clip's baseline is a 720p clip past the spool threshold too (12 MB), so the decoder's
    frame buffers and boto3's multipart machinery are already in use: what the big clip adds on
    top is what grows with the file, which must be nothing much.
    """
    # A signed URL, as a caller holding one hands it over (a bare one would be read afresh).
    results: dict[str, dict[str, Any]] = {}
    # The clips first: peak RSS then grows as it did in a child of their own.
    clips = {"warmup": 2 * 2**20, "small": 12 * 2**20, "big": VIDEO_MEMORY_BYTES}
    frames = {name: make_noise_clip(tmp_path / f"{name}.mp4", target_bytes=n) for name, n in clips.items()}
    for name, count in frames.items():
        generation = f"memory-video-{name}"
        url = fake_oxen.add_result(generation, tmp_path / f"{name}.mp4", f"{name}.mp4")
        result = video_result(generation, f"{url}?signature=memory-test", duration=str(count / 8))
        results[f"video-{name}"] = {**result, "width": 1280, "height": 720}
        clips[name] = (tmp_path / f"{name}.mp4").stat().st_size
    pngs = {"warmup": 256, "small": 256, "big": 2048}
    for name, edge in pngs.items():
        data = png_bytes((edge, edge), None)
        url = fake_oxen.add_result(f"memory-{name}", data, f"{name}.png", media_type="image")
        results[name] = image_result(f"memory-{name}", f"{url}?signature=memory-test", edge)
        pngs[name] = len(data)
    assert pngs["big"] > 8 * 1024 * 1024  # past the in-memory spool threshold
    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(moto_endpoint),
        "AIRFLOW_CONN_OXEN_DEFAULT": connection_json(fake_oxen.url),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({"bucket": bucket, "results": results})],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr[-3000:] + child.stdout[-3000:]
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"memory ({clips['big'] / 2**20:.0f} MB clip, {frames['big']} frames): {measured}")

    # Holding the PNG would cost at least its size (about 12 MB). Streaming costs buffers:
    # about 1.5 MB for the download and the checks, plus about 1.5 MB per multipart part boto3
    # has in flight (two here), which depends on its transfer settings, not on the file.
    assert measured["big"]["python_peak"] < pngs["big"] / 2, (measured, pngs)
    stored = s3_client.head_object(Bucket=bucket, Key="mem/memory-big.png")
    # Marked on the way, also without holding it: the file plus its XMP packet (about 1 KB).
    assert 0 < stored["ContentLength"] - pngs["big"] < 4096 and "sha256" in stored["Metadata"]
    assert stored["Metadata"]["provenance"] == "marked"

    big, small = measured["video-big"], measured["video-small"]
    assert big["frames"] == frames["big"] and big["poster_s3_key"] == "mem/memory-video-big.mp4.poster.jpg"
    # Holding the clip would cost its size; streaming it costs buffers that do not grow with it:
    # Python's share is boto3's multipart parts in flight (about 1.5 MB each, 10 at most by its
    # default max_concurrency: about 15 MB here, 5 MB for the two-part baseline).
    assert big["python_peak"] < 24 * 2**20, measured
    assert big["rss_peak_growth"] < 32 * 2**20, measured
    assert big["rss_peak"] < small["rss_peak"] + clips["big"] / 4, measured
    stored = s3_client.head_object(Bucket=bucket, Key="mem/memory-video-big.mp4")
    assert 0 < stored["ContentLength"] - clips["big"] < 4096 and stored["ContentType"] == "video/mp4"
    assert stored["Metadata"]["provenance"] == "marked"
    poster = s3_client.head_object(Bucket=bucket, Key="mem/memory-video-big.mp4.poster.jpg")
    assert poster["ContentType"] == "image/jpeg"
