"""Extra links: stored links (worker side), live links (api-server side), the plugin, registration.

Stored links read XCom through ``XCom.get_value`` (patched); live links read the metadata DB
(patched with what the operators really pushed). S3 presigning runs against a real moto
server, and Oxen result URLs come from the emulator.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.links import extra_links as links
from airflow_provider_oxen.links.extra_links import (
    DEFAULT_OXEN_CONN_ID,
    LINK_DATA_KEY,
    LIVE_LINKS,
    PRESIGN_EXPIRES_IN,
    OxenContactSheetLink,
    OxenContactSheetLiveLink,
    OxenImageLink,
    OxenImageLiveLink,
    OxenManifestLink,
    OxenManifestLiveLink,
    OxenS3FolderLink,
)
from airflow_provider_oxen.operators.generate import (
    OxenGenerateImageOperator,
    OxenGenerateOperator,
    OxenGenerateVideoOperator,
)
from airflow_provider_oxen.operators.review import OxenImageReviewOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from tests.fixtures import API_KEY, EmulatorControl, FakeTaskStateStore
from tests.transfers.conftest import aws_conn, bucket, moto_endpoint, s3_client
from tests.transfers.helpers import RUN_ID, FakeTI, generate

__all__ = ["aws_conn", "bucket", "moto_endpoint", "s3_client"]

DAG_ID = "oxen_marketing_campaign"
STORED_LINKS = (OxenImageLink, OxenS3FolderLink, OxenManifestLink, OxenContactSheetLink)


def ti_key(task_id: str, map_index: int = -1) -> TaskInstanceKey:
    return TaskInstanceKey(DAG_ID, task_id, RUN_ID, 1, map_index)


class FakeXComs:
    """XComs by (task_id, map_index, key): what a reader sees for one DAG run."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, int, str], Any] = {}

    def put(self, task_id: str, xcoms: dict[str, Any], map_index: int = -1) -> None:
        for key, value in xcoms.items():
            # Round-tripped through JSON, as the metadata DB stores them.
            self.values[(task_id, map_index, key)] = json.loads(json.dumps(value))

    def read(self, key: TaskInstanceKey, name: str) -> Any:
        assert key.dag_id == DAG_ID and key.run_id == RUN_ID
        return self.values.get((key.task_id, key.map_index, name))


@pytest.fixture
def xcoms(monkeypatch: pytest.MonkeyPatch) -> FakeXComs:
    """Both readers answer from one fake: ``XCom.get_value`` (worker) and the DB read (api-server)."""
    from airflow.sdk.execution_time.xcom import XCom

    fake = FakeXComs()

    def get_value(*, ti_key: TaskInstanceKey, key: str) -> Any:
        return fake.read(ti_key, key)

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    monkeypatch.setattr(links, "_db_xcom", fake.read)
    return fake


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _presigned_for(url: str) -> float:
    """Seconds the presigned URL stays valid (SigV4 or, as moto may answer, SigV2)."""
    query = _query(url)
    if "X-Amz-Signature" in query:
        return float(query["X-Amz-Expires"][0])
    assert "Signature" in query, url
    return float(query["Expires"][0]) - time.time()


# -- what the operators push ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "stored", "live"),
    [
        (OxenGenerateImageOperator, [OxenImageLink], OxenImageLiveLink),
        # Airflow matches by the exact class: a clip task has its live link too.
        (OxenGenerateVideoOperator, [OxenImageLink], OxenImageLiveLink),
        (OxenGenerateOperator, [OxenImageLink], OxenImageLiveLink),
        (OxenGenerationToS3Operator, [OxenS3FolderLink, OxenManifestLink], OxenManifestLiveLink),
        (OxenImageReviewOperator, [OxenContactSheetLink], OxenContactSheetLiveLink),
    ],
)
def test_operators_declare_their_stored_links_and_live_links_replace_one_by_name(
    operator: type, stored: list[type], live: type
) -> None:
    assert [type(link) for link in operator.operator_extra_links] == stored  # type: ignore[attr-defined]
    assert operator in live().operators
    [replaced] = [cls for cls in stored if issubclass(live, cls)]
    assert live().name == replaced().name


