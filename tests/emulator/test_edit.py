"""Edit models (image-to-image): the input image is fetched over HTTP and comes back visibly changed."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from airflow_provider_oxen.emulator import inputs
from airflow_provider_oxen.emulator.images import ImageSpec, render_edit

from .helpers import (
    PLAIN,
    InputServer,
    aenqueue,
    assert_error,
    collect_completions,
    control,
    enqueue,
    event_stream,
    mean_difference,
    open_image,
    png_bytes,
    wait_for_status,
)

QWEN = "qwen-image-edit"
NANO_EDIT = "nano-banana-2-edit"
# Clearly changed: the mean per-channel difference from the input (0-255).
VISIBLY = 25


def test_queue_edit_fetches_the_input_and_changes_it_visibly(
    client: httpx.Client, input_server: InputServer
) -> None:
    data = png_bytes((400, 300), (20, 40, 160))
    url = input_server.add("/inputs/blue.png", data)
    hits_before = input_server.hits.count("/inputs/blue.png")
    (gid,) = enqueue(client, model=QWEN, prompt="make it sunset orange", input_image=url, seed=3)
    row = wait_for_status(client, gid, {"succeeded", "failed"})
    assert row["status"] == "succeeded", row
    assert row["media_type"] == "image" and row["model_name"] == QWEN
    assert input_server.hits.count("/inputs/blue.png") == hits_before + 1

    download = PLAIN.get(row["result_url"])
    assert download.headers["content-type"] == "image/png"
    assert "/image-0.png?" in row["result_url"]
    edited, original = open_image(download.content), open_image(data)
    assert (edited.format, edited.size) == ("PNG", original.size)
    assert mean_difference(edited, original) > VISIBLY
    details = client.get(f"/api/ai/generations/{gid}").json()
    assert details["cost"] == "0.0300" and details["parameters"]["input_image"] == url


def test_sync_edit_answers_like_generate_and_keeps_the_input_size(
    client: httpx.Client, input_server: InputServer
) -> None:
    first = input_server.add("/inputs/wide.jpg", png_bytes((640, 360), (200, 30, 30), "JPEG"), "image/jpeg")
    # A presigned URL (an encoded key, a signed query) is fetched exactly as given.
    second = input_server.add("/inputs/ref%20one.png", png_bytes((100, 100), (30, 200, 30)))
    second += "?X-Amz-Expires=600&X-Amz-Signature=5ec12e7"
    response = client.post(
        "/api/ai/images/edit",
        json={
            "model": NANO_EDIT,
            "prompt": "put the green thing on the red one",
            "input_image": [first, second],
            "output_format": "jpeg",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "created", "images"} and body["model"] == NANO_EDIT
    (item,) = body["images"]
    edited = open_image(PLAIN.get(item["url"]).content)
    assert (edited.format, edited.size) == ("JPEG", (640, 360))
    assert mean_difference(edited, open_image(input_server.files["/inputs/wide.jpg"][0])) > VISIBLY
    assert second.removeprefix(input_server.url) in input_server.hits

    b64 = client.post(
        "/api/ai/images/edit",
        json={"model": QWEN, "prompt": "grey", "input_image": second, "response_format": "b64_json"},
    )
    assert b64.status_code == 200, b64.text
    image = open_image(base64.b64decode(b64.json()["images"][0]["b64_json"]))
    assert image.size == (100, 100)
    history = client.get("/api/ai/generations", params={"model": NANO_EDIT}).json()
    assert history["count"] == 1 and history["total_cost"] == "0.0390"


def test_edits_are_deterministic_per_generation() -> None:
    data = png_bytes((64, 48), (128, 128, 128))
    spec = ImageSpec("tint", 5, 0, 0, "png", QWEN, "gen-1", inputs=(data,))
    assert render_edit(spec) == render_edit(spec)
    other = ImageSpec("tint", 5, 0, 0, "png", QWEN, "gen-2", inputs=(data,))
    assert render_edit(other) != render_edit(spec)
    # A grey input changes colour too (not only the text drawn on it).
    assert mean_difference(open_image(render_edit(spec)), open_image(data)) > VISIBLY


@pytest.mark.asyncio
async def test_an_input_that_is_not_an_image_fails_with_a_failure_event(
    base_url: str, input_server: InputServer
) -> None:
    text = input_server.add("/inputs/page.html", b"<html>not a picture</html>", "text/html")
    async with event_stream(base_url) as (http, stream):
        (gid,) = await aenqueue(http, model=NANO_EDIT, prompt="x", input_image=[text])
        event = (await collect_completions(stream, {gid}))[gid]
    assert event["status"] == "failed" and event["media_type"] == "image"
    assert event["error"].startswith("input_image[0]: ") and "not a readable image" in event["error"]


def test_an_unfetchable_input_is_refused_by_a_sync_edit_and_fails_a_queued_one(
    client: httpx.Client, base_url: str, input_server: InputServer
) -> None:
    """Named by its place in ``input_image``, never with the URL's signature; nothing is spent."""
    control(base_url, "POST", "/config", {"credits": "1.0000"})
    unreachable = "http://127.0.0.1:9/gone.png?X-Amz-Signature=s3cr3t"  # nothing listens there
    sync = client.post("/api/ai/images/edit", json={"model": QWEN, "prompt": "x", "input_image": unreachable})
    assert "s3cr3t" not in assert_error(sync, 400, "invalid_params", "input_image: could not fetch")
    good = input_server.add("/inputs/ok.png", png_bytes((50, 50), (1, 2, 3)))
    missing = {
        "model": NANO_EDIT,
        "prompt": "x",
        "input_image": [good, f"{input_server.url}/inputs/nope.png"],
    }
    assert_error(
        client.post("/api/ai/images/edit", json=missing), 400, "invalid_params", "input_image[1]:", "HTTP 404"
    )

    (gid,) = enqueue(client, model=QWEN, prompt="x", input_image=unreachable)
    row = wait_for_status(client, gid, {"succeeded", "failed"})
    assert row["status"] == "failed"
    message = row["error_message"]
    assert message.startswith("input_image: could not fetch http://127.0.0.1:") and "/gone.png" in message
    assert "s3cr3t" not in message
    assert client.get(f"/api/ai/generations/{gid}").json()["cost"] == "0.0000"
    assert control(base_url, "GET", "/config")["credits"] == "1.0000"  # held, then given back
    stats = control(base_url, "GET", "/stats")
    assert stats["generations_created"] == 1 and stats["credits_spent"] == "0.0000"


