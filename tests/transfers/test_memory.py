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

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures import connection_json
from tests.transfers.conftest import aws_connection_json

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


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _result(name: str, url: str, size: int) -> dict[str, Any]:
    return {
        "generation_id": f"memory-{name}",
        "status": "succeeded",
        "model": "black-forest-labs-flux-2-klein-4b",
        "prompt": "noise",
        # A signed URL, as a caller holding one hands it over (a bare one would be read afresh).
        "result_url": f"{url}?signature=memory-test",
        "output_format": "png",
        "width": size,
        "height": size,
    }


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
    assert stored["ContentLength"] == file_bytes["big"]