def _generate(**kwargs: Any) -> OxenGenerateImageOperator:
    return OxenGenerateImageOperator(task_id="generate", prompt="A lighthouse", **kwargs)


def _review(contact_sheet_uri: str) -> OxenImageReviewOperator:
    return OxenImageReviewOperator(task_id="review", records=[], contact_sheet_uri=contact_sheet_uri)


SHEET = "s3://oxen-campaigns/c/contact-sheet.png"
NO_DECISIONS = {"decisions": {}, "note": ""}


@pytest.mark.parametrize(
    ("link", "operator", "pushed"),
    [
        (OxenImageLink, _generate(oxen_conn_id="oxen_campaigns"), {"oxen_conn_id": "oxen_campaigns"}),
        (OxenImageLink, _generate(do_xcom_push=False), None),
        (OxenContactSheetLink, _review(SHEET), {"aws_conn_id": "aws_default", "contact_sheet_uri": SHEET}),
        # A template that rendered to nothing useful is not pushed as a URI.
        (OxenContactSheetLink, _review("None"), {"aws_conn_id": "aws_default", "contact_sheet_uri": None}),
    ],
)
def test_link_data_is_pushed_only_when_useful(
    link: Any, operator: Any, pushed: dict[str, Any] | None
) -> None:
    """The store task's: its live links work in tests/e2e/test_real_airflow.py (_assert_live_links)."""
    ti = FakeTI()
    link.persist({"ti": ti}, operator)
    assert ti.xcoms.get(LINK_DATA_KEY) == pushed


def test_generate_pushes_no_link_data_for_the_default_connection(oxen_conn: EmulatorControl) -> None:
    """The live link assumes the default connection: one XCom round trip fewer per task."""
    assert OxenHook.default_conn_name == DEFAULT_OXEN_CONN_ID
    ti = FakeTI()
    operator = _generate(deferrable=False, poll_interval=0.05, timeout=30)
    results = operator.execute({"ti": ti, "task_state_store": FakeTaskStateStore()})  # type: ignore[arg-type]
    assert LINK_DATA_KEY not in ti.xcoms
    assert API_KEY not in json.dumps(ti.xcoms) and "?" not in results[0]["result_url"]


def test_review_pushes_its_link_data_and_a_failing_push_does_not_fail_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenTI(FakeTI):
        def xcom_push(self, key: str, value: Any) -> None:
            raise RuntimeError("no XCom today")

    # No records: execute returns before asking anyone, after pushing the link data.
    ti = FakeTI()
    assert _review(SHEET).execute({"ti": ti}) == NO_DECISIONS  # type: ignore[arg-type]
    assert ti.xcoms[LINK_DATA_KEY]["contact_sheet_uri"] == SHEET
    assert _review(SHEET).execute({"ti": BrokenTI()}) == NO_DECISIONS  # type: ignore[arg-type]
    assert "RuntimeError" in caplog.text


# -- stored links (computed on the worker when the task ends) ---------------------------------------

CONSOLE = "https://console.aws.amazon.com/s3"
PUSHED = {
    "store": {
        LINK_DATA_KEY: {"aws_conn_id": "aws_default", "bucket": "oxen", "prefix": "c/2026 05"},
        "manifest_uri": "s3://oxen/c/2026 05/manifest.json",
    },
    "review": {LINK_DATA_KEY: {"aws_conn_id": None, "contact_sheet_uri": "s3://b/c/sheet.png"}},
    "generate": {LINK_DATA_KEY: {"oxen_conn_id": "oxen_default"}, "return_value": ["g1"]},
}


