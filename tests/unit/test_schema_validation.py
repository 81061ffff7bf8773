from __future__ import annotations

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.hooks.validation import (
    prepare_parameters,
    shape_parameters,
    validate_parameters,
)
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


def test_valid_parameters_pass_and_without_a_schema_everything_given_is_sent() -> None:
    validate_parameters(MODEL, {"prompt": "x", "image_size": "square", "model": "m", "num_generations": 2})
    free = OxenModel.model_validate({"id": "free", "capabilities": {"output": ["image"]}})
    assert prepare_parameters(free, {"prompt": "x", "any": 1}) == {"prompt": "x", "any": 1}


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(MODEL, {"image_size": "square"})
    assert info.value.field == "prompt"


CLOSED = OxenModel.model_validate(
    {
        "id": "ideogram-v4",
        "capabilities": {"output": ["image"]},
        "request_schema": {
            "type": "object",
            "required": ["prompt"],
            "additionalProperties": False,
            "properties": {
                "prompt": {"type": "string", "basic": True, "x-order": 0, "renderType": "textarea"},
                "rendering_speed": {"type": "string", "enum": ["TURBO", "BALANCED", "QUALITY"], "x-order": 1},
                "seed": {"type": "integer"},
            },
        },
    }
)
OPEN = OxenModel.model_validate(
    {**CLOSED.model_dump(), "request_schema": {**SCHEMA, "additionalProperties": True}}
)


def test_a_closed_schema_refuses_unknown_names_even_when_the_task_allows_unlisted_names() -> None:
    """Without allow_unlisted: over a socket, in test_operator_emulator.py."""
    with pytest.raises(OxenValidationError) as info:
        prepare_parameters(CLOSED, {"prompt": "x", "rendering_sped": "TURBO"}, allow_unlisted=True)
    assert info.value.field == "rendering_sped"
    assert "did you mean 'rendering_speed'" in str(info.value)


def test_envelope_keys_are_never_model_parameters() -> None:
    shaped = shape_parameters(CLOSED, {"prompt": "x", "model": "m", "num_generations": 2})
    assert shaped == {"prompt": "x"}
    assert prepare_parameters(CLOSED, {"prompt": "x"}) == {"prompt": "x"}  # schema custom keys ignored


STRING_DURATION = OxenModel.model_validate(
    {
        "id": "i2v",
        "capabilities": {"output": ["video"]},
        "request_schema": {
            "type": "object",
            "properties": {
                "prompt": {"type": "string"},
                "duration": {"type": "string", "enum": ["5", "10"]},
                "input_image": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
                "steps": {"type": ["integer", "string"]},
            },
        },
    }
)


def test_text_is_sent_as_the_schema_declares_and_messages_show_json_types() -> None:
    """A string enum given an integer, and a number above its maximum: over sockets, in
    test_schema_fidelity.py and test_plan_emulator.py."""
    assert prepare_parameters(STRING_DURATION, {"prompt": "x", "duration": "5", "steps": "4"}) == {
        "prompt": "x",
        "duration": "5",
        "steps": "4",  # two declared types: the text is valid as it is, not guessed into one
    }
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(MODEL, {"prompt": "x", "num_inference_steps": "4"})
    assert (
        str(info.value)
        == "Invalid value for 'num_inference_steps' (m): \"4\" (string) is not of type integer"
    )


def test_a_validation_message_shows_input_urls_without_their_signatures() -> None:
    signed = [
        f"https://bucket.s3.amazonaws.com/in/{i}.png?X-Amz-Signature=abc{i}&X-Amz-Credential=k"
        for i in range(5)
    ]
    with pytest.raises(OxenValidationError) as info:
        validate_parameters(STRING_DURATION, {"prompt": "x", "input_image": signed})
    assert info.value.field == "input_image"
    assert "https://bucket.s3.amazonaws.com/in/4.png" in str(info.value)
    assert "Signature" not in str(info.value) and "Credential" not in str(info.value)


def test_what_counts_as_a_typo_where_the_schema_is_open() -> None:
    """A typo refused, and sent when the task allows unlisted names: over a socket, in
    test_schema_fidelity.py."""
    # Case and a two-letter slip in a long name are typos too; a short name allows one edit.
    for typo in ("Image_Size", "num_inference_stesp"):
        with pytest.raises(OxenValidationError):
            prepare_parameters(OPEN, {"prompt": "x", typo: 1})
    assert prepare_parameters(OPEN, {"prompt": "x", "style": "flat", "seed": 1}) == {
        "prompt": "x",
        "style": "flat",
        "seed": 1,
    }
