"""The transfer's small parts: spool, input flattening, write decisions, manifest."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.review.checks import CheckSettings, ImageCheck
from airflow_provider_oxen.transfers.batch import check_result, flatten_results
from airflow_provider_oxen.transfers.manifest import build_manifest, image_record, manifest_bytes
from airflow_provider_oxen.transfers.spool import Spool
from airflow_provider_oxen.transfers.store import (
    ExistingObject,
    KeyConflictError,
    WriteAction,
    plan_write,
    s3_metadata,
)

# -- spool ------------------------------------------------------------------------------------------


def test_spool_stays_in_memory_below_the_threshold() -> None:
    with Spool(max_memory=10) as spool:
        spool.write(b"0123456789")
        assert not spool.on_disk and spool.path is None
        spool.seek(0)
        assert spool.read() == b"0123456789" and spool.size() == 10


def test_spool_moves_to_a_named_file_past_the_threshold_and_removes_it() -> None:
    spool = Spool(max_memory=10)
    spool.write(b"0123456789")
    spool.write(b"abc")
    assert spool.on_disk and spool.path is not None
    path = spool.path
    with open(path, "rb") as readback:  # readable by path (what boto3 uploads from)
        assert readback.read() == b"0123456789abc"
    assert spool.tell() == 13
    spool.seek(5)
    assert spool.read(3) == b"567"
    spool.reset()
    assert spool.size() == 0 and spool.on_disk
    spool.close()
    assert spool.closed and not os.path.exists(path)
    with pytest.raises(ValueError):
        spool.read()


# -- results input ----------------------------------------------------------------------------------

RESULT = {"generation_id": "g1", "status": "succeeded", "result_url": "http://x/1.png"}


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ([RESULT], ["g1"]),
        (RESULT, ["g1"]),
        ([[RESULT], [{**RESULT, "generation_id": "g2"}], None, []], ["g1", "g2"]),
        ((x for x in [[RESULT]]), ["g1"]),
        (json.dumps([RESULT]), ["g1"]),
        (repr([RESULT]), ["g1"]),  # what a "{{ ti.xcom_pull(...) }}" template renders to
        ("g9", ["g9"]),
        (["g9", ["g8"]], ["g9", "g8"]),
        ("", []),
    ],
)
def test_results_are_flattened(value: Any, ids: list[str]) -> None:
    flat = flatten_results(value)
    assert [item if isinstance(item, str) else item["generation_id"] for item in flat] == ids


@pytest.mark.parametrize("value", [42, "[not json nor python", [3.5]])
def test_unusable_results_are_refused(value: Any) -> None:
    with pytest.raises(OxenValidationError):
        flatten_results(value)


def test_only_succeeded_results_with_an_id_can_be_stored() -> None:
    assert check_result({"generation_id": "g1"}) == {"generation_id": "g1"}
    with pytest.raises(OxenValidationError, match="status 'failed'"):
        check_result({**RESULT, "status": "failed"})
    with pytest.raises(OxenValidationError, match="no generation_id"):
        check_result({"status": "succeeded"})


# -- write decisions --------------------------------------------------------------------------------

OWNER = ("generation-id", "g1")


def _existing(**metadata: str) -> ExistingObject:
    return ExistingObject(size=10, content_type="image/png", metadata=metadata)


@pytest.mark.parametrize(
    ("existing", "replace", "action"),
    [
        (None, False, WriteAction.STORED),
        (_existing(sha256="abc"), False, WriteAction.SKIPPED),  # same bytes, whoever wrote them
        (_existing(sha256="old", **{"generation-id": "g1"}), False, WriteAction.REPLACED),  # ours
        (_existing(sha256="old", **{"generation-id": "g2"}), True, WriteAction.REPLACED),
        (_existing(), True, WriteAction.REPLACED),
    ],
)
def test_plan_write(existing: ExistingObject | None, replace: bool, action: WriteAction) -> None:
    assert plan_write(existing, "abc", owner=OWNER, replace=replace, uri="s3://b/k") is action


@pytest.mark.parametrize("existing", [_existing(), _existing(sha256="old", **{"generation-id": "g2"})])
def test_foreign_objects_are_not_overwritten(existing: ExistingObject) -> None:
    with pytest.raises(KeyConflictError, match="s3://b/k"):
        plan_write(existing, "abc", owner=OWNER, replace=False, uri="s3://b/k")


def test_metadata_is_ascii_and_drops_missing_values() -> None:
    assert s3_metadata({"model": "flux-2-dev", "seed": 42, "prompt-sha256": None, "x": "caf\u00e9\n"}) == {
        "model": "flux-2-dev",
        "seed": "42",
        "x": "caf%C3%A9%0A",
    }


# -- manifest ---------------------------------------------------------------------------------------


def _record(generation_id: str, ok: bool, action: str) -> dict[str, Any]:
    check = ImageCheck(
        ok=ok, problems=[] if ok else ["is 1x1, expected 2x2"], width=1, height=1, format="png"
    )
    return image_record(
        {**RESULT, "generation_id": generation_id, "prompt": "p"},
        s3_key=f"p/{generation_id}.png",
        s3_uri=f"s3://b/p/{generation_id}.png",
        sha256="0" * 64,
        size_bytes=2048,
        content_type="image/png",
        check=check,
        action=action,
    )


def test_manifest_describes_storage_not_the_try() -> None:
    def manifest(action: str) -> bytes:
        records = [_record("g1", True, action), _record("g2", False, action)]
        document = build_manifest(
            records, bucket="b", prefix="p", run_id="r", checks=CheckSettings(), contact_sheet=None
        )
        return manifest_bytes(document)

    first, rerun = manifest("stored"), manifest("skipped")
    assert first == rerun  # so a re-run finds the stored manifest unchanged
    document = json.loads(first)
    assert document["count"] == 2 and document["total_bytes"] == 4096
    assert document["checks"]["passed"] == 1 and document["checks"]["failed"] == 1
    assert document["checks"]["failures"] == [
        {"generation_id": "g2", "s3_key": "p/g2.png", "problems": ["is 1x1, expected 2x2"]}
    ]
    image = document["images"][0]
    assert image["result_url"] == RESULT["result_url"] and image["prompt"] == "p"
    assert "action" not in image and image["checks"]["ok"] is True
