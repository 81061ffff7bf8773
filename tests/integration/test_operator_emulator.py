"""Operator, trigger and sensor against the emulator, in-process (the real-Airflow runs are in tests/e2e)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_oxen.exceptions import (
    OxenGenerationFailedError,
    OxenGenerationTimeoutError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.sensors.generation import OxenGenerationSensor
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
from tests.fixtures import API_KEY, EmulatorControl, FakeTaskStateStore
from tests.integration.helpers import crash
from tests.integration.helpers import defer as _defer
from tests.integration.helpers import generate_operator as _operator
from tests.integration.helpers import run_trigger as _run_trigger
from tests.integration.helpers import task_context as _context


def test_non_deferrable_returns_typed_results(oxen_conn: EmulatorControl) -> None:
    operator = _operator(
        deferrable=False,
        num_outputs=2,
        # As a template renders it: text, sent as the integer the model's schema declares.
        parameters={"image_size": "portrait_4_3", "seed": "42", "output_format": "png"},
    )
    results = operator.execute(_context())
    assert len(results) == 2
    for result in results:
        assert result["status"] == "succeeded"
        assert result["result_url"].startswith(oxen_conn.url)
        assert (result["width"], result["height"], result["output_format"]) == (768, 1024, "png")
        assert result["seed"] == 42 and result["prompt"] == "A poster" and result["model"] == "ideogram-v4"
        assert result["cost"] and result["render_seconds"] is not None and result["queue_seconds"] is not None
        assert result["enqueued_at"] < result["completed_at"]  # the row's documented times, read
        assert result["parameters"]["rendering_speed"] == "BALANCED"  # the model's default, reported


def test_deferrable_defers_with_ids_only_then_completes(oxen_conn: EmulatorControl) -> None:
    operator = _operator(deferrable=True, num_outputs=3)
    context = _context()
    deferred = _defer(operator, context)
    trigger = deferred.trigger
    assert isinstance(trigger, OxenGenerationTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_oxen.triggers.generation.OxenGenerationTrigger"
    assert set(kwargs) == {
        "generation_ids",
        "oxen_conn_id",
        "poll_interval",
        "deadline",
        "wait_strategy",
        "cancel_on_timeout",
        "cancel_on_kill",
    }
    assert API_KEY not in repr(kwargs) and len(kwargs["generation_ids"]) == 3
    event = _run_trigger(OxenGenerationTrigger(**kwargs))
    results = operator.execute_complete(context, event)
    assert [r["generation_id"] for r in results] == kwargs["generation_ids"]
    assert API_KEY not in repr(results)
    # Result URLs are signed (sig=...): the trigger's event and the XCom keep them without it.
    assert "sig=" not in repr(event) and all("?" not in r["result_url"] for r in results)
    # The trigger learnt of completion from events; the worker filled in cost and timings once.
    assert all(r["cost"] and r["render_seconds"] is not None and r["completed_at"] for r in results)


def test_timeout_cancels_unfinished_generations(oxen_conn: EmulatorControl) -> None:
    oxen_conn.fault(type="stall_generation", count=1)
    operator = _operator(deferrable=True, timeout=1)
    context = _context()
    trigger = _defer(operator, context).trigger
    event = _run_trigger(trigger)
    assert event["status"] == "timeout"
    [generation_id] = event["generation_ids"]
    # The error names the generation that did not finish (not "?"), and says it was cancelled.
    assert event["pending"] == [generation_id] and "1 of 1" in event["message"]
    with pytest.raises(OxenGenerationTimeoutError, match=f"{generation_id}.*cancelled"):
        operator.execute_complete(context, event)
    assert len(oxen_conn.requests(method="DELETE")) == 1
    with OxenHook() as hook:
        assert hook.get_generation(generation_id).status == "cancelled"


def test_trigger_on_kill_cancels_what_is_rendering(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=30)
    operator = _operator(deferrable=True, num_outputs=2)
    trigger = _defer(operator, _context()).trigger

    async def kill_while_waiting() -> None:
        task = asyncio.create_task(_drain(trigger))
        await asyncio.sleep(0.5)
        task.cancel()  # what the triggerer does when the user marks the task failed
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.on_kill()

    asyncio.run(kill_while_waiting())
    with OxenHook() as hook:
        assert {hook.get_generation(i).status for i in trigger.generation_ids} == {"cancelled"}


async def _drain(trigger: OxenGenerationTrigger) -> None:
    async for _ in trigger.run():
        pass


def test_operator_on_kill_cancels_a_worker_side_wait(oxen_conn: EmulatorControl) -> None:
    oxen_conn.configure(render_seconds=30)
    operator = _operator(deferrable=False, timeout=5)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            operator.execute(_context())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.time() + 5
    while not operator._in_flight and time.time() < deadline:
        time.sleep(0.05)
    operator.on_kill()
    worker.join(10)
    assert len(oxen_conn.requests(method="DELETE")) == 1
    with OxenHook() as hook:
        assert hook.get_generation(operator._in_flight[0]).status == "cancelled"


@pytest.mark.parametrize(
    ("model", "parameters", "field", "says"),
    [
        ("ideogram-v4", {"rendering_speed": "WARP"}, "rendering_speed", "QUALITY"),
        ("ideogram-v4", {"image_size": "huge"}, "image_size", "square_hd"),
        ("ideogram-v4", {"acceleration": "ludicrous"}, "acceleration", "regular"),
        ("ideogram-v4", {"rendering_sped": "TURBO"}, "rendering_sped", "did you mean 'rendering_speed'"),
        ("black-forest-labs-flux-2-klein-4b", {"num_inference_steps": 500}, "num_inference_steps", "maximum"),
        ("no-such-model", {}, "model", "Unknown Oxen model"),
        ("gpt-oss-120b", {}, "model", "does not generate images"),
    ],
)
def test_what_the_model_refuses_fails_before_any_enqueue(
    oxen_conn: EmulatorControl, model: str, parameters: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(OxenValidationError) as info:
        _operator(model=model, parameters=parameters).execute(_context())
    assert info.value.field == field and says in str(info.value)
    assert oxen_conn.enqueue_posts() == 0


def test_retry_after_a_crash_resumes_instead_of_paying_again(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = crash(monkeypatch, _operator(deferrable=True, num_outputs=6), "before deferring")
    assert oxen_conn.stats()["generations_created"] == 6

    deferred = _defer(_operator(deferrable=True, num_outputs=6), _context(store))
    assert oxen_conn.stats()["generations_created"] == 6
    assert oxen_conn.enqueue_posts() == 2  # 4 + 2, all from the first try
    event = _run_trigger(deferred.trigger)
    assert len(_operator().execute_complete(_context(store), event)) == 6


def test_retry_after_a_failure_replaces_only_the_failed_generation(oxen_conn: EmulatorControl) -> None:
    store = FakeTaskStateStore()
    oxen_conn.fault(type="generation_failure", error_message="flaky", count=1)
    operator = _operator(deferrable=False, num_outputs=3)
    with pytest.raises(OxenGenerationFailedError, match="flaky"):  # the worker-side wait's message
        operator.execute(_context(store))
    results = _operator(deferrable=False, num_outputs=3).execute(_context(store))
    assert len(results) == 3
    assert oxen_conn.stats()["generations_created"] == 4
    assert [
        p["json"]["num_generations"] for p in oxen_conn.requests(method="POST", path="/api/ai/queue")
    ] == [3, 1]


def test_fire_and_forget_then_sensor_deferred_or_poking(oxen_conn: EmulatorControl) -> None:
    ids = _operator(wait_for_completion=False, num_outputs=2).execute(_context())
    assert len(ids) == 2 and all(isinstance(i, str) for i in ids)
    sensor = OxenGenerationSensor(task_id="wait", generation_ids=ids, poll_interval=0.1, timeout=30)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    trigger = info.value.trigger
    assert trigger.cancel_on_kill is False and trigger.cancel_on_timeout is False
    results = sensor.execute_complete({}, _run_trigger(trigger))
    assert [r["generation_id"] for r in results] == ids

    poking = OxenGenerationSensor(task_id="wait", generation_ids=ids[0], deferrable=False, poll_interval=0.1)
    assert (value := poking.poke({})) and value.xcom_value[0]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("fault", "timeout", "status"),
    [("generation_failure", 10, "failed"), ("stall_generation", 1, "timeout")],
)
def test_sensor_soft_fail_skips_on_failure_and_timeout_and_never_cancels(
    oxen_conn: EmulatorControl, fault: str, timeout: int, status: str
) -> None:
    oxen_conn.fault(type=fault, count=1)
    [generation_id] = _operator(wait_for_completion=False).execute(_context())
    sensor = OxenGenerationSensor(
        task_id="w", generation_ids=[generation_id], soft_fail=True, poll_interval=0.1, timeout=timeout
    )
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    event = _run_trigger(info.value.trigger)
    assert event["status"] == status
    with pytest.raises(AirflowSkipException):
        sensor.execute_complete({}, event)
    hard = OxenGenerationSensor(task_id="w", generation_ids=[generation_id], timeout=timeout)
    with pytest.raises(OxenGenerationFailedError if status == "failed" else OxenGenerationTimeoutError):
        hard.execute_complete({}, event)
    assert oxen_conn.requests(method="DELETE") == []  # a sensor never cancels
