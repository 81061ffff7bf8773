"""What a person sees while waiting and afterwards: progress lines, grid labels, no signatures."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest

from airflow_provider_oxen.models import Generation
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.waiting import ProgressLog, StatusTracker

SIGNED = "https://files.example/g1/image.png?expires=1&signature=abc123"


def _row(generation_id: str, status: str, **fields: Any) -> Generation:
    return Generation.model_validate({"generation_id": generation_id, "status": status, **fields})


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    warning = info


def test_progress_is_logged_when_it_changes_at_a_bounded_rate() -> None:
    lines = _Lines()
    tracker = StatusTracker(["a", "b"], logger=lines)
    progress = ProgressLog(tracker, lines, min_interval=30, quiet_interval=300)
    assert progress.maybe_log(now=0)
    tracker.update(_row("a", "processing"))
    assert not progress.maybe_log(now=10)  # changed, but too soon
    assert progress.maybe_log(now=31)
    assert not progress.maybe_log(now=100)  # unchanged
    assert progress.maybe_log(now=400)  # unchanged for long: a sign of life
    batch = [line for line in lines.lines if line.startswith("Oxen batch progress")]
    assert batch == [
        "Oxen batch progress: 0 of 2 done, 0 rendering, 2 queued",
        "Oxen batch progress: 0 of 2 done, 1 rendering, 1 queued",
        "Oxen batch progress: 0 of 2 done, 1 rendering, 1 queued",
    ]


def _label(operator: OxenGenerateImageOperator, map_index: int = 0) -> str:
    assert operator.map_index_template
    # Airflow renders it with its strict undefined, the task and its task instance in the context.
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(operator.map_index_template)
    return template.render(task=operator, ti=SimpleNamespace(map_index=map_index))


def test_mapped_generate_tasks_are_labelled_by_prompt_and_size() -> None:
    long_prompt = "A ceramic coffee mug on a marble counter, studio light, shallow depth of field"
    operator = OxenGenerateImageOperator(
        task_id="t", prompt=long_prompt, parameters={"image_size": "landscape_16_9"}, num_outputs=2
    )
    label = _label(operator)
    assert label.startswith("A ceramic coffee mug on a marble counter") and label.endswith(
        "· landscape_16_9, 2 images"
    )
    assert len(label) < 90
    # Airflow renders it strictly: parameters without an image_size are fine.
    assert _label(OxenGenerateImageOperator(task_id="t", prompt="Logo", parameters={"seed": 1})) == "Logo"
    # The grid's "Map Index" column of a plain task (the campaign's clip) shows no prompt.
    assert _label(OxenGenerateImageOperator(task_id="t", prompt="Logo"), map_index=-1) == ""
    # A DAG author's own map_index_template wins.
    own = OxenGenerateImageOperator(task_id="t", prompt="p", map_index_template="{{ task.task_id }}")
    assert _label(own) == "t"


def test_emulator_access_log_has_no_query(caplog: pytest.LogCaptureFixture) -> None:
    import httpx

    from airflow_provider_oxen.emulator import EmulatorConfig, run_emulator_in_thread

    caplog.set_level(logging.INFO, logger="airflow_provider_oxen.emulator.access")
    with run_emulator_in_thread(EmulatorConfig(api_key="k", log_requests=True)) as handle:
        httpx.get(f"{handle.url}/files/x/y.png?expires=1&signature=secret-sig")
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_oxen.emulator.access"]
    assert any("/files/x/y.png" in line for line in lines)
    assert not any("secret-sig" in line for line in lines)


def test_each_status_change_is_logged_the_success_that_ends_the_batch_too() -> None:
    lines = _Lines()
    tracker = StatusTracker(["a", "b", "c", "d"], logger=lines)
    tracker.update(_row("a", "processing"))
    tracker.update(_row("a", "succeeded"))
    tracker.update(_row("b", "failed", error_message="boom"))
    tracker.update(_row("d", "processing"))
    assert tracker.progress() == "2 of 4 done (1 failed), 1 rendering, 1 queued"
    tracker.update(_row("d", "succeeded"))
    assert not tracker.done
    tracker.update(_row("c", "succeeded"))  # the trigger's log names every generation it saw end
    assert tracker.done and tracker.pending == []
    assert [line.split(" after ")[0] for line in lines.lines] == [
        "Oxen generation a is processing",
        "Oxen generation a is succeeded",
        "Oxen generation b failed",
        "Oxen generation d is processing",
        "Oxen generation d is succeeded",
        "Oxen generation c is succeeded",
    ]
