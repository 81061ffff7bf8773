"""The review tests' S3 fixtures (those of tests/transfers) and their image record builder."""

from __future__ import annotations

from typing import Any

from tests.transfers.conftest import aws_conn, bucket, moto_endpoint, s3_calls, s3_client

__all__ = ["aws_conn", "bucket", "image_record", "moto_endpoint", "s3_calls", "s3_client"]

SIGNED = "https://hub.oxen.example/results/{}.png?expires=1767225600&signature=0xdeadbeef"


def image_record(
    generation_id: str,
    prompt: str,
    image_size: str,
    size: tuple[int, int],
    *,
    ok: bool = True,
    seed: int | None = 7,
    bucket: str = "oxen-campaigns",
) -> dict[str, Any]:
    """A stored image's record, as the S3 transfer returns it (checks failed unless ``ok``)."""
    return {
        "generation_id": generation_id,
        "prompt": prompt,
        "seed": seed,
        "parameters": {"image_size": image_size, "input_image": SIGNED.format("input")},
        "width": size[0],
        "height": size[1],
        # What the records of older transfers could hold: never shown, signed or not.
        "result_url": SIGNED.format(generation_id),
        "s3_uri": f"s3://{bucket}/campaigns/run1/{generation_id}.png",
        "s3_key": f"campaigns/run1/{generation_id}.png",
        "checks": {
            "ok": ok,
            "problems": [] if ok else ["wrong size: expected 1024x576, got 512x512"],
            "width": size[0] if ok else 512,
            "height": size[1] if ok else 512,
            "format": "png",
        },
    }
