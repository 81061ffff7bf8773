"""The transfer streams: a file much larger than its buffers is never held in (Python) memory.

The emulator's images are smooth gradients that compress to a few hundred KB even at
2048x2048, smaller than the download buffer, so they cannot show anything. This test
serves a 2048x2048 PNG of random noise (about 12 MB, incompressible, past the 8 MiB spool
threshold) from a plain loopback file server as the result URL.

The operator runs in a child process so that tracemalloc sees only the transfer: the moto
server (which buffers each request body) lives in this process. The child warms up on a
small file, then measures the peak Python allocation of a small and of the big transfer.
Pillow's decoded pixels are native memory, not Python allocations, and are not counted
(one image at a time, while it is checked and thumbnailed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures import connection_json
from tests.transfers.conftest import aws_connection_json

# Big files and a child process per test: outside `make test-fast`.
pytestmark = pytest.mark.slow

CHILD = r"""
import gc, json, sys, tracemalloc
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

args = json.loads(sys.argv[1])
# Each execute() would build a new S3Hook, and boto3 loading its service models allocates
# ~13 MB that the garbage collector frees whenever it likes: noise far larger than the signal.
# One warmed-up hook, through the operator's s3_hook() seam, keeps only the per-file costs.
hook = S3Hook(aws_conn_id="aws_default")
OxenGenerationToS3Operator.s3_hook = lambda self: hook

def transfer(name):
    operator = OxenGenerationToS3Operator(
        task_id="store", results=[args["results"][name]], bucket=args["bucket"], prefix="mem",
        key_template="mem/{generation_id}.{ext}",
    )
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    [record] = operator.execute({"run_id": name})
    assert record["action"] == "stored" and record["checks"]["ok"], record
    return tracemalloc.get_traced_memory()[1] - before

tracemalloc.start()
transfer("warmup")  # imports, plugins, fonts, connection pools: not measured
print(json.dumps({"small": transfer("small"), "big": transfer("big")}))
"""


def _noise_png(path: Path, size: int) -> int:
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(path, "PNG", compress_level=1)
    return path.stat().st_size


def _result(name: str, url: str, size: int) -> dict[str, Any]:
    return {
        "generation_id": f"memory-{name}",
        "status": "succeeded",
        "media_type": "image",
        "model": "black-forest-labs-flux-2-klein-4b",
        "prompt": "noise",
        # A signed URL, as a caller holding one hands it over (a bare one would be read afresh).
        "result_url": f"{url}?signature=memory-test",
        "output_format": "png",
        "width": size,
        "height": size,
    }


VIDEO_CHILD = r"""
import gc, json, resource, sys, time, tracemalloc
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

args = json.loads(sys.argv[1])
hook = S3Hook(aws_conn_id="aws_default")  # one warmed-up hook (see CHILD above)
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
    assert record["poster_s3_key"] == f"mem/{record['generation_id']}.mp4.poster.jpg", record
    return {
        "python_peak": tracemalloc.get_traced_memory()[1] - before,
        "rss_peak_growth": peak_rss() - rss_before,
        "rss_peak": peak_rss(),
        "seconds": round(seconds, 2),
        "frames": record["checks"]["frames"],
    }

