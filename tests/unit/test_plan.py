"""The cost plan's table, total and budget, and what it cannot know before a run (no HTTP)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.plan import RUN_TIME, Plan, PlanRow, is_run_time, plan_dag, plan_run

BASE = "http://oxen.test"
WHEN = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _plan(budget: str | None = None) -> Plan:
    return Plan(
        rows=[
            PlanRow("posters[0]", "ideogram-v4", "2 image(s)", Decimal("0.12")),
            PlanRow("clip", "kling", "1 x 5 s", Decimal("0.35")),
            PlanRow("edit", "qwen-image-edit", problem="Unknown parameter 'sed'"),
            PlanRow("variants", unknown="mapped over what an upstream task pushes"),
        ],
        budget=None if budget is None else Decimal(budget),
    )


def test_total_counts_what_is_priced_and_problems_are_the_rows_and_the_budget() -> None:
    assert _plan().total == Decimal("0.47")
    assert Plan().total == 0 and Plan().problems == [] and "Estimated total: 0." in Plan().table()
    assert _plan().problems == ["edit: Unknown parameter 'sed'"]
    assert _plan("0.47").problems == ["edit: Unknown parameter 'sed'"]  # at the budget is within it
    assert _plan("0.46").problems[-1] == "the estimated total 0.47 exceeds the budget 0.46"


def test_the_table() -> None:
    lines = _plan("1").table().splitlines()
    assert lines[0].split() == ["task", "model", "outputs", "estimated", "cost", "problems"]
    assert lines[1].split() == ["posters[0]", "ideogram-v4", "2", "image(s)", "0.12"]
    assert lines[3].endswith("?               Unknown parameter 'sed'")
    assert Plan([PlanRow("x", problem="p")]).table().splitlines()[1].split() == ["x", "?", "?", "?", "p"]
    assert lines[4].split()[:3] == ["variants", "(known", "at"]
    assert "Estimated total of the known tasks: 0.47 of a budget of 1. Nothing was enqueued." in lines
    assert "Not known until upstream tasks run: variants (mapped over what an upstream task pushes)." in lines
    assert lines[-1] == "1 problem(s)."
    assert Plan(rows=[PlanRow("a", "m", "1 image(s)", Decimal(1))]).table().endswith("No problems.")


def test_run_time_values_are_found_wherever_they_are() -> None:
    assert is_run_time(RUN_TIME["clip"]["model"]) and is_run_time(RUN_TIME.output)
    assert is_run_time({"duration": f"{RUN_TIME}"}) and is_run_time([1, ("a", RUN_TIME)])
    assert not is_run_time({"duration": 5, "prompt": "known"}) and not is_run_time(None)


def test_a_template_error_is_a_problem_not_a_crash() -> None:
    with DAG("bad_template", schedule=None) as dag:
        OxenGenerateImageOperator(task_id="gen", prompt="{{ no_such_thing.field }}")
    (row,) = plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN)).rows
    assert row.problem.startswith("cannot be rendered: ") and "no_such_thing" in row.problem