@pytest.mark.parametrize(
    ("link", "task_id", "url"),
    [
        (OxenS3FolderLink(), "store", f"{CONSOLE}/buckets/oxen?region=us-east-1&prefix=c%2F2026+05%2F"),
        (
            OxenManifestLink(),
            "store",
            f"{CONSOLE}/object/oxen?region=us-east-1&prefix=c%2F2026+05%2Fmanifest.json",
        ),
        (OxenContactSheetLink(), "review", f"{CONSOLE}/object/b?prefix=c%2Fsheet.png"),
        (OxenImageLink(), "generate", ""),  # a result URL would be stored, then expire
        # A task that failed before pushing anything has empty links (the UI greys them out).
        *[(link(), "failed_early", "") for link in (*STORED_LINKS, *LIVE_LINKS)],
    ],
)
def test_stored_links_are_unsigned_console_urls_and_no_data_is_no_link(
    xcoms: FakeXComs, aws_conn: str, link: Any, task_id: str, url: str
) -> None:
    for task, pushed in PUSHED.items():
        xcoms.put(task, pushed)
    assert link.get_link(None, ti_key=ti_key(task_id)) == url


def test_console_urls_follow_the_partition() -> None:
    assert links.s3_console_folder_url("b", "", "cn-north-1").startswith("https://console.amazonaws.cn/")
    assert links.s3_console_object_url("b", "k", "us-gov-west-1").startswith(
        "https://console.amazonaws-us-gov.com/"
    )
    assert links.s3_console_folder_url("b", "") == f"{CONSOLE}/buckets/b"


# -- live links (computed by the api-server when shown) ----------------------------------------------


# What the campaign's live links return, signed anew on every page load (each mapped generate
# instance its own image; the store's manifest at the connection's endpoint; the review's contact
# sheet): a real api-server in tests/e2e/test_real_airflow.py (_assert_live_links).


def test_s3_live_links_are_presigned_for_a_fixed_time_at_the_connections_endpoint(
    aws_conn: str, bucket: str, s3_client: Any, xcoms: FakeXComs
) -> None:
    s3_client.put_object(Bucket=bucket, Key="c/contact-sheet.png", Body=b"a contact sheet")
    ti = FakeTI()
    OxenContactSheetLink.persist({"ti": ti}, _review(f"s3://{bucket}/c/contact-sheet.png"))  # type: ignore[arg-type]
    xcoms.put("review", ti.xcoms)
    sheet = OxenContactSheetLiveLink().get_link(None, ti_key=ti_key("review"))  # type: ignore[arg-type]
    assert sheet.startswith(f"{aws_conn}/")  # moto
    assert PRESIGN_EXPIRES_IN - 5 <= _presigned_for(sheet) <= PRESIGN_EXPIRES_IN
    assert httpx.get(sheet).content == b"a contact sheet"


def test_the_oxen_image_link_of_a_task_that_returned_bare_ids(
    oxen_conn: EmulatorControl, xcoms: FakeXComs
) -> None:
    """A task that does not wait for its generations returns their ids: linked alike."""
    [result] = generate(num_images=1)
    xcoms.put("generate", {"return_value": [result["generation_id"]]})
    url = OxenImageLiveLink().get_link(None, ti_key=ti_key("generate"))  # type: ignore[arg-type]
    assert url.split("?", 1)[0] == result["result_url"] and {"expires", "sig"} <= set(_query(url))
    assert httpx.get(url).status_code == 200


def test_the_oxen_image_link_fails_fast_and_quietly_and_an_unknown_connection_gives_none(
    oxen_conn: EmulatorControl, xcoms: FakeXComs, caplog: pytest.LogCaptureFixture
) -> None:
    [result] = generate(num_images=1)
    xcoms.put("generate", {LINK_DATA_KEY: {"oxen_conn_id": "oxen_default"}, "return_value": [result]})
    path = f"^/api/ai/queue/{result['generation_id']}$"
    oxen_conn.fault(type="status", status=503, count=-1, method="GET", path=path)
    before = len(oxen_conn.requests(method="GET", path=f"/api/ai/queue/{result['generation_id']}"))

    with caplog.at_level(logging.WARNING):
        url = OxenImageLiveLink().get_link(None, ti_key=ti_key("generate"))  # type: ignore[arg-type]
    assert url == ""
    # Fast: one request, the connection's retries (3 in these tests) are not spent on a page load.
    after = oxen_conn.requests(method="GET", path=f"/api/ai/queue/{result['generation_id']}")
    assert len(after) - before == 1
    assert "Oxen image" in caplog.text and API_KEY not in caplog.text
    # An unknown connection gives no link either.
    xcoms.put("generate", {LINK_DATA_KEY: {"oxen_conn_id": "nope"}, "return_value": ["g1"]}, map_index=3)
    assert OxenImageLiveLink().get_link(None, ti_key=ti_key("generate", 3)) == ""  # type: ignore[arg-type]


