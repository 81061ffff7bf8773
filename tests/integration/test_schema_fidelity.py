"""Refusing before spending what the model's schema, or an unreadable input, would waste; and API
failure texts without signatures — over a real socket, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_oxen.exceptions import (
    OxenGenerationFailedError,
    OxenInputFetchError,
    OxenUnrecoverableError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator, OxenGenerateVideoOperator
from tests.fixtures import EmulatorControl
from tests.integration.helpers import defer, generate_operator, run_trigger, task_context

TEXT_DURATION_I2V = "kling-video-v2-5-turbo-image-to-video"
SIGNED = "https://inputs.example.com/in/a.png?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef"


def _clip(duration: Any) -> OxenGenerateVideoOperator:
    return OxenGenerateVideoOperator(
        task_id="clip",
        model=TEXT_DURATION_I2V,
        prompt="Slow push-in",
        input_images="https://inputs.example.com/in/a.png",
        parameters={"duration": duration},
        wait_for_completion=False,
    )


def test_a_string_enum_duration_is_sent_as_text_and_an_integer_is_refused(oxen_conn: EmulatorControl) -> None:
    with pytest.raises(OxenValidationError) as info:
        _clip(5).execute(task_context())
    assert info.value.field == "duration" and info.value.allowed == ["5", "10"]
    assert str(info.value).endswith('5 (integer) is not one of "5", "10" (strings)')
    assert oxen_conn.enqueue_posts() == 0
    [generation_id] = _clip("5").execute(task_context())  # as a template renders it
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert post["json"]["duration"] == "5" and generation_id


def test_a_typo_on_an_open_schema_is_refused_unless_the_task_allows_unlisted_names(
    oxen_conn: EmulatorControl,
) -> None:
    # Its schema admits other names (no additionalProperties); its id, a slash, a dot and a colon,
    # is read and enqueued as one encoded path segment (test_error_mapping.py) end to end.
    model = "openai/gpt-image-1.5:latest"
    with pytest.raises(OxenValidationError) as info:
        generate_operator(model=model, parameters={"qualty": "low"}).execute(task_context())
    assert info.value.field == "qualty" and "did you mean 'quality'" in str(info.value)
    assert "allow_unlisted_parameters" in str(info.value)  # what to do if it is meant
    assert oxen_conn.enqueue_posts() == 0
    operator = generate_operator(
        model=model, parameters={"qualty": "low"}, allow_unlisted_parameters=True, wait_for_completion=False
    )
    operator.execute(task_context())
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert (post["json"]["model"], post["json"]["qualty"]) == (model, "low")


def test_models_for_a_kind_lists_only_models_whose_schema_takes_the_input(oxen_conn: EmulatorControl) -> None:
    with OxenHook() as hook:
        edits = {model.id for model in hook.models_for("image-to-image")}
        clips = {model.id for model in hook.models_for("image-to-video")}
        for model in hook.models_for("image-to-image") + hook.models_for("image-to-video"):
            assert "input_image" in (model.request_schema or {}).get("properties", {})
    assert edits == {"qwen-image-edit", "nano-banana-2-edit"}
    assert clips == {"kling-video-o3-pro-reference-to-video", TEXT_DURATION_I2V}


def test_an_input_oxen_cannot_fetch_fails_the_task_for_good_without_its_signature(
    oxen_conn: EmulatorControl, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9 of loopback: the emulator's fetch fails, as for a missing object.
    operator = OxenGenerateImageOperator(
        task_id="edit",
        model="qwen-image-edit",
        prompt="Autumn palette",
        input_images="http://127.0.0.1:9/in/a.png?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA",
        poll_interval=0.1,
        deferrable=True,
    )
    context = task_context(try_number=1)
    event = run_trigger(defer(operator, context).trigger)  # type: ignore[arg-type]
    assert event["status"] == "failed" and "input_image" in event["message"]
    with pytest.raises(OxenInputFetchError) as info:
        operator.execute_complete(context, event)
    assert isinstance(info.value, OxenUnrecoverableError)  # no Airflow retry: each would pay again
    text = f"{event} {info.value} {capsys.readouterr().out}"
    assert "http://127.0.0.1:9/in/a.png" in text
    assert "Signature" not in text and "deadbeef" not in text and "Credential" not in text


def test_a_failure_text_reaches_the_tasks_exception_and_log_without_its_signature(
    oxen_conn: EmulatorControl, capsys: pytest.CaptureFixture[str]
) -> None:
    oxen_conn.fault(type="generation_failure", error_message=f"Upstream could not read {SIGNED}.", count=1)
    operator = generate_operator(deferrable=True)
    context = task_context()
    event = run_trigger(defer(operator, context).trigger)  # type: ignore[arg-type]
    assert event["status"] == "failed"
    with pytest.raises(OxenGenerationFailedError) as info:
        operator.execute_complete(context, event)
    assert not isinstance(info.value, OxenUnrecoverableError)  # not the input's fault as far as we know
    log = capsys.readouterr().out  # Airflow's task logger writes to stdout outside a task runner
    text = f"{event} {info.value} {log}"
    assert "Upstream could not read https://inputs.example.com/in/a.png." in str(info.value)
    assert "failed: Upstream could not read https://inputs.example.com/in/a.png." in log
    assert "no error message given" not in log
    assert "Signature" not in text and "deadbeef" not in text
