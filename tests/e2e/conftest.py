"""E2E fixtures shared by the modules of tests/e2e: the Oxen emulator (a process), a moto S3
server and a real Airflow on loopback (see :mod:`tests.e2e.airflow_cluster`).

They are module-scoped: each test module gets its own emulator and cluster, so one module's
DAG runs and emulator counters never show up in another's assertions. Each test's outcome is
made visible to fixtures (to dump Airflow's logs when it failed).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_cluster import AirflowCluster
from tests.fixtures import API_KEY, EmulatorControl, connection_json, moto_s3_client, moto_s3_server
from tests.transfers.conftest import aws_connection_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAG = "oxen_generate_images"
FAILURE_DAG = "oxen_e2e_failure"
CRASH_DAG = "oxen_e2e_crash"
STALL_DAG = "oxen_e2e_stall"
MANY_DAG = "oxen_e2e_many"
CAMPAIGN_DAG = "oxen_marketing_campaign"
STORE_DAG = "oxen_e2e_store"
RENDER_SECONDS = 3.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Any]:
    from airflow_provider_oxen.emulator import start_emulator_process

    process = start_emulator_process(
        ["--api-key", API_KEY, "--render-seconds", str(RENDER_SECONDS), "--queue-seconds", "0.2"]
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto in server mode) on loopback, for the campaign DAG."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A boto3 client of that S3 server (what the tests create buckets with and read back)."""
    return moto_s3_client(s3_endpoint)


@pytest.fixture(scope="module")
def emulator_ctl(emulator_process: Any) -> Iterator[EmulatorControl]:
    control = EmulatorControl(emulator_process.url)
    yield control
    control.close()


@pytest.fixture(scope="module")
def cluster(
    emulator_process: Any, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowCluster]:
    # One dags folder with the shipped example DAG(s) plus the e2e-only ones.
    dags = tmp_path_factory.mktemp("e2e-dags")
    for source in [*(REPO / "dags").glob("*.py"), *(Path(__file__).parent / "dags").glob("*.py")]:
        shutil.copy(source, dags / source.name)
    shutil.copytree(REPO / "dags" / "campaigns", dags / "campaigns")  # the campaign DAG's specs
    env = {
        "AIRFLOW_CONN_OXEN_DEFAULT": connection_json(emulator_process.url),
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(s3_endpoint),
        # The campaign tests answer the review themselves: no timeout during the test.
        "OXEN_CAMPAIGN_REVIEW_SECONDS": "3600",
    }
    expect = [EXAMPLE_DAG, FAILURE_DAG, CRASH_DAG, STALL_DAG, MANY_DAG, CAMPAIGN_DAG, STORE_DAG]
    with AirflowCluster(dags, env, expect_dags=expect) as running:
        yield running


@pytest.fixture
def emulator(emulator_ctl: EmulatorControl) -> EmulatorControl:
    emulator_ctl.reset()
    emulator_ctl.configure(render_seconds=RENDER_SECONDS, queue_seconds=0.2)
    return emulator_ctl


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: AirflowCluster) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        cluster.print_log_tails()
