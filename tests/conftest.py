"""Test-suite set-up: a throwaway AIRFLOW_HOME before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile

# Airflow reads its configuration at import time, so this must run before any test module
# imports it. Each pytest session gets its own home, SQLite database and no example DAGs.
_HOME = tempfile.mkdtemp(prefix="oxen-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(os.path.dirname(os.path.dirname(__file__)), "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.pop("AIRFLOW_CONN_OXEN_DEFAULT", None)

pytest_plugins = ["tests.fixtures"]
