"""The cost plan against the emulator over a real socket: rendered, checked, priced, never enqueued."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator, OxenGenerateVideoOperator
from airflow_provider_oxen.operators.plan import OxenCostPlanOperator
from airflow_provider_oxen.plan import plan_dag, plan_run
from tests.fixtures import EmulatorControl, connection_json
from tests.integration.helpers import with_pricing

DAGS = Path(__file__).parent / "dags"
REPO = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _no_spend(emulator: EmulatorControl) -> None:
    assert emulator.enqueue_posts() == 0
    assert emulator.stats()["generations_created"] == 0


def _broken_campaign() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["oxen_marketing_campaign"]


def test_the_campaign_plan_finds_the_broken_clip_and_enqueues_nothing(oxen_conn: EmulatorControl) -> None:
    dag = _broken_campaign()
    plan = plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN))
    rows = {row.task: row for row in plan.rows}
    assert set(rows) == {"generate", "variants", "clip"}
    # Both image steps are mapped over what upstream tasks push: listed, not guessed.
    assert "upstream" in rows["generate"].unknown and "upstream" in rows["variants"].unknown
    # The clip's input image comes from XCom: a placeholder stands in, and the typo is found.
    assert "aspect_ration" in rows["clip"].problem and "did you mean 'aspect_ratio'" in rows["clip"].problem
    assert plan.problems and "1 problem(s)." in plan.table()
    _no_spend(oxen_conn)
    assert oxen_conn.route_count("GET /api/ai/models/{id}") >= 1  # checked against the live schema


def _demo_dag(**clip: Any) -> DAG:
    with DAG("plan_demo", schedule=None, params={"n": 2, "seconds": 5, "clip_max": "1"}) as dag:
        plan = OxenCostPlanOperator(task_id="plan", budget="{{ dag_run.conf.get('budget', '') }}")
        posters = OxenGenerateImageOperator.partial(
            task_id="posters", model="ideogram-v4", num_outputs="{{ params.n }}"
        ).expand(prompt=["A red poster", "A blue poster", "A green poster"])
        video = OxenGenerateVideoOperator(
            task_id="clip",
            prompt="A slow pan",
            model="kling-video-v2-6-pro-text-to-video",
            parameters={"duration": "{{ params.seconds }}", **clip},
            max_cost="{{ params.clip_max }}",
        )
        edit = OxenGenerateImageOperator(
            task_id="edit",
            model="qwen-image-edit",
            prompt="In autumn colours",
            input_images="{{ ti.xcom_pull(task_ids='posters')[0][0]['result_url'] }}",
        )
        unknown = OxenGenerateImageOperator(
            task_id="from_upstream", model="{{ ti.xcom_pull(task_ids='pick') }}", prompt="p"
        )
        plan >> [posters, video, edit, unknown]
    return dag


def test_mapped_literals_params_and_conf_are_rendered_and_priced(oxen_conn: EmulatorControl) -> None:
    dag = _demo_dag()
    plan = plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN))
    rows = {row.task: row for row in plan.rows}
    assert [rows[f"posters[{i}]"].cost for i in range(3)] == [Decimal("0.12")] * 3  # 2 x 0.06
    assert rows["posters[0]"].outputs == "2 image(s)"
    assert (rows["clip"].outputs, rows["clip"].cost) == ("1 x 5 s", Decimal("0.35"))
    assert rows["edit"].cost == Decimal("0.03") and not rows["edit"].problem
    assert rows["from_upstream"].unknown == "model from upstream XCom"
    assert "plan" not in rows
    assert plan.total == Decimal("0.74") and plan.problems == []

    # The run's conf changes what is rendered, as it would in the run.
    smaller = plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN, conf={"n": 1, "seconds": 10}))
    assert smaller.total == Decimal("0.18") + Decimal("0.70") + Decimal("0.03")
    _no_spend(oxen_conn)


def _clip(dag: DAG, **conf: Any) -> Any:
    return next(
        row
        for row in plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN, conf=conf)).rows
        if row.task == "clip"
    )


def test_max_cost_and_bad_values_are_problems(oxen_conn: EmulatorControl) -> None:
    dag = _demo_dag()
    # The run's own max_cost check: 5 s x 0.07 = 0.35 is above 0.30.
    assert (
        "would cost 0.35 by the model's pricing, above max_cost 0.30" in _clip(dag, clip_max="0.30").problem
    )
    assert "15 (integer) is greater than the maximum of 10" in _clip(dag, seconds=15).problem
    with DAG("chat", schedule=None) as odd:
        OxenGenerateImageOperator(task_id="chat", model="gpt-oss-120b", prompt="p", max_cost="1")
    (row,) = plan_dag(odd, plan_run(odd.dag_id, logical_date=WHEN)).rows
    assert "does not generate images or video" in row.problem and row.cost is None
    _no_spend(oxen_conn)


def test_the_plan_operator_fails_the_run_before_any_spend(oxen_conn: EmulatorControl) -> None:
    dag = _demo_dag()
    operator = dag.get_task("plan")
    within = plan_run(dag.dag_id, logical_date=WHEN, conf={"budget": "0.74"})
    operator.budget = "0.74"
    assert operator.execute({"dag_run": within}) == "0.74"  # type: ignore[arg-type]
    operator.budget = "0.50"
    with pytest.raises(AirflowFailException, match=r"exceeds the budget 0\.50"):
        operator.execute({"dag_run": within})  # type: ignore[arg-type]
    broken = _broken_campaign()
    first = OxenCostPlanOperator(task_id="cost_plan", dag=broken)
    with pytest.raises(AirflowFailException, match="aspect_ration"):
        first.execute({"dag_run": plan_run(broken.dag_id, logical_date=WHEN)})  # type: ignore[arg-type]
    _no_spend(oxen_conn)


def test_max_cost_with_unknown_pricing_is_a_problem(oxen_conn: EmulatorControl) -> None:
    with_pricing("ideogram-v4", pricing={"method": "token", "cost_per_token": 0.001})
    with DAG("priced_by_token", schedule=None) as dag:
        OxenGenerateImageOperator(task_id="capped", model="ideogram-v4", prompt="p", max_cost="1")
        OxenGenerateImageOperator(task_id="uncapped", model="ideogram-v4", prompt="p")
    capped, uncapped = plan_dag(dag, plan_run(dag.dag_id, logical_date=WHEN)).rows
    assert "max_cost 1 cannot be enforced" in capped.problem and capped.cost is None
    # Without max_cost the run would go ahead: unpriced, but not a problem.
    assert (uncapped.problem, uncapped.cost, uncapped.outputs) == ("", None, "1 image(s)")
    _no_spend(oxen_conn)


def _airflow_env(emulator: EmulatorControl, home: Path) -> dict[str, str]:
    """A throwaway Airflow home (SQLite, no examples) with oxen_default at the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW_CONN_OXEN_DEFAULT=connection_json(emulator.url),
    )
    return env