def test_a_slow_input_delays_success_times_out_or_is_cancelled_with_its_row(
    client: httpx.Client, base_url: str, input_server: InputServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_ok = input_server.add("/inputs/slow-ok.png", png_bytes((32, 32), (9, 90, 9)), delay=0.5)
    slow = input_server.add("/inputs/slow.png", png_bytes((32, 32), (9, 9, 9)), delay=1.5)
    # Rendering is over long before the input arrives: the row waits for it, and a cancel ends both.
    control(base_url, "POST", "/config", {"render_seconds": 0.01, "queue_seconds": 0.0})
    started = time.monotonic()
    (gid,) = enqueue(client, model=QWEN, prompt="x", input_image=slow_ok)
    row = wait_for_status(client, gid, {"succeeded", "failed"})
    assert row["status"] == "succeeded" and time.monotonic() - started >= 0.5
    assert open_image(PLAIN.get(row["result_url"]).content).size == (32, 32)
    (waiting,) = enqueue(client, model=QWEN, prompt="x", input_image=slow)
    wait_for_status(client, waiting, {"processing"})
    assert client.delete(f"/api/ai/queue/{waiting}").status_code == 200

    monkeypatch.setattr(inputs, "INPUT_TIMEOUT_SECONDS", 0.3)  # the emulator runs in this process
    (gid,) = enqueue(client, model=QWEN, prompt="x", input_image=slow)
    row = wait_for_status(client, gid, {"succeeded", "failed"})
    assert row["error_message"].startswith("input_image: could not fetch") and "0.3 s" in row["error_message"]
    time.sleep(1.6)  # the cancelled row's input has arrived by now
    row = client.get(f"/api/ai/queue/{waiting}").json()
    assert row["status"] == "cancelled" and row["error_message"] is None
    stats = control(base_url, "GET", "/stats")
    assert stats["generations_cancelled"] == 1 and stats["generations_succeeded"] == 1
