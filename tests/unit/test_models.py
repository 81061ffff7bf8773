from __future__ import annotations

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.models import (
    EnqueueResponse,
    Generation,
    GenerationDetails,
    GenerationList,
    GenerationStatus,
    OxenModel,
    build_image_request,
    check_output_count,
    split_generation_counts,
)


def test_a_request_carries_what_was_given() -> None:
    """The schema's defaults are not sent: the emulator reports them (test_operator_emulator.py)."""
    assert build_image_request("ideogram-v4", "A poster").parameters() == {"prompt": "A poster"}
    assert build_image_request("flux-2-dev", "cat", seed=None, image_size=None).parameters() == {
        "prompt": "cat"
    }


def test_templated_text_is_typed_as_the_schema_declares() -> None:
    schema = {
        "type": "object",
        "properties": {
            "seed": {"type": "integer"},
            "cfg_scale": {"type": "number"},
            "generate_audio": {"type": "boolean"},
            "duration": {"type": "string", "enum": ["5", "10"]},
        },
    }
    model = OxenModel.model_validate({"id": "m", "request_schema": schema})
    typed = model.typed(
        {"seed": " 7", "cfg_scale": "0.5", "generate_audio": "False", "duration": "5", "other": "3"}
    )
    assert typed == {"seed": 7, "cfg_scale": 0.5, "generate_audio": False, "duration": "5", "other": "3"}
    # Text that is no such value is left for the schema check to refuse by name.
    assert model.typed({"seed": "seven", "cfg_scale": "nan", "generate_audio": "maybe"}) == {
        "seed": "seven",
        "cfg_scale": "nan",
        "generate_audio": "maybe",
    }


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("ideogram-v4", {"style_preset": "flat", "seed": 7}),
        (
            "black-forest-labs-flux-2-klein-4b",
            {"image_size": {"width": 640, "height": 480}, "output_format": "webp"},
        ),
    ],
)
def test_model_specific_parameters_pass_through(model: str, kwargs: dict[str, object]) -> None:
    assert build_image_request(model, "cat", **kwargs).parameters() == {"prompt": "cat", **kwargs}


@pytest.mark.parametrize("prompt", ["", "   "])
def test_missing_prompt_names_the_field(prompt: str) -> None:
    with pytest.raises(OxenValidationError) as info:
        build_image_request("ideogram-v4", prompt)
    assert info.value.field == "prompt"


@pytest.mark.parametrize(("total", "chunks"), [(1, [1]), (4, [4]), (6, [4, 2]), (9, [4, 4, 1])])
def test_generation_counts_split_into_requests_of_four(total: int, chunks: list[int]) -> None:
    assert split_generation_counts(total) == chunks
    with pytest.raises(OxenValidationError):
        split_generation_counts(0)


def test_generation_tolerates_unknown_fields_and_statuses() -> None:
    row = Generation.model_validate(
        {"generation_id": "g1", "status": "warming_up", "brand_new_field": {"x": 1}, "cost": 0.06}
    )
    assert row.status is GenerationStatus.UNKNOWN
    assert not row.status.is_terminal
    assert row.cost == "0.06"
    assert {s for s in GenerationStatus if s.is_terminal} == {"succeeded", "failed", "cancelled"}
    enqueued = EnqueueResponse.model_validate(
        {"generations": [{"generation_id": "a", "status": "processing"}]}
    )
    assert enqueued.generations[0].status is GenerationStatus.PROCESSING  # a valid initial status


def test_model_media_capability() -> None:
    assert OxenModel.model_validate({"id": "m", "capabilities": {"output": ["image"]}}).generates_media
    assert not OxenModel.model_validate({"id": "m", "capabilities": {"output": ["text"]}}).generates_media
    assert not OxenModel.model_validate({"id": "m", "endpoint": "/videos/generate"}).generates_media


@pytest.mark.parametrize(("raw", "text"), [("0.0600", "0.0600"), (0.06, "0.06"), (1, "1"), (None, None)])
def test_cost_is_kept_as_an_exact_decimal_string(raw: object, text: str | None) -> None:
    assert GenerationDetails.model_validate({"generation_id": "g", "cost": raw}).cost == text
    with pytest.raises(ValueError):
        GenerationDetails.model_validate({"generation_id": "g", "cost": "cheap"})


@pytest.mark.parametrize("name", ["num_images", "num_generations"])
def test_output_count_is_not_a_model_parameter(name: str) -> None:
    with pytest.raises(OxenValidationError) as info:
        build_image_request("ideogram-v4", "p", **{name: 2})
    assert info.value.field == name


@pytest.mark.parametrize(
    ("value", "maximum", "counted"),
    [
        *[(bad, 16, "at least 1") for bad in (0, -1, "0")],
        *[(bad, 16, "an integer") for bad in (True, 1.5, "many")],
        (17, 16, "raise max_outputs"),
        (17, 20, 17),
        ("3", 16, 3),
    ],
)
def test_an_output_count_is_an_integer_from_one_to_the_tasks_maximum(
    value: object, maximum: int, counted: int | str
) -> None:
    if isinstance(counted, int):
        assert check_output_count(value, maximum) == counted
        return
    with pytest.raises(OxenValidationError, match=counted) as info:
        check_output_count(value, maximum)
    assert info.value.field == "num_outputs"


def test_listing_is_complete_only_when_it_says_so() -> None:
    rows = [{"generation_id": "a", "status": "queued"}]
    assert GenerationList.model_validate({"count": 1, "generations": rows}).is_complete
    assert not GenerationList.model_validate({"count": 5, "generations": rows}).is_complete
    assert not GenerationList.model_validate({"generations": rows}).is_complete
