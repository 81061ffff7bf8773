"""The model catalogue: per-model parameter names, schemas, prices, and ids that need URL-encoding."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from jsonschema import Draft202012Validator

from .helpers import PLAIN, assert_error, control, enqueue, open_image, wait_for_status

GPT_IMAGE = "openai/gpt-image-1.5:latest"
T2V, I2V = "kling-video-v2-6-pro-text-to-video", "kling-video-o3-pro-reference-to-video"
# Its duration is a string enum, as several upstream video models declare it.
TEXT_DURATION_I2V = "kling-video-v2-5-turbo-image-to-video"
TEXT, TEXT_IMAGE = ["text"], ["text", "image"]
# id: (endpoint, capabilities input, output, pricing) in catalogue order. Prices are JSON numbers,
# as the contract documents; flux-2-dev's is text, which clients must accept too.
CATALOGUE: dict[str, tuple[str, list[str], list[str], dict[str, Any]]] = {
    "ideogram-v4": ("/images/generate", TEXT, ["image"], {"method": "image", "cost_per_image": 0.06}),
    "black-forest-labs-flux-2-klein-4b": (
        "/images/generate",
        TEXT,
        ["image"],
        {"method": "image", "cost_per_image": 0.012},
    ),
    "flux-2-dev": ("/images/generate", TEXT, ["image"], {"method": "image", "cost_per_image": "0.0250"}),
    "nano-banana-2": ("/images/generate", TEXT, ["image"], {"method": "image", "cost_per_image": 0.039}),
    GPT_IMAGE: ("/images/generate", TEXT, ["image"], {"method": "image", "cost_per_image": 0.04}),
    "qwen-image-edit": ("/images/edit", TEXT_IMAGE, ["image"], {"method": "image", "cost_per_image": 0.03}),
    "nano-banana-2-edit": (
        "/images/edit",
        TEXT_IMAGE,
        ["image"],
        {"method": "image", "cost_per_image": 0.039},
    ),
    T2V: ("/videos/generate", TEXT, ["video"], {"method": "second", "cost_per_second": 0.07}),
    I2V: ("/videos/generate", TEXT_IMAGE, ["video"], {"method": "second", "cost_per_second": 0.112}),
    TEXT_DURATION_I2V: (
        "/videos/generate",
        TEXT_IMAGE,
        ["video"],
        {"method": "second", "cost_per_second": 0.07},
    ),
    "gpt-oss-120b": (
        "/chat/completions",
        TEXT,
        ["text"],
        {"method": "token", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
    ),
}
IMAGE_MODELS = {model for model, entry in CATALOGUE.items() if entry[0] == "/images/generate"}
EDIT_MODELS = {"qwen-image-edit", "nano-banana-2-edit"}
VIDEO_MODELS = {T2V, I2V, TEXT_DURATION_I2V}


def _schema(model: dict[str, Any]) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = model.get("request_schema") or model.get("json_request_schema")
    return schema


def test_models_catalogue_endpoints_capabilities_pricing_and_schemas(client: httpx.Client) -> None:
    models = client.get("/api/ai/models").json()
    assert models["object"] == "list"
    by_id = {model["id"]: model for model in models["data"]}
    listed = {
        i: (m["endpoint"], m["capabilities"]["input"], m["capabilities"]["output"], m["pricing"])
        for i, m in by_id.items()
    }
    assert listed == CATALOGUE
    for model in by_id.values():
        if (schema := _schema(model)) is not None:
            Draft202012Validator.check_schema(schema)

    ideogram = by_id["ideogram-v4"]["request_schema"]
    assert ideogram["properties"]["image_size"]["enum"][0] == "square_hd"
    assert ideogram["additionalProperties"] is False and "num_images" in ideogram["properties"]
    # The seed page's name for the schema: clients accept either.
    klein = by_id["black-forest-labs-flux-2-klein-4b"]
    assert "request_schema" not in klein
    klein_schema = klein["json_request_schema"]
    assert "anyOf" in klein_schema["properties"]["image_size"]
    assert "num_images" not in klein_schema["properties"] and klein_schema["additionalProperties"] is False
    assert set(klein_schema["properties"]) >= {"image_size", "num_inference_steps", "seed"}
    assert by_id["flux-2-dev"]["request_schema"] is None
    nano = by_id["nano-banana-2"]["request_schema"]["properties"]
    assert nano["resolution"]["enum"] == ["1K", "2K"] and "image_size" not in nano
    assert {"basic", "x-order", "renderType"} <= set(nano["prompt"])
    gpt = by_id[GPT_IMAGE]["request_schema"]
    assert "1024x1024" in gpt["properties"]["size"]["enum"] and "image_size" not in gpt["properties"]
    assert gpt.get("additionalProperties", True) is True
    # Only ideogram-v4 takes num_images.
    assert [i for i, m in by_id.items() if "num_images" in (_schema(m) or {}).get("properties", {})] == [
        "ideogram-v4"
    ]

    for model_id in EDIT_MODELS:
        schema = by_id[model_id]["request_schema"]
        assert (
            set(schema["required"]) == {"prompt", "input_image"} and schema["additionalProperties"] is False
        )
    assert by_id["qwen-image-edit"]["request_schema"]["properties"]["input_image"]["type"] == "string"
    nano_input = by_id["nano-banana-2-edit"]["request_schema"]["properties"]["input_image"]
    assert (nano_input["type"], nano_input["minItems"], nano_input["maxItems"]) == ("array", 1, 4)

    for model_id in VIDEO_MODELS:
        schema = by_id[model_id]["request_schema"]
        properties = schema["properties"]
        assert properties["duration"] == (
            {"type": "string", "enum": ["5", "10"], "default": "5"}
            if model_id == TEXT_DURATION_I2V
            else {
                "type": "integer",
                "minimum": 3,
                "maximum": 10,
                "default": 5,
                "description": "Length in seconds.",
            }
        )
        assert properties["aspect_ratio"]["enum"] == ["16:9", "9:16", "1:1"]
        assert properties["generate_audio"]["type"] == "boolean" and "seed" in properties
        assert properties["multi_prompt"]["type"] == "array"
        assert schema["oneOf"] == [{"required": ["prompt"]}, {"required": ["multi_prompt"]}]
    assert "input_image" not in by_id[T2V]["request_schema"]["properties"]
    assert by_id[I2V]["request_schema"]["required"] == ["input_image"]
    # A client validating with the published schema gets the same answers as the emulator.
    validator = Draft202012Validator(by_id[T2V]["request_schema"])
    assert validator.is_valid({"prompt": "x", "duration": 3})
    assert validator.is_valid({"multi_prompt": ["a", "b"]})
    assert not validator.is_valid({"prompt": "x", "multi_prompt": ["a"]})
    assert not validator.is_valid({"duration": 5})


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/api/ai/models", {"action": "videos"}, VIDEO_MODELS),
        ("/api/ai/models", {"action": "video"}, VIDEO_MODELS),
        ("/api/ai/models", {"action": "/videos/generate"}, VIDEO_MODELS),
        ("/api/ai/models", {"action": "images/edit"}, EDIT_MODELS),
        ("/api/ai/models", {"action": "images/generate"}, IMAGE_MODELS),
        ("/api/ai/models", {"action": "image"}, IMAGE_MODELS | EDIT_MODELS),
        ("/api/ai/models", {"action": "chat/completions"}, {"gpt-oss-120b"}),
        ("/api/ai/models", {"developer_name": "Ideogram"}, {"ideogram-v4"}),
        ("/api/ai/models", {"developer_name": "openai"}, {GPT_IMAGE, "gpt-oss-120b"}),
        ("/api/ai/models", {"developer_name": "Kuaishou"}, VIDEO_MODELS),
        ("/api/ai/models/search", {"search": "flux"}, {"black-forest-labs-flux-2-klein-4b", "flux-2-dev"}),
        ("/api/ai/models/search", {"search": "kling"}, VIDEO_MODELS),
        ("/api/ai/models/search", {"search": "edit"}, EDIT_MODELS),
        ("/api/ai/models/search", {"search": "banana"}, {"nano-banana-2", "nano-banana-2-edit"}),
    ],
)
def test_action_developer_and_search_filters(
    client: httpx.Client, path: str, params: dict[str, str], expected: set[str]
) -> None:
    """Each filter keeps the catalogue's order."""
    data = client.get(path, params=params).json()["data"]
    assert [model["id"] for model in data] == [model for model in CATALOGUE if model in expected]


