"""The model catalogue: per-model parameter names, schemas, prices, and ids that need URL-encoding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from jsonschema import Draft202012Validator

from .helpers import PLAIN, assert_error, control, enqueue, open_image, wait_for_status

GPT_IMAGE = "openai/gpt-image-1.5:latest"
IMAGE_MODELS = {
    "ideogram-v4",
    "black-forest-labs-flux-2-klein-4b",
    "flux-2-dev",
    "nano-banana-2",
    GPT_IMAGE,
}
EDIT_MODELS = {"qwen-image-edit", "nano-banana-2-edit"}
# Its duration is a string enum, as several upstream video models declare it.
TEXT_DURATION_I2V = "kling-video-v2-5-turbo-image-to-video"
VIDEO_MODELS = {
    "kling-video-v2-6-pro-text-to-video",
    "kling-video-o3-pro-reference-to-video",
    TEXT_DURATION_I2V,
}


def _schema(model: dict[str, Any]) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = model.get("request_schema") or model.get("json_request_schema")
    return schema


def test_models_catalogue(client: httpx.Client) -> None:
    models = client.get("/api/ai/models").json()
    assert models["object"] == "list"
    by_id = {model["id"]: model for model in models["data"]}
    assert set(by_id) == IMAGE_MODELS | EDIT_MODELS | VIDEO_MODELS | {"gpt-oss-120b"}
    for model_id in IMAGE_MODELS:
        model = by_id[model_id]
        assert model["endpoint"] == "/images/generate" and model["capabilities"]["output"] == ["image"]
        pricing = model["pricing"]
        assert set(pricing) == {"method", "cost_per_image"} and pricing["method"] == "image"
        assert Decimal(str(pricing["cost_per_image"])) > 0
        schema = _schema(model)
        if schema is not None:
            Draft202012Validator.check_schema(schema)
    # Prices are JSON numbers, as the contract documents; one is text, which clients must accept too.
    assert by_id["ideogram-v4"]["pricing"]["cost_per_image"] == 0.06
    assert by_id["flux-2-dev"]["pricing"]["cost_per_image"] == "0.0250"
    assert by_id["gpt-oss-120b"]["capabilities"]["output"] == ["text"]
    assert by_id["gpt-oss-120b"]["pricing"]["method"] == "token"

    ideogram = by_id["ideogram-v4"]["request_schema"]
    assert ideogram["properties"]["image_size"]["enum"][0] == "square_hd"
    assert ideogram["additionalProperties"] is False and "num_images" in ideogram["properties"]
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
    assert [
        model_id
        for model_id, model in by_id.items()
        if "num_images" in (_schema(model) or {}).get("properties", {})
    ] == ["ideogram-v4"]


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


def test_unknown_model_uses_the_short_error_shape(client: httpx.Client) -> None:
    response = client.get("/api/ai/models/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Model not found: nope"}}


@pytest.mark.parametrize(
    ("body", "size", "fmt"),
    [
        ({"model": "ideogram-v4", "image_size": "landscape_4_3"}, (1024, 768), "JPEG"),
        ({"model": "ideogram-v4"}, (1024, 1024), "JPEG"),
        ({"model": "black-forest-labs-flux-2-klein-4b"}, (1024, 768), "PNG"),
        (
            {"model": "black-forest-labs-flux-2-klein-4b", "image_size": {"width": 512, "height": 384}},
            (512, 384),
            "PNG",
        ),
        ({"model": "flux-2-dev", "image_size": "portrait_16_9"}, (576, 1024), "PNG"),
        ({"model": "nano-banana-2"}, (1024, 1024), "PNG"),
        ({"model": "nano-banana-2", "resolution": "1K", "aspect_ratio": "16:9"}, (1024, 576), "PNG"),
        (
            {"model": "nano-banana-2", "resolution": "1K", "aspect_ratio": "3:4", "output_format": "jpeg"},
            (768, 1024),
            "JPEG",
        ),
        ({"model": GPT_IMAGE, "size": "1024x1536"}, (1024, 1536), "PNG"),
        ({"model": GPT_IMAGE, "size": "auto", "output_format": "webp"}, (1024, 1024), "WEBP"),
    ],
)
def test_images_take_their_size_from_the_models_own_parameter(
    client: httpx.Client, body: dict[str, Any], size: tuple[int, int], fmt: str
) -> None:
    (gid,) = enqueue(client, **body)
    row = wait_for_status(client, gid, {"succeeded", "failed"})
    assert row["status"] == "succeeded", row
    assert row["model_name"] == body["model"]
    image = open_image(PLAIN.get(row["result_url"]).content)
    assert (image.format, image.size) == (fmt, size)


def test_sync_accepts_the_slashed_model_id_in_the_body(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/images/generate", json={"model": GPT_IMAGE, "prompt": "owl", "size": "1536x1024"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == GPT_IMAGE
    image = open_image(PLAIN.get(response.json()["images"][0]["url"]).content)
    assert image.size == (1536, 1024)
    details = client.get("/api/ai/generations", params={"model": GPT_IMAGE}).json()
    assert details["count"] == 1 and details["total_cost"] == "0.0400"


def test_edit_and_video_models_capabilities_pricing_and_schemas(client: httpx.Client) -> None:
    by_id = {model["id"]: model for model in client.get("/api/ai/models").json()["data"]}
    for model_id in EDIT_MODELS:
        model = by_id[model_id]
        assert model["endpoint"] == "/images/edit"
        assert model["capabilities"] == {"input": ["text", "image"], "output": ["image"]}
        assert set(model["pricing"]) == {"method", "cost_per_image"}
        schema = model["request_schema"]
        Draft202012Validator.check_schema(schema)
        assert (
            set(schema["required"]) == {"prompt", "input_image"} and schema["additionalProperties"] is False
        )
    assert by_id["qwen-image-edit"]["pricing"] == {"method": "image", "cost_per_image": 0.03}
    assert by_id["qwen-image-edit"]["request_schema"]["properties"]["input_image"]["type"] == "string"
    nano_input = by_id["nano-banana-2-edit"]["request_schema"]["properties"]["input_image"]
    assert (nano_input["type"], nano_input["minItems"], nano_input["maxItems"]) == ("array", 1, 4)

    for model_id in VIDEO_MODELS:
        model = by_id[model_id]
        assert model["endpoint"] == "/videos/generate" and model["capabilities"]["output"] == ["video"]
        assert (
            set(model["pricing"]) == {"method", "cost_per_second"} and model["pricing"]["method"] == "second"
        )
        schema = model["request_schema"]
        Draft202012Validator.check_schema(schema)
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
    t2v = by_id["kling-video-v2-6-pro-text-to-video"]
    assert t2v["capabilities"]["input"] == ["text"] and t2v["pricing"]["cost_per_second"] == 0.07
    assert "input_image" not in t2v["request_schema"]["properties"]
    i2v = by_id["kling-video-o3-pro-reference-to-video"]
    assert i2v["capabilities"]["input"] == ["text", "image"]
    assert i2v["request_schema"]["required"] == ["input_image"]
    # A client validating with the published schema gets the same answers as the emulator.
    validator = Draft202012Validator(t2v["request_schema"])
    assert validator.is_valid({"prompt": "x", "duration": 3})
    assert validator.is_valid({"multi_prompt": ["a", "b"]})
    assert not validator.is_valid({"prompt": "x", "multi_prompt": ["a"]})
    assert not validator.is_valid({"duration": 5})


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("videos", VIDEO_MODELS),
        ("video", VIDEO_MODELS),
        ("/videos/generate", VIDEO_MODELS),
        ("images/edit", EDIT_MODELS),
        ("images/generate", IMAGE_MODELS),
        ("image", IMAGE_MODELS | EDIT_MODELS),
        ("chat/completions", {"gpt-oss-120b"}),
    ],
)
def test_action_filter(client: httpx.Client, action: str, expected: set[str]) -> None:
    data = client.get("/api/ai/models", params={"action": action}).json()["data"]
    assert {model["id"] for model in data} == expected


def test_search_and_developer_filter(client: httpx.Client) -> None:
    def search(text: str) -> set[str]:
        return {
            model["id"]
            for model in client.get("/api/ai/models/search", params={"search": text}).json()["data"]
        }

    def developer(name: str) -> list[str]:
        data = client.get("/api/ai/models", params={"developer_name": name}).json()["data"]
        return [model["id"] for model in data]

    assert search("flux") == {"black-forest-labs-flux-2-klein-4b", "flux-2-dev"}
    assert search("kling") == VIDEO_MODELS
    assert search("edit") == EDIT_MODELS
    assert search("banana") == {"nano-banana-2", "nano-banana-2-edit"}
    assert developer("Ideogram") == ["ideogram-v4"]
    assert set(developer("openai")) == {GPT_IMAGE, "gpt-oss-120b"}
    assert developer("Kuaishou") == [
        "kling-video-v2-6-pro-text-to-video",
        "kling-video-o3-pro-reference-to-video",
        TEXT_DURATION_I2V,
    ]
    assert (
        client.get("/api/ai/models/kling-video-o3-pro-reference-to-video").json()["endpoint"]
        == "/videos/generate"
    )
