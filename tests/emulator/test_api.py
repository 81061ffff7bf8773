"""The emulated Oxen API: auth, the error envelope, sync generation, result files, recording."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from .helpers import API_KEY, AUTH, PLAIN, assert_error, control, enqueue, open_image, wait_for_status


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": API_KEY},
    ],
    ids=["missing", "empty", "blank-token", "wrong", "no-scheme"],
)
def test_api_requires_the_bearer_key(base_url: str, headers: dict[str, str]) -> None:
    response = PLAIN.post(
        f"{base_url}/api/ai/queue", headers=headers, json={"model": "ideogram-v4", "prompt": "x"}
    )
    assert response.json() == {
        "error": {
            "type": "unauthenticated",
            "title": "Unauthenticated",
            "detail": "Invalid or missing API key",
        },
        "status": "error",
        "status_message": "unauthenticated",
    }
    assert response.status_code == 401
    assert control(base_url, "GET", "/stats")["generations_created"] == 0
    assert PLAIN.get(f"{base_url}/api/ai/models", headers=AUTH).status_code == 200


def test_unknown_routes_and_methods_use_the_envelope(client: httpx.Client) -> None:
    assert_error(client.get("/api/ai/nothing-here"), 404, "resource_not_found")
    assert_error(client.put("/api/ai/queue"), 405, "invalid_request")
    assert_error(client.post("/api/ai/queue", content=b"{not json"), 400, "invalid_params", "valid JSON")
    assert_error(client.post("/api/ai/queue", json=[1, 2]), 400, "invalid_params", "JSON object")


def test_sync_generate_returns_a_real_image_of_the_requested_size(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/images/generate",
        json={
            "model": "ideogram-v4",
            "prompt": "a lighthouse at dusk",
            "image_size": "landscape_16_9",
            "output_format": "png",
            "num_images": 2,
            "seed": 7,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "ideogram-v4" and isinstance(body["created"], int)
    assert len(body["images"]) == 2
    for item in body["images"]:
        download = PLAIN.get(item["url"])  # signed URL: no bearer token needed
        assert download.status_code == 200
        assert download.headers["content-type"] == "image/png"
        assert int(download.headers["content-length"]) == len(download.content)
        image = open_image(download.content)
        assert (image.format, image.size) == ("PNG", (1024, 576))


def test_sync_generate_b64_json_with_custom_dimensions(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/images/generate",
        json={
            "model": "black-forest-labs-flux-2-klein-4b",
            "prompt": "tiny robot",
            "response_format": "b64_json",
            "image_size": {"width": 320, "height": 256},
            "output_format": "webp",
        },
    )
    assert response.status_code == 200, response.text
    image = open_image(base64.b64decode(response.json()["images"][0]["b64_json"]))
    assert (image.format, image.size) == ("WEBP", (320, 256))


def test_sync_generate_only_multiplies_images_for_models_that_take_num_images(client: httpx.Client) -> None:
    # flux-2-dev has no schema (nothing validated), and no num_images: one image.
    response = client.post(
        "/api/ai/images/generate", json={"model": "flux-2-dev", "prompt": "x", "num_images": 3}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            {"model": "ideogram-v4", "prompt": "x", "image_size": "huge"},
            ["image_size", "'huge'", "square_hd"],
        ),
        ({"model": "ideogram-v4", "prompt": "x", "rendering_speed": "FAST"}, ["rendering_speed", "TURBO"]),
        ({"model": "ideogram-v4", "prompt": "x", "num_images": 9}, ["num_images", "4"]),
        (
            {"model": "ideogram-v4", "prompt": "x", "num_inference_steps": 4},
            ["num_inference_steps", "ideogram-v4"],
        ),
        (
            {
                "model": "black-forest-labs-flux-2-klein-4b",
                "prompt": "x",
                "image_size": {"width": 100, "height": 300},
            },
            ["image_size.width", "256"],
        ),
        (
            {"model": "black-forest-labs-flux-2-klein-4b", "prompt": "x", "num_images": 2},
            ["num_images", "black-forest-labs-flux-2-klein-4b"],
        ),
        ({"model": "nano-banana-2", "prompt": "x", "resolution": "8K"}, ["resolution", "'8K'", "1K"]),
        ({"model": "nano-banana-2", "prompt": "x", "image_size": "square"}, ["image_size"]),
        ({"model": "openai/gpt-image-1.5:latest", "prompt": "x", "size": "999x1"}, ["size", "1024x1024"]),
        ({"model": "ideogram-v4", "prompt": ""}, ["Prompt cannot be empty"]),
        ({"model": "ideogram-v4", "prompt": "x", "response_format": "gif"}, ["response_format"]),
        ({"model": "no-such-model", "prompt": "x"}, ["no-such-model"]),
        ({"prompt": "x"}, ["model"]),
        ({"model": "gpt-oss-120b", "prompt": "x"}, ["gpt-oss-120b"]),
        ({"model": "qwen-image-edit", "prompt": "x"}, ["qwen-image-edit", "/api/ai/images/edit"]),
    ],
    ids=[
        "enum",
        "enum-speed",
        "too-many",
        "unknown-param",
        "dimensions",
        "klein-has-no-num-images",
        "resolution",
        "wrong-size-name",
        "size",
        "empty-prompt",
        "response-format",
        "unknown-model",
        "no-model",
        "text-model",
        "edit-model",
    ],
)
def test_sync_generate_rejects_bad_requests_at_once(
    client: httpx.Client, base_url: str, body: dict[str, Any], fragments: list[str]
) -> None:
    response = client.post("/api/ai/images/generate", json=body)
    assert_error(response, 400, "invalid_params", *fragments)
    assert control(base_url, "GET", "/stats")["generations_created"] == 0


def test_result_urls_expire_and_are_resigned_on_read(client: httpx.Client, base_url: str) -> None:
    (gid,) = enqueue(client)
    wait_for_status(client, gid, {"succeeded"})
    control(base_url, "POST", "/config", {"url_ttl_seconds": -10})
    expired = client.get(f"/api/ai/queue/{gid}").json()["result_url"]
    assert_error(PLAIN.get(expired), 403, "invalid_request", "URL expired")

    control(base_url, "POST", "/config", {"url_ttl_seconds": 3600})
    fresh = client.get(f"/api/ai/queue/{gid}").json()["result_url"]
    assert fresh != expired
    assert PLAIN.get(fresh).status_code == 200
    assert PLAIN.get(fresh.replace("sig=", "sig=0")).status_code == 403


def test_request_log_and_stats_never_hold_the_key(client: httpx.Client, base_url: str) -> None:
    enqueue(client)
    client.get("/api/ai/queue")
    PLAIN.get(f"{base_url}/api/ai/queue", headers={"Authorization": "Bearer wrong-key"})
    text = PLAIN.get(f"{base_url}/_emulator/requests").text
    assert API_KEY not in text and "wrong-key" not in text

    posts = control(base_url, "GET", "/requests?method=POST&path=/api/ai/queue")["requests"]
    assert len(posts) == 1
    assert posts[0]["json"] == {"model": "ideogram-v4", "prompt": "a red fox in the snow"}
    assert posts[0]["authorized"] is True and posts[0]["status"] == 200
    assert posts[0]["raw_path"] == "/api/ai/queue"
    gets = control(base_url, "GET", "/requests?method=GET")["requests"]
    assert [entry["authorized"] for entry in gets] == [True, False]

    stats = control(base_url, "GET", "/stats")
    assert stats["POST /api/ai/queue"] == 1 and stats["GET /api/ai/queue"] == 2
    assert stats["generations_created"] == 1
    assert API_KEY not in str(control(base_url, "GET", "/config"))


def test_config_view_lists_the_new_settings(base_url: str) -> None:
    view = control(base_url, "GET", "/config")
    assert view["row_parameters"] is False and view["credits"] is None
    view = control(base_url, "POST", "/config", {"row_parameters": True, "credits": "2.5"})
    assert view["row_parameters"] is True and view["credits"] == "2.5000"
    for bad in ({"credits": "lots"}, {"credits": "-1"}, {"credits": True}, {"row_parameters": "yes"}):
        assert PLAIN.post(f"{base_url}/_emulator/config", json=bad).status_code == 400
    restored = control(base_url, "POST", "/reset", {"config": True})["config"]
    assert restored["row_parameters"] is False and restored["credits"] is None
