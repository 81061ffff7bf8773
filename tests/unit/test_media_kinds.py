"""Edits and video through the same operator: inputs, model tasks, the video subclass."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.inputs import input_image_value, input_sources, presign, takes_several, url_expiry
from airflow_provider_oxen.ledger import request_fingerprint
from airflow_provider_oxen.models import (
    OxenModel,
    build_image_request,
    media_type_of,
    model_tasks,
    models_for,
)
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator, OxenGenerateVideoOperator
from airflow_provider_oxen.redact import strip_query, strip_signature


def _model(
    model_id: str, inputs: list[str], outputs: list[str], schema: dict[str, Any] | None = None
) -> OxenModel:
    return OxenModel.model_validate(
        {"id": model_id, "capabilities": {"input": inputs, "output": outputs}, "request_schema": schema}
    )


T2I = _model("ideogram-v4", ["text"], ["image"])
EDIT_ONE = _model(
    "qwen-image-edit",
    ["text", "image"],
    ["image"],
    {"type": "object", "properties": {"prompt": {"type": "string"}, "input_image": {"type": "string"}}},
)
EDIT_MANY = _model(
    "nano-banana-2-edit",
    ["text", "image"],
    ["image"],
    {"type": "object", "properties": {"input_image": {"type": "array", "items": {"type": "string"}}}},
)
T2V = _model("kling-t2v", ["text"], ["video"])
I2V = _model("kling-i2v", ["text", "image"], ["video"])
LLM = _model("gpt-oss-120b", ["text"], ["text"])


def test_models_are_classified_by_what_they_take_and_make_and_an_unknown_task_names_the_valid_ones() -> None:
    assert model_tasks(T2I) == {"text-to-image"}
    assert model_tasks(EDIT_ONE) == {"image-to-image"}
    assert model_tasks(T2V) == {"text-to-video"}
    assert model_tasks(I2V) == {"image-to-video"}
    assert model_tasks(LLM) == set()
    assert [m.id for m in models_for([T2I, EDIT_ONE, T2V, I2V, LLM], "image-to-video")] == ["kling-i2v"]
    assert (media_type_of(T2V), media_type_of(EDIT_ONE)) == ("video", "image")
    with pytest.raises(OxenValidationError, match="text-to-video"):
        models_for([T2I], "text-to-podcast")


def test_inputs_come_from_uris_urls_and_transfer_records() -> None:
    records = [{"s3_uri": "s3://b/k1.png"}, {"s3_uri": "s3://b/k2.png"}]
    assert input_sources(records) == ["s3://b/k1.png", "s3://b/k2.png"]
    assert input_sources("https://x/y.png") == ["https://x/y.png"]
    assert input_sources(None) == []
    assert presign(["https://a/b.png"], aws_conn_id=None, expiry=60) == ["https://a/b.png"]  # URLs as given
    with pytest.raises(OxenValidationError) as info:
        input_sources(["/etc/passwd"])
    assert info.value.field == "input_images"


def test_input_image_is_one_url_or_an_array_as_the_schema_says() -> None:
    assert (
        takes_several(EDIT_ONE) is False and takes_several(EDIT_MANY) is True and takes_several(T2I) is None
    )
    assert input_image_value(EDIT_ONE, ["https://a"]) == "https://a"
    assert input_image_value(EDIT_MANY, ["https://a", "https://b"]) == ["https://a", "https://b"]
    with pytest.raises(OxenValidationError, match="expand"):
        input_image_value(EDIT_ONE, ["https://a", "https://b"])


def test_presigned_inputs_live_as_long_as_the_task_may_wait_within_what_s3_allows() -> None:
    assert url_expiry(600) == 6 * 3600  # the queue may hold a generation longer than one render
    assert url_expiry(12 * 3600) == 12 * 3600
    assert url_expiry(30 * 24 * 3600) == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "http://s3/b/k.png?X-Amz-Signature=aaa&X-Amz-Date=1",
            "http://s3/b/k.png?X-Amz-Signature=bbb&X-Amz-Date=2",
        ),
        (
            "https://h/k?id=1&AWSAccessKeyId=A&Expires=1&Signature=s",
            "https://h/k?id=1&AWSAccessKeyId=A&Expires=2&Signature=t",
        ),
        ("https://g/k?X-Goog-Signature=a&X-Goog-Date=1", "https://g/k?x-goog-signature=b&X-Goog-Date=2"),
        ("https://a/c/k?sv=1&se=2026&sp=r&sig=a%2B", "https://a/c/k?sv=1&se=2027&sp=r&sig=b"),
    ],
)
def test_a_presigned_input_keeps_the_same_fingerprint_on_every_try(first: str, second: str) -> None:
    assert request_fingerprint("m", {"input_image": [first]}, 1) == request_fingerprint(
        "m", {"input_image": [second]}, 1
    )


def test_inputs_that_differ_in_their_query_have_different_fingerprints() -> None:
    one, two = ({"input_image": f"https://h/img?id={i}&X-Amz-Signature=s"} for i in (1, 2))
    assert request_fingerprint("m", one, 1) != request_fingerprint("m", two, 1)
    assert strip_signature("https://u:p@h/img?id=1&X-Amz-Date=2&v=a%20b#f") == "https://h/img?id=1&v=a%20b"
    assert strip_query("https://h/img?id=1") == "https://h/img"  # what is stored or logged: no query at all


def test_multi_prompt_replaces_prompt_but_not_both() -> None:
    request = build_image_request("kling-t2v", None, multi_prompt=["shot one", "shot two"], duration=5)
    assert request.parameters() == {"multi_prompt": ["shot one", "shot two"], "duration": 5}
    with pytest.raises(OxenValidationError) as info:
        build_image_request("kling-t2v", "p", multi_prompt=["a"])
    assert info.value.field == "multi_prompt"
    with pytest.raises(OxenValidationError) as missing:
        build_image_request("kling-t2v", None)
    assert missing.value.field == "prompt"


def test_video_and_image_operators_take_the_models_parameters_and_input_images() -> None:
    operator = OxenGenerateVideoOperator(
        task_id="clip", prompt="A pour-over", parameters={"duration": "4", "aspect_ratio": "16:9"}
    )
    assert operator.model == "kling-video-v2-6-pro-text-to-video"
    assert operator.timeout >= 3600 and operator.poll_interval >= 10
    # The model's parameters as given; templated text is typed by the model's schema when sent
    # (test_operator_emulator.py::test_non_deferrable_returns_typed_results).
    given = {"prompt": "A pour-over", "duration": "4", "aspect_ratio": "16:9"}
    assert operator.build_request().parameters() == given
    assert {"parameters", "input_images"} <= set(operator.template_fields)
    edit = OxenGenerateImageOperator(task_id="edit", prompt="Make it blue", input_images="s3://b/k.png")
    assert "input_images" in edit.template_fields and edit.input_images == "s3://b/k.png"
    shots = OxenGenerateVideoOperator(task_id="c", parameters={"multi_prompt": ["a", "b"]})
    assert shots.build_request().parameters() == {"multi_prompt": ["a", "b"]}
