from __future__ import annotations

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.hooks.validation import check_model_accepts_media, validate_parameters
from airflow_provider_oxen.models import OxenModel

SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "image_size": {"type": "string", "enum": ["square_hd", "square"]},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50},
    },
}
MODEL = OxenModel.model_validate({"id": "m", "request_schema": SCHEMA, "capabilities": {"output": ["image"]}})


def test_valid_parameters_pass() -> None:
    validate_parameters(MODEL, {"prompt": "x", "image_size": "square", "model": "m", "num_generations": 2})


def test_enum_error_names_field_and_allowed_values() -> None:
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(MODEL, {"prompt": "x", "image_size": "huge"})
    assert info.value.field == "image_size"
    assert info.value.allowed == ["square_hd", "square"]
    assert "square_hd" in str(info.value)


def test_missing_required_field_is_named() -> None:
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(MODEL, {"image_size": "square"})
    assert info.value.field == "prompt"


def test_range_error_is_named() -> None:
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(MODEL, {"prompt": "x", "num_inference_steps": 500})
    assert info.value.field == "num_inference_steps"


def test_model_without_schema_accepts_anything() -> None:
    validate_parameters(OxenModel.model_validate({"id": "free", "request_schema": None}), {"anything": 1})


def test_text_model_is_refused() -> None:
    with pytest.raises(OxenValidationError) as info:
        check_model_accepts_media(
            OxenModel.model_validate({"id": "llm", "capabilities": {"output": ["text"]}})
        )
    assert info.value.field == "model"
