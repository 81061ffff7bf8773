"""The provider as Airflow sees it: registration, connection type, DAG files, ``airflow dags test``.

The tests that run Airflow's CLI (a process each, on one migrated home per module) are
``slow``: outside ``make test-fast``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import API_KEY, EmulatorControl, connection_json

REPO = Path(__file__).resolve().parents[2]


def _airflow(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    migrate = _airflow("db", "migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    return env


@pytest.fixture
def airflow_env(migrated_home: dict[str, str]) -> dict[str, str]:
    """The migrated home's environment, a copy each test may change."""
    return dict(migrated_home)


def test_dag_files_import_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "oxen_generate_images" in bag.dag_ids
    for dag_file in (REPO / "dags").glob("*.py"):
        assert any(str(dag_file) == dag.fileloc for dag in bag.dags.values()), dag_file


@pytest.mark.slow
def test_provider_is_registered_with_its_connection_type(airflow_env: dict[str, str]) -> None:
    providers = _airflow("providers", "list", "--output", "json", env=airflow_env)
    assert providers.returncode == 0, providers.stderr[-2000:]
    assert "airflow-provider-oxen" in {p["package_name"] for p in json.loads(providers.stdout)}

    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["oxen"]
    assert hook is not None and hook.hook_class_name == "airflow_provider_oxen.hooks.oxen.OxenHook"
    # What the connection form shows (the UI reads it through the core providers manager).
    behaviour = ProvidersManager().field_behaviours["oxen"]
    assert behaviour["relabeling"]["password"] == "API key"
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert behaviour["placeholders"]["host"] == "https://hub.oxen.ai"


@pytest.mark.slow
def test_connections_add_with_the_oxen_type(airflow_env: dict[str, str]) -> None:
    added = _airflow(
        "connections", "add", "oxen_default", "--conn-type", "oxen", "--conn-password", "KEY", env=airflow_env
    )
    assert added.returncode == 0, added.stderr[-2000:]
    assert "KEY" not in added.stdout
    with sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db") as db:
        assert db.execute("SELECT conn_type FROM connection WHERE conn_id = 'oxen_default'").fetchone() == (
            "oxen",
        )


@pytest.mark.slow
def test_airflow_dags_test_runs_the_example_dag(
    oxen_conn: EmulatorControl, airflow_env: dict[str, str]
) -> None:
    airflow_env["AIRFLOW_CONN_OXEN_DEFAULT"] = connection_json(oxen_conn.url)
    run = _airflow("dags", "test", "oxen_generate_images", env=airflow_env)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "state=failed" not in output
    assert API_KEY not in output
    with sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db") as db:
        states = dict(
            db.execute(
                "SELECT task_id || ':' || map_index, state FROM task_instance WHERE dag_id = ?",
                ("oxen_generate_images",),
            )
        )
        xcom = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'poster' AND key = 'return_value'",
            ("oxen_generate_images",),
        ).fetchone()
    assert set(states.values()) == {"success"}, states
    assert len(states) == 5  # poster, 2 mapped shots, enqueue_only, wait_for_banners
    [result] = json.loads(xcom[0])
    assert result["status"] == "succeeded" and result["result_url"].startswith(oxen_conn.url)
    assert (result["width"], result["height"], result["output_format"]) == (768, 1024, "png")
    # poster 1 + 2 shots + enqueue_only 2 images: each requested image enqueued once.
    assert oxen_conn.stats()["generations_created"] == 5