def test_model_ids_with_slash_dot_and_colon_are_url_encoded(client: httpx.Client, base_url: str) -> None:
    encoded = quote(GPT_IMAGE, safe="")
    assert encoded == "openai%2Fgpt-image-1.5%3Alatest"
    response = client.get(f"/api/ai/models/{encoded}")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == GPT_IMAGE
    assert client.get(f"/api/ai/models/{encoded}", params={"deployment_status": "live"}).status_code == 200
    # Left unencoded, the slash splits the path: there is no such route.
    assert_error(client.get(f"/api/ai/models/{GPT_IMAGE}"), 404, "resource_not_found")
    entry = control(base_url, "GET", "/requests?route=/api/ai/models/{id}")["requests"][0]
    assert entry["raw_path"] == f"/api/ai/models/{encoded}" and entry["path"] == f"/api/ai/models/{GPT_IMAGE}"
    # An unknown model answers the short error shape.
    response = client.get("/api/ai/models/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Model not found: nope"}}


def _download(url: str, fmt: str) -> bytes:
    download = PLAIN.get(url)  # a signed result URL: no bearer token
    assert download.headers["content-type"] == f"image/{fmt.lower()}"
    assert int(download.headers["content-length"]) == len(download.content)
    return download.content


KLEIN = "black-forest-labs-flux-2-klein-4b"


