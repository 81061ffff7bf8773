"""The emulated Oxen API: auth, the error envelope, sync generation, result files, recording."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API_KEY, AUTH, PLAIN, assert_error, control, enqueue, wait_for_status


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
    assert PLAIN.get(f"{base_url}/api/events", headers=headers).status_code == 401
    assert PLAIN.get(f"{base_url}/api/ai/models", headers=AUTH).status_code == 200


def test_unknown_routes_and_methods_use_the_envelope(client: httpx.Client) -> None:
    assert_error(client.get("/api/ai/nothing-here"), 404, "resource_not_found")
    assert_error(client.put("/api/ai/queue"), 405, "invalid_request")
    assert_error(client.post("/api/ai/queue", content=b"{not json"), 400, "invalid_params", "valid JSON")
    assert_error(client.post("/api/ai/queue", json=[1, 2]), 400, "invalid_params", "JSON object")


GENERATE, EDIT, VIDEO = "/api/ai/images/generate", "/api/ai/images/edit", "/api/ai/videos/generate"
KLEIN, QWEN, NANO_EDIT = "black-forest-labs-flux-2-klein-4b", "qwen-image-edit", "nano-banana-2-edit"
T2V, I2V, URL = (
    "kling-video-v2-6-pro-text-to-video",
    "kling-video-o3-pro-reference-to-video",
    "http://a/b.png",
)


# Each sync endpoint validates against the model's published schema before anything is created:
# one case per kind of check (an enum, a maximum, a type, an unlisted name, array bounds...).
REJECTED: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "enum": (GENERATE, {"model": "ideogram-v4", "image_size": "huge"}, ["image_size", "'huge'", "square_hd"]),
    "too-many": (GENERATE, {"model": "ideogram-v4", "num_images": 9}, ["num_images", "4"]),
    "unknown-param": (
        GENERATE,
        {"model": "ideogram-v4", "num_inference_steps": 4},
        ["num_inference_steps", "ideogram-v4"],
    ),
    "dimensions": (
        GENERATE,
        {"model": KLEIN, "image_size": {"width": 100, "height": 300}},
        ["image_size.width", "256"],
    ),
    "size": (GENERATE, {"model": "openai/gpt-image-1.5:latest", "size": "999x1"}, ["size", "1024x1024"]),
    "empty-prompt": (GENERATE, {"model": "ideogram-v4", "prompt": ""}, ["Prompt cannot be empty"]),
    "response-format": (GENERATE, {"model": "ideogram-v4", "response_format": "gif"}, ["response_format"]),
    "unknown-model": (GENERATE, {"model": "no-such-model"}, ["no-such-model"]),
    "no-model": (GENERATE, {}, ["model"]),
    "text-model": (GENERATE, {"model": "gpt-oss-120b"}, ["gpt-oss-120b"]),
    "edit-model": (GENERATE, {"model": QWEN}, [QWEN, "/api/ai/images/edit"]),
    "video-model": (GENERATE, {"model": T2V}, ["does not generate images"]),
    "edit-missing-input": (EDIT, {"model": QWEN}, ["input_image", "required"]),
    "edit-not-http": (EDIT, {"model": QWEN, "input_image": "file:///etc/passwd"}, ["input_image"]),
    "edit-empty-prompt": (
        EDIT,
        {"model": QWEN, "prompt": "", "input_image": URL},
        ["Prompt cannot be empty"],
    ),
    "edit-string-for-array": (EDIT, {"model": NANO_EDIT, "input_image": URL}, ["input_image", "array"]),
    "edit-five-inputs": (EDIT, {"model": NANO_EDIT, "input_image": [URL] * 5}, ["input_image"]),
    "edit-generate-model": (EDIT, {"model": "ideogram-v4"}, ["ideogram-v4", "not an image-editing model"]),
    "edit-video-model": (EDIT, {"model": T2V}, ["not an image-editing model", "/videos/generate"]),
    "video-both-prompts": (VIDEO, {"model": T2V, "multi_prompt": ["b"]}, ["multi_prompt", "not both"]),
    "video-no-prompt": (VIDEO, {"model": T2V, "prompt": None}, ["Prompt cannot be empty"]),
    "video-blank-prompt": (VIDEO, {"model": T2V, "prompt": "  "}, ["Prompt cannot be empty"]),
    "video-blank-shot": (VIDEO, {"model": T2V, "prompt": None, "multi_prompt": ["a", " "]}, ["multi_prompt"]),
    "video-shots-not-array": (
        VIDEO,
        {"model": T2V, "prompt": None, "multi_prompt": "a"},
        ["multi_prompt", "array"],
    ),
    "video-too-long": (VIDEO, {"model": T2V, "duration": 11}, ["duration", "10"]),
    "video-duration-string": (VIDEO, {"model": T2V, "duration": "5"}, ["duration", "integer"]),
    "video-t2v-has-no-input": (VIDEO, {"model": T2V, "input_image": URL}, ["input_image", T2V]),
    "video-i2v-needs-input": (VIDEO, {"model": I2V}, ["input_image", "required"]),
    "video-image-model": (VIDEO, {"model": "ideogram-v4"}, ["ideogram-v4", "does not generate video"]),
}


@pytest.mark.parametrize(("path", "body", "fragments"), list(REJECTED.values()), ids=list(REJECTED))
def test_sync_endpoints_reject_bad_requests_at_once(
    client: httpx.Client, base_url: str, path: str, body: dict[str, Any], fragments: list[str]
) -> None:
    """``prompt`` is "x" unless the case sets it (``None``: left out)."""
    request = {key: value for key, value in {"prompt": "x", **body}.items() if value is not None}
    assert_error(client.post(path, json=request), 400, "invalid_params", *fragments)
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


# setting: (its start-up value, a value to set, how the view shows it, values refused, why)
SETTINGS: dict[str, tuple[Any, Any, Any, list[Any], str]] = {
    "row_parameters": (False, True, True, ["yes"], ""),
    "credits": (None, "2.5", "2.5000", ["lots", "-1", True], ""),
    "render_seconds_max": (None, 0.5, 0.5, [-1], "greater than or equal to 0"),
    "render_seed": (None, 7, 7, [1.5], "integer"),
    "video_render_seconds": (None, 0.6, 0.6, [-1], ""),
}


@pytest.mark.parametrize(
    ("name", "default", "value", "shown", "refused", "why"), [(n, *v) for n, v in SETTINGS.items()]
)
def test_a_setting_is_shown_validated_and_restored_by_a_reset(
    base_url: str, name: str, default: Any, value: Any, shown: Any, refused: list[Any], why: str
) -> None:
    assert control(base_url, "GET", "/config")[name] == default
    assert control(base_url, "POST", "/config", {name: value})[name] == shown
    for bad in refused:
        response = PLAIN.post(f"{base_url}/_emulator/config", json={name: bad})
        assert_error(response, 400, "invalid_params", name, why)
    assert control(base_url, "POST", "/config", {name: default})[name] == default  # None clears it
    control(base_url, "POST", "/config", {name: value})
    assert control(base_url, "POST", "/reset", {"config": True})["config"][name] == default