def test_errors_are_logged_without_their_message(
    xcoms: FakeXComs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    xcoms.put("store", {LINK_DATA_KEY: {"aws_conn_id": "aws_default"}, "manifest_uri": "s3://b/m.json"})

    def leaky(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("https://b.s3.amazonaws.com/m.json?X-Amz-Signature=SECRETSIG")

    monkeypatch.setattr(links, "presign_s3_uri", leaky)
    with caplog.at_level(logging.WARNING):
        assert OxenManifestLiveLink().get_link(None, ti_key=ti_key("store")) == ""  # type: ignore[arg-type]
    assert "RuntimeError" in caplog.text and "SECRETSIG" not in caplog.text


@pytest.mark.parametrize("uri", [None, "", "None", "https://b/k", "s3://bucket-only", "s3:///key"])
def test_only_s3_uris_are_presigned(uri: Any) -> None:
    assert links.presign_s3_uri("aws_default", uri) == ""


def test_db_reader_returns_plain_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """The api-server side reads the row's JSON and instantiates nothing from it."""
    import contextlib
    from types import SimpleNamespace

    import airflow.utils.session

    rows: list[Any] = [('{"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1]}',)]
    session = SimpleNamespace(execute=lambda statement: SimpleNamespace(first=lambda: rows[0]))
    monkeypatch.setattr(airflow.utils.session, "create_session", lambda: contextlib.nullcontext(session))
    assert links._db_xcom(ti_key("store"), "k") == {
        "__classname__": "builtins.tuple",
        "__version__": 1,
        "__data__": [1],
    }
    rows[0] = ("not json",)
    assert links._db_xcom(ti_key("store"), "k") == "not json"
    rows[0] = ({"aws_conn_id": None},)
    assert links._db_xcom(ti_key("store"), "k") == {"aws_conn_id": None}
    rows[0] = None
    assert links._db_xcom(ti_key("store"), "k") is None


# -- how Airflow finds them --------------------------------------------------------------------------
# With the plugin loaded, a real api-server serves the live links: tests/e2e/test_real_airflow.py
# (_assert_live_links, which also checks that the plugin loaded without errors).


def test_without_the_plugin_the_api_server_reads_the_stored_links_back() -> None:
    """The campaign's three operators as the api-server sees them (serialized DAG), no plugin."""
    from unittest import mock

    from airflow import plugins_manager
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("links", start_date=datetime(2026, 1, 1), schedule=None) as dag:
        generate_task = OxenGenerateImageOperator.partial(task_id="generate").expand(prompt=["a", "b"])
        store = OxenGenerationToS3Operator(
            task_id="store", results=generate_task.output, bucket="b", prefix="p"
        )
        OxenImageReviewOperator(task_id="review", records=store.output)
    data = DagSerialization.to_dict(dag)
    with mock.patch.object(plugins_manager, "get_operator_extra_links", return_value=[]):
        served = {
            task.task_id: task.operator_extra_link_dict for task in DagSerialization.from_dict(data).tasks
        }
    assert {task: sorted(task_links) for task, task_links in served.items()} == {
        "generate": ["Oxen image"],
        "store": ["Manifest", "S3 folder"],
        "review": ["Contact sheet"],
    }
    assert served["review"]["Contact sheet"].xcom_key == "_link_OxenContactSheetLink"


def test_the_providers_manager_lists_every_link_class() -> None:
    from airflow.providers_manager import ProvidersManager

    names = {f"{link.__module__}.{link.__qualname__}" for link in (*STORED_LINKS, *LIVE_LINKS)}
    assert len(names) == 7 and set(ProvidersManager().extra_links_class_names) >= names
