"""E2E fixtures shared by the modules of tests/e2e: a moto S3 server and one real Airflow (with
its Oxen emulator, a process) on loopback (see :mod:`tests.cluster`).

Starting Airflow is the expensive part, so every module of this package shares the cluster
(stopped after the package's last test): tests look only at their own DAG runs, and
``emulator`` resets the emulator's counters before each test. Each test's outcome is made
visible to fixtures (to dump Airflow's logs when it failed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import REPO, Cluster
from tests.fixtures import EmulatorControl, moto_s3_client, moto_s3_server
from tests.transfers.conftest import aws_connection_json

EXAMPLE_DAG = "oxen_generate_images"
FAILURE_DAG = "oxen_e2e_failure"
CRASH_DAG = "oxen_e2e_crash"
STALL_DAG = "oxen_e2e_stall"
MANY_DAG = "oxen_e2e_many"
CAMPAIGN_DAG = "oxen_marketing_campaign"
STORE_DAG = "oxen_e2e_store"
LINEAGE_DAG = "oxen_e2e_lineage"
RENDER_SECONDS = 3.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto in server mode) on loopback, for the campaign DAG."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A boto3 client of that S3 server (what the tests create buckets with and read back)."""
    return moto_s3_client(s3_endpoint)


@pytest.fixture(scope="package")
def lineage_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where OpenLineage's file transport appends the events of lineage-enabled DAGs, one a line."""
    return tmp_path_factory.mktemp("openlineage") / "events.jsonl"


@pytest.fixture(scope="package")
def cluster(s3_endpoint: str, lineage_log: Path) -> Iterator[Cluster]:
    # The shipped example DAGs (and the campaign specs beside them) plus the e2e-only ones.
    env = {
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(s3_endpoint),
        # The campaign tests answer the review themselves: no timeout during the test.
        "OXEN_CAMPAIGN_REVIEW_SECONDS": "3600",
        # Lineage only for DAGs that ask (enable_lineage): the others run as without OpenLineage.
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage_log), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__SELECTIVE_ENABLE": "True",
    }
    expect = [EXAMPLE_DAG, FAILURE_DAG, CRASH_DAG, STALL_DAG, MANY_DAG, CAMPAIGN_DAG, STORE_DAG, LINEAGE_DAG]
    dags = [REPO / "dags", Path(__file__).parent / "dags"]
    with Cluster(dags=dags, env=env, render_seconds=RENDER_SECONDS, expect_dags=expect) as running:
        yield running


@pytest.fixture(scope="package")
def emulator_ctl(cluster: Cluster) -> Iterator[EmulatorControl]:
    control = EmulatorControl(cluster.emulator_url)
    yield control
    control.close()


@pytest.fixture
def emulator(emulator_ctl: EmulatorControl) -> EmulatorControl:
    emulator_ctl.reset()
    emulator_ctl.configure(render_seconds=RENDER_SECONDS, queue_seconds=0.2)
    return emulator_ctl


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        cluster.print_log_tails()
