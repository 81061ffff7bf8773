"""Small stand-ins for what Airflow hands a task, real images made on the emulator, real MP4 clips
made with PyAV, and results as the generate operator returns them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from tests.integration.helpers import generate_operator, task_context

RUN_ID = "manual__2026-05-01T09:30:00+00:00"
CLIP_MODEL = "kling-video-v2-6-pro-text-to-video"


class FakeTI:
    """Only what the transfer uses of a task instance: ``run_id`` and ``xcom_push``."""

    def __init__(self, run_id: str = RUN_ID) -> None:
        self.run_id = run_id
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def transfer_context(run_id: str = RUN_ID, **params: Any) -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {
        "run_id": run_id,
        "ds": "2026-05-01",
        "params": {"campaign": "spring", **params},
        "ti": FakeTI(run_id),
        "outlet_events": OutletEventAccessors(),
    }


def s3_operator(results: Any, bucket: str, **kwargs: Any) -> OxenGenerationToS3Operator:
    options: dict[str, Any] = {
        "task_id": "store",
        "results": results,
        "bucket": bucket,
        "prefix": "campaigns",
        "key_template": "campaigns/{generation_id}.{ext}",
        **kwargs,
    }
    return OxenGenerationToS3Operator(**options)


def run_transfer(
    operator: OxenGenerationToS3Operator, context: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return operator.execute(context or transfer_context())  # type: ignore[arg-type]


def generate(num_images: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    """Real images through the emulator, exactly as the generate operator returns them."""
    options = {"prompt": "A lighthouse poster, bold type", "deferrable": False, "poll_interval": 0.05}
    return generate_operator(**{**options, "num_outputs": num_images, **kwargs}).execute(task_context())


def served_sha256(url: str) -> str:
    """What the emulator serves at a result URL (downloaded independently of the operator)."""
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return hashlib.sha256(response.content).hexdigest()


def object_bytes(s3_client: Any, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def list_keys(s3_client: Any, bucket: str) -> list[str]:
    return sorted(obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


def fresh_url(generation_id: str) -> str:
    """The signed URL of a generation's file right now (results keep theirs without the query)."""
    from airflow_provider_oxen.hooks.oxen import OxenHook

    with OxenHook() as hook:
        url = hook.get_generation(generation_id).result_url
    assert url is not None
    return url


def make_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    fps: int = 8,
    seconds: float = 5,
    container: str = "mp4",
) -> bytes:
    """An H.264 clip (``fps x seconds`` frames) written with PyAV; returns its bytes."""
    import av

    # A gradient that shifts by frame, so frames differ.
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(fps * seconds)):
            shifted = base.point([(v + index * 6) % 256 for v in range(256)] * 3)
            frame = av.VideoFrame.from_image(shifted)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path.read_bytes()


def make_noise_clip(
    path: Path, *, target_bytes: int, width: int = 1280, height: int = 720, fps: int = 8
) -> int:
    """An incompressible H.264 clip of about ``target_bytes`` (lossless, intra-only noise).

    Encoding noise is slow, so a few distinct frames are encoded once and their packets muxed
    again and again with later timestamps (every frame is a keyframe, so any order decodes).
    Returns the number of frames.
    """
    import av

    distinct = 6
    packets: list[tuple[bytes, bool]] = []
    scratch = path.with_suffix(".seed.mp4")
    with av.open(str(scratch), "w", format="mp4") as seed:
        stream = seed.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast", "keyint": "1", "bf": "0"}
        for _ in range(distinct):
            image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                seed.mux(packet)
        for packet in stream.encode():
            seed.mux(packet)
    with av.open(str(scratch)) as source:
        template = source.streams.video[0]
        for packet in source.demux(template):
            if packet.size:
                packets.append((bytes(packet), bool(packet.is_keyframe)))
        per_frame = sum(len(data) for data, _ in packets) / len(packets)
        count = max(distinct, round(target_bytes / per_frame))
        with av.open(str(path), "w", format="mp4") as output:
            stream = output.add_stream_from_template(template)
            for index in range(count):
                data, keyframe = packets[index % len(packets)]
                packet = av.Packet(data)
                packet.stream = stream
                packet.time_base = stream.time_base
                ticks = int(stream.time_base.denominator / (stream.time_base.numerator * fps))
                packet.pts = packet.dts = index * ticks
                packet.duration = ticks
                packet.is_keyframe = keyframe
                output.mux(packet)
    scratch.unlink()
    return count


def video_result(
    generation_id: str,
    result_url: str,
    *,
    prompt: str = "Acme Coffee: a glass carafe of cold brew with ice, slow pan",
    duration: str = "5",
    aspect_ratio: str = "16:9",
    seed: int | None = 11,
    **extra: Any,
) -> dict[str, Any]:
    """A video result as the generate operator returns it (``result_url`` without its query)."""
    return {
        "generation_id": generation_id,
        "model": CLIP_MODEL,
        "media_type": "video",
        "prompt": prompt,
        "seed": seed,
        "parameters": {
            "prompt": prompt,
            "duration": duration,
            "aspect_ratio": aspect_ratio,
            **({"seed": seed} if seed is not None else {}),
        },
        "status": "succeeded",
        "result_url": result_url,
        "output_format": "mp4",
        "width": None,
        "height": None,
        **extra,
    }


def image_result(generation_id: str, result_url: str, size: int) -> dict[str, Any]:
    return {
        "generation_id": generation_id,
        "model": "black-forest-labs-flux-2-klein-4b",
        "media_type": "image",
        "prompt": "Acme Coffee: the Cold Brew Kit on a table",
        "seed": 3,
        "parameters": {"image_size": {"width": size, "height": size}, "output_format": "png"},
        "status": "succeeded",
        "result_url": result_url,
        "output_format": "png",
        "width": size,
        "height": size,
    }
