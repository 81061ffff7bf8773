"""Video models: real H.264 MP4 files (frame count = duration x 8), priced per second, through the
queue (rows and events say ``media_type: video``) and the sync ``/api/ai/videos/generate``."""

from __future__ import annotations

import base64

import httpx
import pytest

from .helpers import (
    PLAIN,
    InputServer,
    aenqueue,
    collect_completions,
    control,
    decode_video,
    enqueue,
    event_stream,
    mean_difference,
    open_image,
    png_bytes,
    wait_for_status,
)

T2V = "kling-video-v2-6-pro-text-to-video"
I2V = "kling-video-o3-pro-reference-to-video"
FPS = 8


def _download(url: str) -> bytes:
    response = PLAIN.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return response.content


@pytest.mark.asyncio
async def test_queued_video_is_a_real_mp4_and_says_video_everywhere(base_url: str) -> None:
    async with event_stream(base_url, timeout=10) as (http, stream):
        body = {"model": T2V, "prompt": "a paper boat on a river", "duration": 3, "aspect_ratio": "9:16"}
        (gid,) = await aenqueue(http, **body)
        listed = (await http.get("/api/ai/queue", params={"media_type": "video"})).json()
        assert [row["generation_id"] for row in listed["generations"]] == [gid]
        assert listed["generations"][0]["media_type"] == "video"
        event = (await collect_completions(stream, {gid}, timeout=10))[gid]
        row = (await http.get(f"/api/ai/queue/{gid}")).json()
        details = (await http.get(f"/api/ai/generations/{gid}")).json()
        images_only = (await http.get("/api/ai/generations", params={"media_type": "image"})).json()

    assert event["status"] == "succeeded" and event["media_type"] == "video" and event["model"] == T2V
    assert row["status"] == "succeeded" and row["media_type"] == "video" and row["model_name"] == T2V
    assert "/video-0.mp4?" in row["result_url"] and "/video-0.mp4?" in event["url"]
    assert details["cost"] == "0.2100" and details["media_type"] == "video"  # 0.0700 x 3 s
    assert images_only["count"] == 0

    facts, frames = decode_video(_download(event["url"]))
    assert facts["format"].startswith("mov,mp4")
    assert (facts["codec"], facts["pix_fmt"], facts["size"]) == ("h264", "yuv420p", (180, 320))
    assert facts["rate"] == FPS and facts["streams"] == ["audio", "video"]  # generate_audio defaults to true
    assert len(frames) == 3 * FPS
    # Frames differ visibly: a bar sweeps across and the caption's clock runs.
    assert mean_difference(frames[1], frames[-1]) > 3


def test_sync_video_with_multi_prompt(client: httpx.Client, base_url: str) -> None:
    response = client.post(
        "/api/ai/videos/generate",
        json={
            "model": T2V,
            "multi_prompt": ["a seed in the soil", "a sprout", "a tree"],
            "duration": 4,
            "aspect_ratio": "1:1",
            "generate_audio": False,
            "seed": 11,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "created", "videos"} and body["model"] == T2V
    (item,) = body["videos"]
    facts, frames = decode_video(_download(item["url"]))
    assert facts["size"] == (240, 240) and facts["streams"] == ["video"] and len(frames) == 4 * FPS
    assert control(base_url, "GET", "/stats")["generations_succeeded"] == 1

    (details,) = client.get("/api/ai/generations", params={"model": T2V}).json()["generations"]
    assert details["cost"] == "0.2800" and details["source"] == "sync" and details["prompt"] is None
    assert details["parameters"]["multi_prompt"][2] == "a tree"

    b64 = client.post(
        "/api/ai/videos/generate", json={"model": T2V, "prompt": "rain", "response_format": "b64_json"}
    )
    assert b64.status_code == 200, b64.text
    facts, frames = decode_video(base64.b64decode(b64.json()["videos"][0]["b64_json"]))
    assert facts["size"] == (320, 180) and len(frames) == 5 * FPS  # the defaults: 16:9, 5 s


def test_image_to_video_starts_from_the_fetched_input(
    client: httpx.Client, input_server: InputServer
) -> None:
    data = png_bytes((640, 360), (200, 60, 20))
    url = input_server.add("/inputs/first-frame.png", data)
    (gid,) = enqueue(client, model=I2V, prompt="the square flies away", input_image=url, duration=3)
    row = wait_for_status(client, gid, {"succeeded", "failed"}, timeout=10)
    assert row["status"] == "succeeded", row
    assert input_server.hits.count("/inputs/first-frame.png") >= 1
    facts, frames = decode_video(_download(row["result_url"]))
    assert facts["size"] == (320, 180) and len(frames) == 3 * FPS
    # The first frame is the input (scaled to the frame; lossy H.264), later ones are not.
    expected = open_image(data).resize((320, 180))
    assert mean_difference(frames[0], expected) < 12
    assert mean_difference(frames[-1], expected) > mean_difference(frames[0], expected) + 3
    assert client.get(f"/api/ai/generations/{gid}").json()["cost"] == "0.3360"  # 0.1120 x 3 s
