"""Video results through the S3 transfer, review and publish: real MP4 clips (made with PyAV),
served by a stand-in for Oxen on loopback, stored in a real (moto) S3 server."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from airflow_provider_oxen.exceptions import OxenCheckFailedError, OxenKeyConflictError, OxenKeyError
from airflow_provider_oxen.media.contact_sheet import PAD, make_thumbnail, sheet_size
from airflow_provider_oxen.media.video import NOT_CHECKED, VideoCheck, decode_video
from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator
from airflow_provider_oxen.operators.review import OxenImageReviewOperator
from airflow_provider_oxen.transfers.store import sha256_base64
from tests.emulator.helpers import decode_video as decode_frames
from tests.emulator.helpers import mean_difference
from tests.fixtures import FileServer, png_bytes
from tests.transfers.conftest import S3Calls
from tests.transfers.helpers import CLIP_MODEL, image_result, list_keys, make_clip, object_bytes, video_result
from tests.transfers.helpers import run_transfer as _run
from tests.transfers.helpers import s3_operator as _operator

RUN_SLUG = "manual__2026-05-01T09-30-00-00-00"
MANIFEST_KEY = f"campaigns/manifest-{RUN_SLUG}.json"
SHEET_KEY = f"campaigns/contact-sheet-{RUN_SLUG}.png"
CLIP_ID, IMAGE_ID, TALL_ID = "clip-aaaa-0001", "img-bbbb-0002", "clip-cccc-0003"


@pytest.fixture
def batch(tmp_path: Path, fake_oxen: FileServer) -> list[dict[str, Any]]:
    """A 16:9 clip (320x180, 8 fps, 5 s = 40 frames), a PNG, and a 9:16 clip (3 s = 24 frames)."""
    clip, tall = (
        make_clip(tmp_path / "clip-a.mp4"),
        make_clip(tmp_path / "c.mp4", width=180, height=320, seconds=3),
    )
    still = fake_oxen.add_result(IMAGE_ID, png_bytes((64, 64), None), "still.png", "image")
    return [
        video_result(CLIP_ID, fake_oxen.add_result(CLIP_ID, clip, "clip-a.mp4")),
        image_result(IMAGE_ID, still, 64),
        video_result(
            TALL_ID, fake_oxen.add_result(TALL_ID, tall, "c.mp4"), duration="3", aspect_ratio="9:16"
        ),
    ]


def test_clips_are_stored_checked_and_get_a_poster_frame_and_a_rerun_is_a_no_op(
    fake_oxen: FileServer,
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    batch: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    capfd.readouterr()
    records = _run(_operator(batch, bucket))
    log = capfd.readouterr().out
    clip, image, tall = records

    # The clip: an .mp4 key, video/mp4, the same metadata as an image, the served bytes with
    # the XMP box appended.
    assert clip["s3_key"] == f"campaigns/{CLIP_ID}.mp4" and clip["action"] == "stored"
    data = object_bytes(s3_client, bucket, clip["s3_key"])
    served = (tmp_path / "clip-a.mp4").read_bytes()
    assert data.startswith(served) and clip["oxen_sha256"] == hashlib.sha256(served).hexdigest()
    assert clip["sha256"] == hashlib.sha256(data).hexdigest() and clip["size_bytes"] == len(data)
    head = s3_client.head_object(Bucket=bucket, Key=clip["s3_key"], ChecksumMode="ENABLED")
    assert head["ContentType"] == "video/mp4" and clip["content_type"] == "video/mp4"
    assert head["ChecksumSHA256"] == sha256_base64(clip["sha256"])
    assert head["Metadata"] == {
        "generation-id": CLIP_ID,
        "model": CLIP_MODEL,
        "prompt-sha256": hashlib.sha256(batch[0]["prompt"].encode()).hexdigest(),
        "seed": "11",
        "sha256": clip["sha256"],
        "oxen-sha256": clip["oxen_sha256"],
        "provenance": "marked",
    }
    # A decoder opens the stored object: every frame is there.
    frames = decode_frames(data)[1]
    assert len(frames) == 40
    assert clip["checks"] == {
        "ok": True,
        "problems": [],
        "width": 320,
        "height": 180,
        "format": "mp4",
        "codec": "h264",
        "frames": 40,
        "fps": 8.0,
        "duration_seconds": 5.0,
        "note": None,
    }
    assert tall["checks"]["ok"] and (tall["checks"]["frames"], tall["checks"]["duration_seconds"]) == (
        24,
        3.0,
    )
    assert image["s3_key"] == f"campaigns/{IMAGE_ID}.png" and image["checks"]["ok"]
    assert "poster_s3_key" not in image

    # The poster frame: a JPEG of the clip's size next to it, its middle frame (20 of 40).
    poster_key = f"campaigns/{CLIP_ID}.mp4.poster.jpg"
    assert clip["poster_s3_key"] == poster_key and clip["poster_s3_uri"] == f"s3://{bucket}/{poster_key}"
    assert clip["poster_action"] == "stored"
    poster_bytes = object_bytes(s3_client, bucket, poster_key)
    assert clip["poster_sha256"] == hashlib.sha256(poster_bytes).hexdigest()
    assert clip["poster_size_bytes"] == len(poster_bytes)
    poster = Image.open(io.BytesIO(poster_bytes))
    assert poster.format == "JPEG" and poster.size == (320, 180)
    assert mean_difference(poster, frames[20]) < 3 < mean_difference(poster, frames[0])
    poster_head = s3_client.head_object(Bucket=bucket, Key=poster_key)
    assert poster_head["ContentType"] == "image/jpeg"
    assert poster_head["Metadata"]["kind"] == "oxen-poster"
    assert poster_head["Metadata"]["generation-id"] == CLIP_ID
    assert poster_head["Metadata"]["source-sha256"] == clip["sha256"]
    assert Image.open(io.BytesIO(object_bytes(s3_client, bucket, tall["poster_s3_key"]))).size == (180, 320)

    # Bare result URLs: a fresh signed one was read from "Oxen" for each result, then downloaded.
    assert (fake_oxen.count("/api/ai/queue/"), fake_oxen.count("/files/")) == (3, 3)
    # Three files, two poster frames, the contact sheet and the manifest.
    assert s3_calls.uploads == 7
    assert list_keys(s3_client, bucket) == sorted(
        [r["s3_key"] for r in records]
        + [clip["poster_s3_key"], tall["poster_s3_key"], MANIFEST_KEY, SHEET_KEY]
    )

    manifest = json.loads(object_bytes(s3_client, bucket, MANIFEST_KEY))
    assert manifest["count"] == 3 and manifest["checks"]["passed"] == 3
    entry = manifest["images"][0]
    assert entry["media_type"] == "video" and entry["s3_key"] == clip["s3_key"]
    for field in ("poster_s3_key", "poster_s3_uri", "poster_sha256", "poster_size_bytes", "checks"):
        assert entry[field] == clip[field]
    assert "poster_action" not in entry and "action" not in entry
    assert "signature" not in json.dumps(manifest) + json.dumps(records)

    # The contact sheet shows the poster frame (thumbnailed) in the clip's cell, next to the image.
    sheet = Image.open(io.BytesIO(object_bytes(s3_client, bucket, SHEET_KEY)))
    assert sheet.size == sheet_size(3, columns=4, thumb=256)
    thumbnail = make_thumbnail(frames[20], 256)
    assert thumbnail.size == (256, 144)
    left, top = PAD, PAD + (256 - 144) // 2
    region = (128, 0, 256, 72)  # the upper right quarter: away from the play mark
    cell = sheet.convert("RGB").crop((left, top, left + 256, top + 144))
    assert mean_difference(cell.crop(region), thumbnail.crop(region)) < 1

    assert log.count("(poster frame,") == 2
    assert "Done: 3 file(s), 3 stored, 0 replaced, 0 skipped, 0 failed checks" in log

    # A re-run is a no-op: nothing downloaded, nothing written.
    s3_calls.reset()
    second = _run(_operator(batch, bucket))
    assert s3_calls.changes == 0 and fake_oxen.count("/files/") == 3
    assert [r["action"] for r in second] == ["skipped"] * 3
    assert [r.get("poster_action") for r in second] == ["skipped", None, "skipped"]
    strip = ("action", "poster_action")
    assert [{k: v for k, v in r.items() if k not in strip} for r in second] == [
        {k: v for k, v in r.items() if k not in strip} for r in records
    ]

    # Without checks or a contact sheet, S3's checksums prove clip and poster: HEAD requests only.
    s3_calls.reset()
    third = _run(_operator(batch, bucket, checks=False, contact_sheet=False))
    assert s3_calls.counts["GetObject"] == 0 and fake_oxen.count("/files/") == 3
    assert [r.get("poster_action") for r in third] == ["skipped", None, "skipped"]
    assert [r["action"] for r in third] == ["skipped"] * 3 and {r["checks"] is None for r in third} == {True}
    assert third[0]["poster_sha256"] == clip["poster_sha256"]
    assert s3_calls.keys.get("PutObject") == [MANIFEST_KEY]  # the manifest now says checks: null


def test_without_pyav_a_clip_is_stored_and_its_checks_say_not_checked(
    fake_oxen: FileServer,
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = make_clip(tmp_path / "clip-a.mp4")
    results = [video_result(CLIP_ID, fake_oxen.add_result(CLIP_ID, data, "clip-a.mp4"))]
    capfd.readouterr()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
        [record] = _run(_operator(results, bucket, fail_on_check_failure=True))
    log = capfd.readouterr().out

    assert record["action"] == "stored" and record["s3_key"] == f"campaigns/{CLIP_ID}.mp4"
    # Marked all the same: appending a box needs no decoder.
    assert object_bytes(s3_client, bucket, record["s3_key"]).startswith(data)
    assert record["provenance"]["state"] == "marked"
    assert record["content_type"] == "video/mp4"  # what the server said, as PyAV could not look
    assert record["checks"] == VideoCheck.not_checked().to_dict()
    assert record["checks"]["ok"] is None and record["checks"]["note"] == NOT_CHECKED
    assert record["poster_s3_key"] is None and record["poster_s3_uri"] is None
    assert list_keys(s3_client, bucket) == sorted([record["s3_key"], MANIFEST_KEY, SHEET_KEY])
    manifest = json.loads(object_bytes(s3_client, bucket, MANIFEST_KEY))
    assert manifest["checks"]["not_checked"] == 1 and manifest["checks"]["failed"] == 0
    assert "PyAV is not installed" in log and f"checks: {NOT_CHECKED}" in log

    # With PyAV back, the stored clip is read back (not downloaded again), checked, and posted.
    downloads = fake_oxen.count("/files/")
    [again] = _run(_operator(results, bucket))
    assert again["action"] == "skipped" and again["checks"]["ok"] is True
    assert again["poster_action"] == "stored" and fake_oxen.count("/files/") == downloads


def test_clip_check_failures_are_listed_and_raised_after_storing(
    fake_oxen: FileServer, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    data = make_clip(tmp_path / "clip-a.mp4")
    broken = data[: len(data) // 2]  # the moov atom is at the end
    results = [
        # Asked for 10 s at 640x360; got 5 s at 320x180.
        video_result(
            CLIP_ID, fake_oxen.add_result(CLIP_ID, data, "a.mp4"), duration="10", width=640, height=360
        ),
        video_result(TALL_ID, fake_oxen.add_result(TALL_ID, broken, "broken.mp4")),
    ]
    with pytest.raises(OxenCheckFailedError, match=r"2 of 2 file\(s\) failed their checks") as info:
        _run(_operator(results, bucket, fail_on_check_failure=True))
    wrong, broken = info.value.failures
    assert wrong["checks"]["problems"] == ["is 320x180, expected 640x360", "lasts 5 s, expected 10 s"]
    assert wrong["poster_s3_key"] is not None  # it decodes: it has a poster frame
    assert broken["checks"]["problems"][0].startswith("does not decode as a video")
    assert broken["poster_s3_key"] is None and broken["content_type"] == "video/mp4"
    # Both were stored anyway, and are in the manifest.
    assert object_bytes(s3_client, bucket, broken["s3_key"]) == data[: len(data) // 2]
    manifest = json.loads(object_bytes(s3_client, bucket, MANIFEST_KEY))
    assert manifest["checks"]["failed"] == 2


def test_a_poster_key_holding_another_object_is_refused_before_any_upload(
    fake_oxen: FileServer, tmp_path: Path, s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    results = [video_result(CLIP_ID, fake_oxen.add_result(CLIP_ID, make_clip(tmp_path / "a.mp4"), "a.mp4"))]
    poster_key = f"campaigns/{CLIP_ID}.mp4.poster.jpg"
    s3_client.put_object(Bucket=bucket, Key=poster_key, Body=b"someone's still")
    s3_calls.reset()
    with pytest.raises(
        OxenKeyConflictError, match=re.escape(f"{poster_key} (the poster frame of {CLIP_ID})")
    ):
        _run(_operator(results, bucket))
    assert s3_calls.uploads == 0 and fake_oxen.count("/files/") == 0
    [record] = _run(_operator(results, bucket, replace=True))
    assert record["poster_action"] == "replaced"
    assert Image.open(io.BytesIO(object_bytes(s3_client, bucket, poster_key))).format == "JPEG"


def test_review_shows_the_poster_and_publish_moves_clip_and_poster(
    fake_oxen: FileServer, s3_client: Any, bucket: str, s3_calls: S3Calls, batch: list[dict[str, Any]]
) -> None:
    records = _run(_operator(batch, bucket))
    clip, _image, tall = records

    review = OxenImageReviewOperator(
        task_id="review",
        records=records,
        labels={batch[0]["prompt"]: "Cold Brew Kit"},
        aws_conn_id="aws_default",
    )
    review._prepare(records)
    titles = [p["schema"]["title"] for name, p in review.serialized_params.items() if name != "note"]
    # What the transfer recorded (shape, length, frames) is what the review shows; the wording of
    # the body is tests/review/test_review_video.py's.
    assert titles == [
        "Clip 1 — Cold Brew Kit, 16:9, 5 s",
        "Image 2 — Acme Coffee: the Cold Brew Kit on a table, 1:1",
        "Clip 3 — Cold Brew Kit, 9:16, 3 s",
    ]
    body = review._body(records)
    assert "Length 5 s, 40 frames at 8 fps" in body
    urls = dict(re.findall(r"^\[(\S+)\]: (\S+)$", body, flags=re.MULTILINE))
    # Presigned links of our bucket: the poster is the stored JPEG, the clip the stored MP4.
    assert httpx.get(urls["poster-1"]).content == object_bytes(s3_client, bucket, clip["poster_s3_key"])
    played = httpx.get(urls["clip-1"])
    assert played.headers["content-type"] == "video/mp4" and played.content == object_bytes(
        s3_client, bucket, clip["s3_key"]
    )

    decisions = {"decisions": {CLIP_ID: "approve", IMAGE_ID: "approve", TALL_ID: "reject"}, "note": ""}
    publish = OxenPublishReviewedOperator(
        task_id="publish",
        records=records,
        review=decisions,
        bucket=bucket,
        approved_prefix="approved/run1",
        rejected_prefix="rejected/run1",
    )
    outcome = publish.execute({})
    assert outcome["approved"] == [
        f"s3://{bucket}/approved/run1/{CLIP_ID}.mp4",
        f"s3://{bucket}/approved/run1/{IMAGE_ID}.png",
    ]
    assert outcome["approved_posters"] == [f"s3://{bucket}/approved/run1/{CLIP_ID}.mp4.poster.jpg"]
    assert outcome["rejected"] == [f"s3://{bucket}/rejected/run1/{TALL_ID}.mp4"]
    assert outcome["rejected_posters"] == [f"s3://{bucket}/rejected/run1/{TALL_ID}.mp4.poster.jpg"]
    keys = set(list_keys(s3_client, bucket))
    assert {f"approved/run1/{CLIP_ID}.mp4", f"approved/run1/{CLIP_ID}.mp4.poster.jpg"} <= keys
    assert {f"rejected/run1/{TALL_ID}.mp4", f"rejected/run1/{TALL_ID}.mp4.poster.jpg"} <= keys
    assert tall["s3_key"] not in keys and tall["poster_s3_key"] not in keys  # moved, both
    assert clip["s3_key"] in keys and clip["poster_s3_key"] in keys  # copied, both
    approved_poster = object_bytes(s3_client, bucket, f"approved/run1/{CLIP_ID}.mp4.poster.jpg")
    assert hashlib.sha256(approved_poster).hexdigest() == clip["poster_sha256"]

    s3_calls.reset()
    assert publish.execute({}) == outcome  # a re-run: nothing copied, nothing deleted
    assert s3_calls.changes == 0 and set(list_keys(s3_client, bucket)) == keys

    # Poster keys are confined to the transfer's prefix and bucket like the files themselves.
    for change, message in [
        (
            {"poster_s3_key": "elsewhere/x.jpg", "poster_s3_uri": None},
            "'elsewhere/x.jpg' is outside the prefix",
        ),
        ({"poster_s3_uri": f"s3://other/{clip['poster_s3_key']}"}, "names the poster frame 's3://other/"),
    ]:
        with pytest.raises(OxenKeyError, match=re.escape(message)):
            OxenPublishReviewedOperator(
                task_id="publish",
                records=[{**clip, **change}],
                review={"decisions": {CLIP_ID: "reject"}, "note": ""},
                bucket=bucket,
                approved_prefix="approved/run2",
                rejected_prefix="rejected/run2",
            ).execute({})
        assert s3_calls.changes == 0 and set(list_keys(s3_client, bucket)) == keys


def test_the_poster_frame_of_a_clip_without_frame_count_is_found_by_counting(tmp_path: Path) -> None:
    """A raw H.264 stream declares neither frame count nor duration: the frames are counted first."""
    make_clip(tmp_path / "raw.h264", container="h264")
    posters: list[Image.Image] = []
    decoded = decode_video(str(tmp_path / "raw.h264"), on_poster=posters.append)
    assert decoded.error is None and decoded.frames == 40 and decoded.declared_frames is None
    assert len(posters) == 1
    reference = make_clip(tmp_path / "ref.mp4")
    assert mean_difference(posters[0], decode_frames(reference)[1][20]) < 1
