"""Video over real sockets: an input presigned from moto S3, the clip stored in S3, exactly one
paid generation after a worker crash (the edit's presigned input: test_provenance.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from airflow_provider_oxen.operators.generate import OxenGenerateVideoOperator
from airflow_provider_oxen.provenance.facts import COMPOSITE
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from tests.fixtures import API_KEY, EmulatorControl, FakeTaskStateStore, exiftool_xmp
from tests.integration.helpers import defer, run_trigger, task_context
from tests.transfers.helpers import transfer_context

I2V_MODEL = "kling-video-o3-pro-reference-to-video"


def test_a_clip_after_a_worker_crash_is_paid_once_and_stored_as_video(
    oxen_conn: EmulatorControl, aws_conn: str, key_visual: str, s3_client: Any, bucket: str
) -> None:
    import av

    oxen_conn.configure(video_render_seconds=1.0)
    store = FakeTaskStateStore()

    def clip() -> OxenGenerateVideoOperator:
        return OxenGenerateVideoOperator(
            task_id="clip",
            model=I2V_MODEL,
            prompt="Slow push-in",
            input_images=key_visual,
            parameters={"duration": 3, "aspect_ratio": "16:9"},
            poll_interval=0.2,
            deferrable=True,
        )

    class _Died(BaseException):
        pass

    def die(*args: Any, **kwargs: Any) -> None:
        raise _Died

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OxenGenerateVideoOperator, "defer", die)
        with pytest.raises(_Died):
            clip().execute(task_context(store, try_number=1))
    # The retry presigns the input afresh (another signature) and still resumes, paying nothing.
    trigger = defer(clip(), task_context(store, try_number=2)).trigger
    assert oxen_conn.stats()["generations_created"] == 1 and oxen_conn.enqueue_posts() == 1
    [result] = clip().execute_complete(task_context(store, try_number=2), run_trigger(trigger))
    assert (result["media_type"], result["output_format"]) == ("video", "mp4")
    assert API_KEY not in repr(result)

    [record] = OxenGenerationToS3Operator(
        task_id="store_media", results=[result], bucket=bucket, prefix="follow-up"
    ).execute(transfer_context())
    head = s3_client.head_object(Bucket=bucket, Key=record["s3_key"])
    assert head["ContentType"] == "video/mp4" and record["s3_key"].endswith(".mp4")
    body = s3_client.get_object(Bucket=bucket, Key=record["s3_key"])["Body"].read()
    with av.open(io.BytesIO(body)) as video:  # marked, and still every frame decodes
        assert sum(1 for _ in video.decode(video=0)) == 3 * 8  # 3 s at the emulator's 8 fps
    read = exiftool_xmp(body)
    assert (read["DigitalSourceType"], read["IngredientsFilePath"]) == (COMPOSITE, key_visual)
    poster = s3_client.get_object(Bucket=bucket, Key=record["poster_s3_key"])["Body"].read()
    assert Image.open(io.BytesIO(poster)).format == "JPEG"
    assert exiftool_xmp(poster)["DocumentID"] == f"oxen:generation:{result['generation_id']}"
