from __future__ import annotations

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.models import (
    EnqueueResponse,
    Generation,
    GenerationStatus,
    IdeogramV4Request,
    ImageRequest,
    OxenEvent,
    OxenModel,
    build_image_request,
    split_generation_counts,
)


def test_ideogram_request_has_the_documented_defaults() -> None:
    request = build_image_request("ideogram-v4", "A poster")
    assert isinstance(request, IdeogramV4Request)
    assert request.parameters() == {
        "prompt": "A poster",
        "image_size": "square_hd",
        "rendering_speed": "BALANCED",
        "expansion_model": "Medium",
        "acceleration": "none",
        "num_images": 1,
        "enable_safety_checker": True,
        "output_format": "jpeg",
    }


def test_model_specific_parameters_pass_through() -> None:
    request = build_image_request("ideogram-v4", "A logo", style_preset="flat", seed=7)
    params = request.parameters()
    assert params["style_preset"] == "flat"
    assert params["seed"] == 7


def test_invalid_enum_names_the_field_and_allowed_values() -> None:
    with pytest.raises(OxenValidationError) as info:
        build_image_request("ideogram-v4", "A poster", rendering_speed="WARP")
    assert info.value.field == "rendering_speed"
    assert info.value.allowed == ["TURBO", "BALANCED", "QUALITY"]
    assert "rendering_speed" in str(info.value) and "TURBO" in str(info.value)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_missing_prompt_names_the_field(prompt: str) -> None:
    with pytest.raises(OxenValidationError) as info:
        build_image_request("ideogram-v4", prompt)
    assert info.value.field == "prompt"


def test_other_models_accept_their_own_values() -> None:
    request = build_image_request(
        "black-forest-labs-flux-2-klein-4b",
        "cat",
        image_size={"width": 640, "height": 480},
        output_format="webp",
    )
    assert isinstance(request, ImageRequest)
    assert request.parameters()["image_size"] == {"width": 640, "height": 480}
    assert request.parameters()["output_format"] == "webp"


def test_none_parameters_are_not_sent() -> None:
    request = build_image_request("flux-2-dev", "cat", seed=None, image_size=None)
    assert request.parameters() == {"prompt": "cat", "num_images": 1}


@pytest.mark.parametrize(("total", "chunks"), [(1, [1]), (4, [4]), (6, [4, 2]), (9, [4, 4, 1])])
def test_generation_counts_split_into_requests_of_four(total: int, chunks: list[int]) -> None:
    assert split_generation_counts(total) == chunks


def test_zero_generations_is_a_validation_error() -> None:
    with pytest.raises(OxenValidationError):
        split_generation_counts(0)


def test_generation_tolerates_unknown_fields_and_statuses() -> None:
    row = Generation.model_validate(
        {"generation_id": "g1", "status": "warming_up", "brand_new_field": {"x": 1}, "cost": 0.06}
    )
    assert row.status is GenerationStatus.UNKNOWN
    assert not row.status.is_terminal
    assert row.cost == 0.06


def test_status_terminality() -> None:
    assert {s for s in GenerationStatus if s.is_terminal} == {"succeeded", "failed", "cancelled"}


def test_enqueue_accepts_processing_as_initial_status() -> None:
    response = EnqueueResponse.model_validate(
        {"generations": [{"generation_id": "a", "status": "processing"}]}
    )
    assert response.generations[0].status is GenerationStatus.PROCESSING


def test_model_accepts_either_schema_name() -> None:
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    assert OxenModel.model_validate({"id": "m", "json_request_schema": schema}).request_schema == schema
    assert OxenModel.model_validate({"id": "m", "request_schema": schema}).request_schema == schema
    assert OxenModel.model_validate({"id": "m", "request_schema": None}).request_schema is None


def test_model_media_capability() -> None:
    assert OxenModel.model_validate({"id": "m", "capabilities": {"output": ["image"]}}).generates_media
    assert not OxenModel.model_validate({"id": "m", "capabilities": {"output": ["text"]}}).generates_media
    assert OxenModel.model_validate({"id": "m", "endpoint": "/videos/generate"}).generates_media


def test_event_finds_the_output_url_under_any_likely_key() -> None:
    event = OxenEvent(
        event="media_generation_completed", data={"generation_id": "g", "output_url": "http://x/y"}
    )
    assert event.generation_id == "g"
    assert event.result_url == "http://x/y"
