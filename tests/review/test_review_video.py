"""Video clips in the review (titles, descriptions, poster rows, checks) and the video module."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from airflow_provider_oxen.media.checks import CheckSettings
from airflow_provider_oxen.media.contact_sheet import SheetItem, make_contact_sheet, sheet_size
from airflow_provider_oxen.media.video import (
    NOT_CHECKED,
    ExpectedVideo,
    VideoCheck,
    decode_video,
    duration_text,
    evaluate_video,
    is_video,
    poster_key,
    requested_duration,
)
from airflow_provider_oxen.operators.review import decide
from airflow_provider_oxen.review_form import (
    checks_text,
    count_text,
    default_decision,
    image_description,
    image_title,
    label_for,
    review_body,
)
from tests.review.conftest import image_record
from tests.transfers.helpers import make_clip

X = "\N{MULTIPLICATION SIGN}"
PROMPT = "Acme Coffee campaign clip for Cold Brew Kit: ice tumbling into a glass carafe, slow pan."
LABELS = {PROMPT: "Cold Brew Kit"}
BUCKET = "oxen-campaigns"


def _clip(generation_id: str = "9f1e0c2a-0001", *, checks: Any = "ok", **extra: Any) -> dict[str, Any]:
    key = f"campaigns/run1/{generation_id}.mp4"
    if checks == "ok":
        checks = VideoCheck(
            ok=True,
            width=1280,
            height=720,
            format="mp4",
            codec="h264",
            frames=40,
            fps=8.0,
            duration_seconds=5.0,
        ).to_dict()
    return {
        "generation_id": generation_id,
        "media_type": "video",
        "model": "kling-video-v2-6-pro-text-to-video",
        "prompt": PROMPT,
        "seed": 11,
        "parameters": {"prompt": PROMPT, "duration": "5", "aspect_ratio": "16:9"},
        "output_format": "mp4",
        "s3_key": key,
        "s3_uri": f"s3://{BUCKET}/{key}",
        "poster_s3_key": key + ".poster.jpg",
        "poster_s3_uri": f"s3://{BUCKET}/{key}.poster.jpg",
        "checks": checks,
        **extra,
    }


IMAGE = image_record("82d2c347-0002", PROMPT, "square_hd", (1024, 1024))


def _links(uri: str | None) -> str | None:
    return f"https://s3.example/{uri.rsplit('/', 1)[-1]}?X-Amz-Signature=s" if uri else None


def test_a_clips_title_says_it_is_a_video_with_its_shape_and_length() -> None:
    assert image_title(0, _clip(), LABELS) == "Clip 1 — Cold Brew Kit, 16:9, 5 s"
    assert image_title(1, IMAGE, LABELS) == "Image 2 — Cold Brew Kit, 1:1"
    # Not checked (no PyAV): the requested duration; no aspect ratio asked for: the pixels, if known.
    unchecked = _clip(checks=VideoCheck.not_checked().to_dict(), parameters={"duration": "10"})
    assert image_title(2, unchecked, LABELS) == "Clip 3 — Cold Brew Kit, 10 s"
    described = image_description(_clip())
    assert described.startswith(f"16:9, 1280{X}720 px · 5 s, 40 frames at 8 fps · seed 11 · checks passed.")
    assert described.endswith(PROMPT)


def test_an_unchecked_clip_says_why_and_defaults_to_approve() -> None:
    record = _clip(checks=VideoCheck.not_checked().to_dict())
    assert checks_text(record) == NOT_CHECKED
    assert default_decision(record) == "approve"
    assert decide([record], ["Apply per-image decisions"], {}) == {record["generation_id"]: "approve"}
    failed = _clip(checks=VideoCheck(ok=False, problems=["lasts 3 s, expected 5 s"]).to_dict())
    assert default_decision(failed) == "reject" and checks_text(failed) == "FAILED: lasts 3 s, expected 5 s"


def test_the_body_shows_each_clips_poster_linked_to_the_clip() -> None:
    records = [
        _clip(),
        IMAGE,
        _clip("9f1e0c2a-0003", checks=VideoCheck(ok=False, problems=["x"]).to_dict()),
    ]
    body = review_body(records, labels=LABELS, link=_links, contact_sheet_uri=f"s3://{BUCKET}/sheet.png")
    assert body.startswith(
        "**1 image and 2 clips** to review, one per row: click a preview to open the full-size"
    )
    assert "or a poster frame to play its clip." in body
    assert "[contact sheet, all 1 image and 2 clips on one page][contact-sheet]" in body
    assert "**Failed the automatic checks, defaulting to reject:** clip 3." in body
    assert "| # | Preview | Image or clip |" in body
    rows = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    # The poster frame is headed by a play mark inside its link: it reads as a video.
    assert rows[0].startswith("| 1 | [▶ Play ![Clip 1 — Cold Brew Kit, 16:9, 5 s][poster-1]][clip-1] | ")
    assert "Length 5 s, 40 frames at 8 fps" in rows[0] and "▶ [Play the clip][clip-1]" in rows[0]
    assert "File `9f1e0c2a-0001.mp4`" in rows[0]
    assert rows[1].startswith("| 2 | [![Image 2 — Cold Brew Kit, 1:1][image-2]][image-2] |")
    # Each presigned URL once, as a reference: the poster frame's and the clip's.
    for name in ("9f1e0c2a-0001.mp4", "9f1e0c2a-0001.mp4.poster.jpg"):
        url = _links(f"s3://{BUCKET}/campaigns/run1/{name}")
        assert body.count(url or "") == 1
    assert f"[poster-1]: {_links(records[0]['poster_s3_uri'])}" in body
    assert f"[clip-1]: {_links(records[0]['s3_uri'])}" in body


def test_a_clip_without_a_poster_frame_still_links_to_the_clip() -> None:
    record = _clip(checks=VideoCheck.not_checked().to_dict(), poster_s3_key=None, poster_s3_uri=None)
    body = review_body([record], labels=LABELS, link=_links)
    assert "**1 clip** to review, one per row: click a poster frame to play its clip." in body
    assert "| 1 | [▶ play the clip][clip-1] (no poster frame) |" in body
    assert "Checks - not checked \\(install the video extra\\)" in body
    assert "| no preview |" in review_body([record], labels=LABELS)  # no links: nothing to show
    assert count_text([_clip(), IMAGE]) == "1 image and 1 clip" and count_text([]) == "0 images"


# -- the video module ----------------------------------------------------------------------------------


def test_media_type_decides_what_is_a_clip() -> None:
    assert is_video({"media_type": "video"}) and not is_video({"media_type": "image", "output_format": "mp4"})
    assert not is_video({"output_format": "mp4"}) and not is_video({})
    assert poster_key("a/b.mp4") == "a/b.mp4.poster.jpg"
    assert duration_text(5.0) == "5 s" and duration_text(7.54) == "7.5 s" and duration_text(None) is None
    assert requested_duration({"parameters": {"duration": "10"}}) == 10.0
    assert requested_duration({"parameters": {"duration": "soon"}}) is None


def test_every_video_problem_is_listed(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "clip.mp4", seconds=2)
    decoded = decode_video(io.BytesIO(data))
    check = evaluate_video(
        decoded,
        len(data),
        ExpectedVideo(640, 360, "webm", 5.0),
        CheckSettings(min_bytes=10**6, max_video_bytes=10**7),
    )
    assert check.ok is False
    assert check.problems == [
        f"size {len(data)} B is below the minimum of 1000000 B",
        "is 320x180, expected 640x360",
        "format is mp4, expected webm",
        "lasts 2 s, expected 5 s",
    ]
    # Within max(0.5 s, 10 %) of the request passes; the checks can be turned off one by one.
    assert evaluate_video(
        decoded, len(data), ExpectedVideo(duration_seconds=2.4), CheckSettings(min_bytes=0)
    ).ok
    relaxed = CheckSettings(min_bytes=0, check_dimensions=False, check_format=False, check_duration=False)
    assert evaluate_video(decoded, len(data), ExpectedVideo(640, 360, "webm", 5.0), relaxed).ok
    too_big = evaluate_video(
        decoded, len(data), ExpectedVideo(), CheckSettings(min_bytes=0, max_video_bytes=10)
    )
    assert too_big.problems == [f"size {len(data)} B is above the video maximum of 10 B"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not a video at all" * 100, "does not decode as a video"),
        (None, "video data is corrupt or truncated after"),
    ],
)
def test_broken_clips_fail_the_decode_check(tmp_path: Path, data: bytes | None, problem: str) -> None:
    if data is None:  # damage in the middle of the frame data (the index is intact)
        good = make_clip(tmp_path / "clip.mp4")
        data = good[:3000] + bytes(200) + good[3200:]
    decoded = decode_video(io.BytesIO(data))
    check = evaluate_video(decoded, len(data), ExpectedVideo(), CheckSettings(min_bytes=0))
    assert check.ok is False and check.problems[0].startswith(problem), check.problems


def test_the_contact_sheet_captions_clips_and_marks_them() -> None:
    poster = Image.new("RGB", (320, 180), (200, 40, 40))
    items = [
        SheetItem(
            image=poster,
            generation_id="9f1e0c2a",
            prompt="clip",
            ok=True,
            media_type="video",
            duration_seconds=5,
        ),
        SheetItem(image=None, generation_id="9f1e0c2b", media_type="video", note=NOT_CHECKED),
        SheetItem(image=Image.new("RGB", (64, 64), "white"), generation_id="82d2c347", ok=True),
    ]
    assert [item.kind_text for item in items] == ["video, 5 s", "video", None]
    sheet = Image.open(io.BytesIO(make_contact_sheet(items, columns=3, thumb=128)))
    assert sheet.size == sheet_size(3, columns=3, thumb=128)
    # The poster (thumbnailed to 128x72, centred in the 128 px box at (8, 8)) is in the first cell,
    # with the play mark's dark disc (radius 10, 4 px in) in its lower left corner.
    pixels = sheet.convert("RGB")
    top, bottom = 8 + (128 - 72) // 2, 8 + (128 - 72) // 2 + 72
    assert pixels.getpixel((8 + 100, top + 10)) == (200, 40, 40)
    centre = (8 + 10 + 4, bottom - 10 - 4)
    disc = pixels.getpixel((centre[0] - 7, centre[1]))
    assert max(disc) < 100, disc
    assert pixels.getpixel((centre[0] + 1, centre[1])) == (255, 255, 255)  # the triangle


def test_the_follow_up_review_keeps_the_key_visuals_product_in_its_titles() -> None:
    """The variants' and the clip's prompts name no product: the campaign DAG carries the label of
    the approved key visual (its stored record's prompt) to the follow-up review."""
    path = Path(__file__).parents[2] / "dags" / "oxen_marketing_campaign.py"
    module_spec = importlib.util.spec_from_file_location("campaign_dag_under_test", path)
    assert module_spec is not None and module_spec.loader is not None
    campaign = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(campaign)
    spec = yaml.safe_load((path.parent / "campaigns" / "spring_roast.yaml").read_text())
    stored = [
        {"prompt": r["prompt"], "s3_key": f"campaigns/run1/g{i}.png"}
        for i, r in enumerate(campaign.build_prompts(spec))
    ]
    # The first approved image is the third stored one (a Cold Brew Kit image), published elsewhere.
    outcome = {"approved": ["s3://oxen-campaigns/approved/2026-05-01/g2.png"]}
    visual = campaign.dag.get_task("key_visual").python_callable(outcome, spec, stored)
    labels = campaign.dag.get_task("media_labels").python_callable(visual)
    follow_up = [*spec["follow_up"]["variants"]["prompts"], spec["follow_up"]["clip"]["prompt"]]
    assert [label_for({"prompt": p}, labels) for p in follow_up] == ["Cold Brew Kit"] * 3