@pytest.mark.parametrize(
    ("via", "body", "size", "fmt"),
    [
        ("queue", {"model": "ideogram-v4", "image_size": "landscape_4_3"}, (1024, 768), "JPEG"),
        ("queue", {"model": "ideogram-v4"}, (1024, 1024), "JPEG"),
        ("queue", {"model": KLEIN}, (1024, 768), "PNG"),
        ("queue", {"model": KLEIN, "image_size": {"width": 512, "height": 384}}, (512, 384), "PNG"),
        ("queue", {"model": "flux-2-dev", "image_size": "portrait_16_9"}, (576, 1024), "PNG"),
        ("queue", {"model": "nano-banana-2"}, (1024, 1024), "PNG"),
        ("queue", {"model": "nano-banana-2", "resolution": "1K", "aspect_ratio": "16:9"}, (1024, 576), "PNG"),
        (
            "queue",
            {"model": "nano-banana-2", "resolution": "1K", "aspect_ratio": "3:4", "output_format": "jpeg"},
            (768, 1024),
            "JPEG",
        ),
        # An open schema passes a parameter it does not list through.
        ("queue", {"model": GPT_IMAGE, "size": "1024x1536", "style": "vivid"}, (1024, 1536), "PNG"),
        ("queue", {"model": GPT_IMAGE, "size": "auto", "output_format": "webp"}, (1024, 1024), "WEBP"),
        (
            "sync",
            {"model": "ideogram-v4", "image_size": "landscape_16_9", "output_format": "png", "num_images": 2},
            (1024, 576),
            "PNG",
        ),
        ("sync-b64", {"model": KLEIN, "image_size": {"width": 320, "height": 256}}, (320, 256), "WEBP"),
        # flux-2-dev has no schema (nothing validated), and no num_images: one image.
        ("sync", {"model": "flux-2-dev", "num_images": 3, "output_format": "png"}, (1024, 1024), "PNG"),
    ],
)
def test_images_take_their_size_and_format_from_the_models_own_parameters(
    client: httpx.Client, via: str, body: dict[str, Any], size: tuple[int, int], fmt: str
) -> None:
    """Through the queue (a row) and the sync endpoint (its images as signed URLs or, with
    ``response_format: b64_json``, the bytes themselves)."""
    if via == "queue":
        (gid,) = enqueue(client, **body)
        row = wait_for_status(client, gid, {"succeeded", "failed"})
        assert row["status"] == "succeeded" and row["model_name"] == body["model"], row
        files = [_download(row["result_url"], fmt)]
    else:
        request = {"prompt": "a lighthouse", "seed": 7, "output_format": "webp", **body}
        if via == "sync-b64":
            request["response_format"] = "b64_json"
        response = client.post("/api/ai/images/generate", json=request)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model"] == body["model"] and isinstance(answer["created"], int)
        files = [
            base64.b64decode(item["b64_json"]) if via == "sync-b64" else _download(item["url"], fmt)
            for item in answer["images"]
        ]
        assert len(files) == (body.get("num_images", 1) if body["model"] == "ideogram-v4" else 1)
    for data in files:
        image = open_image(data)
        assert (image.format, image.size) == (fmt, size)
