"""C2PA signing cost: milliseconds to embed a signed manifest in a 1024x1024 PNG and JPEG and a 5 s clip.

Per asset, ``provenance.c2pa.sign`` is timed ``--repeat`` times (after one warm-up) for a
generation (no ingredient) and for an edit or image-to-video clip (one 1024x1024 JPEG input as
its ingredient: hashed, thumbnailed and embedded). Images are incompressible noise, the upper
bound (a busy photo sits between it and a flat image). Clips are H.264 at 24 fps: 5 s of a
moving 1280x720 gradient (tiny), and about 5 s of 320x180 lossless noise of ``--clip-mib``, a
real clip's size (c2pa hashes a clip's bytes and decodes no frame, so bytes are the work). The
credentials are a test CA's (``tests/provenance/certs.py``); their check (parse, plus a 1-pixel
probe signature) is timed too. Usage::

    .venv/bin/python benchmarks/c2pa_signing.py --repeat 9
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from airflow_provider_oxen.provenance.c2pa import SigningCredentials, sign
from airflow_provider_oxen.provenance.facts import Ingredient, Provenance
from benchmarks.common import fmt_1, fmt_int, load_average, median, spread, stamp, table
from tests.provenance.certs import make_signer
from tests.transfers.helpers import make_clip, make_noise_clip


def _noise_image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(buffer, fmt)
    return buffer.getvalue()


def _ms(call: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per call: CPU time holds when other work shares the cores."""
    call()  # warm-up: c2pa's native library, caches
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--clip-mib", type=float, default=12.5)
    args = parser.parse_args()

    pems = make_signer()
    credentials = SigningCredentials(pems.chain, pems.key)
    check = _ms(lambda: SigningCredentials(pems.chain, pems.key), args.repeat)
    source = Ingredient("s3://bucket/input.jpg", "image/jpeg", _noise_image("JPEG"))
    with tempfile.TemporaryDirectory() as folder:
        gradient = make_clip(Path(folder, "g.mp4"), width=1280, height=720, fps=24, seconds=5)
        # Lossless noise at 320x180: 12.5 MiB is about 5 s at 24 fps (20 Mbit/s, a high-quality clip).
        frames = make_noise_clip(
            Path(folder, "n.mp4"), target_bytes=int(args.clip_mib * 2**20), width=320, height=180, fps=24
        )
        noise = Path(folder, "n.mp4").read_bytes()
    assets = [
        ("PNG 1024x1024", "image/png", _noise_image("PNG")),
        ("JPEG 1024x1024", "image/jpeg", _noise_image("JPEG")),
        ("MP4 5 s 720p24, gradient", "video/mp4", gradient),
        (f"MP4 {frames / 24:.1f} s, {args.clip_mib:g} MiB (noise)", "video/mp4", noise),
    ]
    rows = []
    for name, mime_type, data in assets:
        generated = Provenance("g", "model", "airflow-provider-oxen")
        edited = Provenance("g", "model", "airflow-provider-oxen", (source,))
        signed = sign(data, mime_type, generated, credentials) or b""
        row = [name, fmt_int(len(data) / 1024), fmt_1((len(signed) - len(data)) / 1024)]
        for facts in (generated, edited):
            wall, cpu = _ms(lambda: sign(data, mime_type, facts, credentials), args.repeat)  # noqa: B023
            row += [spread(wall, fmt_1), fmt_1(median(cpu))]
        rows.append(row)
    print(
        f"C2PA signing, wall median (min-max) and CPU median of {args.repeat}; {stamp()}; {load_average()}\n"
    )
    header = ["asset", "KiB", "+KiB signed", "sign ms", "CPU ms", "1 ingredient: sign ms", "CPU ms"]
    print("\n".join(table(header, "lrrrrrr", rows)))
    print(
        f"\nCredentials check (parse + 1-pixel probe signature): {spread(check[0], fmt_1)} ms, "
        f"CPU {fmt_1(median(check[1]))} ms"
    )


if __name__ == "__main__":
    main()
