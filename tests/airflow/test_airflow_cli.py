"""The provider as Airflow sees it: registration, connection type, DAG files.

The test that runs Airflow's CLI (on a migrated home) is ``slow``: outside ``make test-fast``.
``airflow dags test`` of the example DAG runs from the installed wheel in tests/release/test_wheel.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _airflow(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def airflow_env(tmp_path: Path) -> dict[str, str]:
    """A migrated throwaway Airflow home's environment."""
    home = tmp_path
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


def test_dag_files_import_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "oxen_generate_images" in bag.dag_ids
    for dag_file in (REPO / "dags").glob("*.py"):
        assert any(str(dag_file) == dag.fileloc for dag in bag.dags.values()), dag_file


def test_provider_is_registered_with_its_connection_types() -> None:
    """``airflow providers list`` from an installed wheel: tests/release/test_wheel.py."""
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    assert (
        hooks["oxen"] is not None
        and hooks["oxen"].hook_class_name == "airflow_provider_oxen.hooks.oxen.OxenHook"
    )
    c2pa = hooks["oxen_c2pa"]
    assert c2pa is not None and c2pa.hook_class_name.endswith("provenance.c2pa.C2paSigningHook")
    # What the signing connection's form shows (the UI reads it through the core providers
    # manager); the Oxen form, as the api-server hands it to the UI: tests/e2e/test_real_airflow.py.
    manager = ProvidersManager()
    assert manager.field_behaviours["oxen_c2pa"]["relabeling"]["password"] == "Private key (PEM)"
    assert "extra__oxen_c2pa__certificate_chain" in manager.connection_form_widgets


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