tracemalloc.start()
transfer("warmup")  # imports, plugins, PyAV's decoder, connection pools: not measured
small = transfer("small")
big = transfer("big")
print(json.dumps({"small": small, "big": big}))
"""
# 200 MB, as the issue asks; OXEN_VIDEO_MEMORY_MB picks another size (e.g. 64 on a slow machine).
VIDEO_MEMORY_BYTES = int(os.environ.get("OXEN_VIDEO_MEMORY_MB", "200")) * 1024 * 1024


def test_a_large_video_is_streamed_decoded_and_posted_at_flat_memory(
    tmp_path: Path, file_server: str, moto_endpoint: str, s3_client: Any, bucket: str
) -> None:
    """A 200 MB clip (720p lossless noise, H.264) goes through download, checks (every frame
    decoded), poster frame and multipart upload; peak RSS grows by far less than the file.

    The baseline is a 720p clip past the spool threshold too (12 MB), so the decoder's frame
    buffers and boto3's multipart machinery are already in use: what the big clip adds on top
    is what grows with the file, which must be nothing much.
    """
    from tests.transfers.video_helpers import make_noise_clip

    frames = {
        "warmup": make_noise_clip(tmp_path / "warmup.mp4", target_bytes=2 * 2**20),
        "small": make_noise_clip(tmp_path / "small.mp4", target_bytes=12 * 2**20),
        "big": make_noise_clip(tmp_path / "big.mp4", target_bytes=VIDEO_MEMORY_BYTES),
    }
    sizes = {name: (tmp_path / f"{name}.mp4").stat().st_size for name in frames}
    results = {
        name: {
            "generation_id": f"memory-video-{name}",
            "status": "succeeded",
            "media_type": "video",
            "model": "kling-video-v2-6-pro-text-to-video",
            "prompt": "noise",
            "parameters": {"duration": str(frames[name] / 8)},
            "result_url": f"{file_server}/{name}.mp4?signature=memory-test",
            "output_format": "mp4",
            "width": 1280,
            "height": 720,
        }
        for name in frames
    }
    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(moto_endpoint),
        "AIRFLOW_CONN_OXEN_DEFAULT": connection_json(
            "http://127.0.0.1:9",
            download_allowed_hosts=["127.0.0.1"],
            download_allow_http_hosts=["127.0.0.1"],
        ),
    }
    child = subprocess.run(
        [sys.executable, "-c", VIDEO_CHILD, json.dumps({"bucket": bucket, "results": results})],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr[-3000:] + child.stdout[-3000:]
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"video memory ({sizes['big'] / 2**20:.0f} MB clip, {frames['big']} frames): {measured}")

    big, small = measured["big"], measured["small"]
    assert big["frames"] == frames["big"]
    # Holding the clip would cost its size; streaming it costs buffers that do not grow with it:
    # Python's share is boto3's multipart parts in flight (about 1.5 MB each, 10 at most by its
    # default max_concurrency: about 15 MB here, 5 MB for the two-part baseline).
    assert big["python_peak"] < 24 * 2**20, measured
    assert big["rss_peak_growth"] < 32 * 2**20, measured
    assert big["rss_peak"] < small["rss_peak"] + sizes["big"] / 4, measured
    stored = s3_client.head_object(Bucket=bucket, Key="mem/memory-video-big.mp4")
    assert 0 < stored["ContentLength"] - sizes["big"] < 4096 and stored["ContentType"] == "video/mp4"
    assert stored["Metadata"]["provenance"] == "marked"
    poster = s3_client.head_object(Bucket=bucket, Key="mem/memory-video-big.mp4.poster.jpg")
    assert poster["ContentType"] == "image/jpeg"


def test_a_large_file_is_streamed_not_held_in_memory(
    tmp_path: Path, file_server: str, moto_endpoint: str, s3_client: Any, bucket: str
) -> None:
    sizes = {"warmup": 256, "small": 256, "big": 2048}
    file_bytes = {name: _noise_png(tmp_path / f"{name}.png", edge) for name, edge in sizes.items()}
    assert file_bytes["big"] > 8 * 1024 * 1024  # past the in-memory spool threshold
    results = {name: _result(name, f"{file_server}/{name}.png", edge) for name, edge in sizes.items()}

    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(moto_endpoint),
        # Only used to refresh an expired URL, which does not happen here. The file server is a
        # plain-http loopback host other than the connection's: allowed explicitly (download policy).
        "AIRFLOW_CONN_OXEN_DEFAULT": connection_json(
            "http://127.0.0.1:9",
            download_allowed_hosts=["127.0.0.1"],
            download_allow_http_hosts=["127.0.0.1"],
        ),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({"bucket": bucket, "results": results})],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr[-3000:] + child.stdout[-3000:]
    peaks = json.loads(child.stdout.strip().splitlines()[-1])

    # Holding the file would cost at least its size (about 12 MB). Streaming costs buffers:
    # about 1.5 MB for the download and the checks, plus about 1.5 MB per multipart part boto3
    # has in flight (two here), which depends on its transfer settings, not on the file.
    assert peaks["big"] < file_bytes["big"] / 2, (peaks, file_bytes)
    stored = s3_client.head_object(Bucket=bucket, Key="mem/memory-big.png")
    # Marked on the way, also without holding it: the file plus its XMP packet (about 1 KB).
    assert 0 < stored["ContentLength"] - file_bytes["big"] < 4096 and "sha256" in stored["Metadata"]
    assert stored["Metadata"]["provenance"] == "marked"