@pytest.mark.slow  # two Airflow start-ups: over 5 s on a busy machine
def test_the_command_prints_the_plan_and_fails_on_problems(
    oxen_conn: EmulatorControl, tmp_path: Path
) -> None:
    env = _airflow_env(oxen_conn, tmp_path)
    command = [sys.executable, "-m", "airflow_provider_oxen", "plan", "oxen_marketing_campaign"]
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--dag-folder", str(DAGS), "--logical-date", "2026-03-01", "--budget", "5"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "clip" in done.stdout and "did you mean 'aspect_ratio'" in done.stdout
    assert "of a budget of 5. Nothing was enqueued." in done.stdout
    missing = subprocess.run(
        [*command[:-1], "no_such_dag", "--dag-folder", str(DAGS)], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "'no_such_dag' not found" in missing.stderr
    assert time.monotonic() - started < 60
    _no_spend(oxen_conn)


@pytest.mark.slow  # a real Airflow run (airflow dags test): the operator in Airflow's task runner
def test_the_plan_task_fails_a_real_run_before_any_spend(oxen_conn: EmulatorControl, tmp_path: Path) -> None:
    env = _airflow_env(oxen_conn, tmp_path)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, timeout=300, check=True)
    run = subprocess.run(
        [*airflow, "dags", "test", "oxen_plan_first"], env=env, capture_output=True, text=True, timeout=300
    )
    out = run.stdout + run.stderr
    assert "posters[1]  ideogram-v4  3 image(s)  0.18" in out  # params rendered per map index
    assert "the estimated total 0.36 exceeds the budget 0.10" in out and "state=failed" in out
    _no_spend(oxen_conn)
