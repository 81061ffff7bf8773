"""OxenGenerationToS3Operator end to end: real images from the emulator into a real (moto) S3 server."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import httpx
import pytest
from airflow.sdk import Asset
from PIL import Image

from airflow_provider_oxen.exceptions import (
    OxenCheckFailedError,
    OxenKeyConflictError,
    OxenKeyError,
    OxenResultDownloadError,
)
from airflow_provider_oxen.media.contact_sheet import sheet_size
from airflow_provider_oxen.transfers.store import sha256_base64
from tests.fixtures import EmulatorControl
from tests.transfers.conftest import S3Calls
from tests.transfers.helpers import (
    RUN_ID,
    fresh_url,
    generate,
    list_keys,
    object_bytes,
    served_sha256,
    transfer_context,
)
from tests.transfers.helpers import run_transfer as _run
from tests.transfers.helpers import s3_operator as _operator

TEMPLATE = "campaigns/{{ ds }}/{{ params.campaign }}/{generation_id}.{ext}"
RENDERED_DIR = "campaigns/2026-05-01/spring"
RUN_SLUG = "manual__2026-05-01T09-30-00-00-00"  # the run id as it appears in keys
MANIFEST_KEY = f"{RENDERED_DIR}/manifest-{RUN_SLUG}.json"
SHEET_KEY = f"{RENDERED_DIR}/contact-sheet-{RUN_SLUG}.png"
DEFAULT_MANIFEST_KEY = f"campaigns/manifest-{RUN_SLUG}.json"
FILES = "GET /files/{id}/{name}"  # result-file GETs the emulator answered (any status): route_count(FILES)


@pytest.fixture
def batch(oxen_conn: EmulatorControl) -> list[list[dict[str, Any]]]:
    """Two "mapped" generate results: 3 ideogram JPEGs and 2 flux PNGs of a custom size."""
    jpegs = generate(3, parameters={"image_size": "portrait_4_3", "seed": 7})
    pngs = generate(
        2,
        model="black-forest-labs-flux-2-klein-4b",
        prompt="A tiny robot watering plants",
        parameters={"image_size": {"width": 640, "height": 384}, "output_format": "png"},
    )
    return [jpegs, pngs]


def test_stores_every_image_with_metadata_manifest_sheet_and_asset_event_and_a_rerun_writes_nothing(
    oxen_conn: EmulatorControl,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    batch: list[list[dict[str, Any]]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    campaigns = Asset(f"s3://{bucket}/campaigns")

    def operator(**options: Any) -> Any:
        store = _operator(
            batch,
            bucket,
            key_template=TEMPLATE,
            manifest_key="campaigns/{{ ds }}/{{ params.campaign }}/manifest-{run_id}.json",
            contact_sheet_key="campaigns/{{ ds }}/{{ params.campaign }}/contact-sheet-{run_id}.png",
            outlets=[campaigns],
            **options,
        )
        store.render_template_fields(context)  # type: ignore[arg-type]
        return store

    context = transfer_context()
    first = operator()
    assert first.key_template == f"{RENDERED_DIR}/{{generation_id}}.{{ext}}"

    records = _run(first, context)

    results = [r for group in batch for r in group]  # flattened, in order
    assert [r["generation_id"] for r in records] == [r["generation_id"] for r in results]
    for record, result in zip(records, results, strict=True):
        ext = "jpg" if result["output_format"] == "jpeg" else "png"
        key = f"{RENDERED_DIR}/{result['generation_id']}.{ext}"
        assert record["s3_key"] == key and record["s3_uri"] == f"s3://{bucket}/{key}"
        assert record["action"] == "stored"
        # The stored bytes are what the emulator serves, marked; both hashes are on record.
        data = object_bytes(s3_client, bucket, key)
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert served_sha256(fresh_url(result["generation_id"])) == record["oxen_sha256"] != record["sha256"]
        assert record["provenance"] == {
            "state": "marked",
            "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
            "reason": None,
        }
        assert record["size_bytes"] == len(data)
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == ("image/jpeg" if ext == "jpg" else "image/png")
        # S3's own checksum of the bytes it received: what proves the object on a re-run.
        assert head["ContentLength"] and s3_client.head_object(
            Bucket=bucket, Key=key, ChecksumMode="ENABLED"
        )["ChecksumSHA256"] == sha256_base64(record["sha256"])
        assert head["Metadata"] == {
            "generation-id": result["generation_id"],
            "model": result["model"],
            "prompt-sha256": hashlib.sha256(result["prompt"].encode()).hexdigest(),
            "sha256": record["sha256"],
            "oxen-sha256": record["oxen_sha256"],
            "provenance": "marked",
            **({"seed": str(result["seed"])} if result["seed"] is not None else {}),
        }
        assert result["prompt"] not in json.dumps(head["Metadata"])
        assert record["checks"] == {
            "ok": True,
            "problems": [],
            "width": result["width"],
            "height": result["height"],
            "format": result["output_format"],
        }

    # Five images, the contact sheet and the manifest: seven uploads, nothing else in the bucket.
    assert s3_calls.uploads == 7
    assert list_keys(s3_client, bucket) == sorted([r["s3_key"] for r in records] + [MANIFEST_KEY, SHEET_KEY])

    manifest = json.loads(object_bytes(s3_client, bucket, MANIFEST_KEY))
    assert manifest["count"] == 5 and manifest["run_id"] == RUN_ID and manifest["prefix"] == "campaigns"
    assert manifest["checks"]["passed"] == 5 and manifest["checks"]["failed"] == 0
    assert manifest["contact_sheet"]["s3_uri"] == f"s3://{bucket}/{SHEET_KEY}"
    for image, result, record in zip(manifest["images"], results, records, strict=True):
        # Every field of the result, its URL without the signed query.
        assert {k: image[k] for k in result} == {**result, "result_url": result["result_url"].split("?")[0]}
        for field in ("s3_key", "s3_uri", "s3_prefix", "sha256", "size_bytes", "checks", "content_type"):
            assert image[field] == record[field]
        assert "action" not in image
    assert s3_client.head_object(Bucket=bucket, Key=MANIFEST_KEY)["ContentType"] == "application/json"

    sheet = Image.open(io.BytesIO(object_bytes(s3_client, bucket, SHEET_KEY)))
    assert sheet.format == "PNG"
    assert sheet.size == sheet_size(5, columns=4, thumb=256)
    assert sheet.size[0] == 4 * (256 + 16)  # four columns, two rows
    sheet.load()

    ti = context["ti"]
    assert ti.xcoms == {
        "manifest_uri": f"s3://{bucket}/{MANIFEST_KEY}",
        "contact_sheet_uri": f"s3://{bucket}/{SHEET_KEY}",
        "oxen_link_data": {"aws_conn_id": "aws_default", "bucket": bucket, "prefix": "campaigns"},
    }
    extra = context["outlet_events"][campaigns].extra
    assert extra["count"] == 5 and extra["stored"] == 5 and extra["run_id"] == RUN_ID
    assert extra["manifest_uri"] == f"s3://{bucket}/{MANIFEST_KEY}"
    json.dumps(extra)  # must be JSON to travel with the asset event
    # Records, XComs and manifest keep no signed query (the generate operator's results keep none).
    assert all("?" not in r["result_url"] for r in results)
    stored = (
        json.dumps(records) + object_bytes(s3_client, bucket, MANIFEST_KEY).decode() + json.dumps(ti.xcoms)
    )
    assert "sig=" not in stored and "expires=" not in stored

    # A re-run writes nothing and downloads nothing from Oxen.
    downloads = oxen_conn.route_count(FILES)
    assert downloads == 5 + 5  # the transfer's, and this test's own reads of the fresh URLs
    s3_calls.reset()
    capfd.readouterr()
    second = _run(operator(), transfer_context())
    log = capfd.readouterr().out  # the task log (Airflow's structured logger writes to stdout)

    assert s3_calls.changes == 0
    assert {r["action"] for r in second} == {"skipped"}
    # Checks and thumbnails came from our own stored copies, not from Oxen again.
    assert oxen_conn.route_count(FILES) == downloads
    assert s3_calls.counts["GetObject"] == 5
    assert [r["checks"] for r in second] == [r["checks"] for r in records]
    assert [r["sha256"] for r in second] == [r["sha256"] for r in records]
    skipped_lines = [line for line in log.splitlines() if "] skipped " in line]
    assert len(skipped_lines) == 5
    assert all("sha256" in line and "checks: ok" in line for line in skipped_lines)
    assert "Manifest skipped" in log and "Contact sheet skipped" in log
    assert "Done: 5 image(s), 0 stored, 0 replaced, 5 skipped" in log
    # (Without checks or a contact sheet there is nothing to read, HEAD requests only: test_video.py
    # and test_a_rerun_replaces_an_object_overwritten_under_its_old_metadata[head-only].)


def test_existing_objects_are_skipped_by_checksum_and_foreign_ones_are_not_overwritten(
    oxen_conn: EmulatorControl, s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    [result] = generate(1)
    key = f"campaigns/{result['generation_id']}.jpg"
    data = httpx.get(fresh_url(result["generation_id"]), timeout=30).raise_for_status().content
    digest = hashlib.sha256(data).hexdigest()

    # Same bytes uploaded by someone else, with a sha256 on record but no SHA-256 checksum:
    # read back and hashed (the proof), then nothing to upload.
    s3_client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest})
    s3_calls.reset()
    # (Unmarked: a marked file would differ from it.)
    [record] = _run(_operator([result], bucket, contact_sheet=False, mark_provenance=False))
    assert record["action"] == "skipped" and s3_calls.keys.get("PutObject") == [DEFAULT_MANIFEST_KEY]
    assert s3_calls.keys.get("GetObject") == [key]

    # Different bytes that are not ours (another generation's, or nobody's), even with metadata
    # claiming our sha256: refused unless replace=True.
    for metadata in ({}, {"generation-id": "someone-else", "sha256": "0" * 64}, {"sha256": digest}):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"somebody else's file", Metadata=metadata)
        with pytest.raises(OxenKeyConflictError, match="replace=True") as info:
            _run(_operator([result], bucket, contact_sheet=False, mark_provenance=False))
        assert key in str(info.value)
        assert object_bytes(s3_client, bucket, key) == b"somebody else's file"
    [record] = _run(_operator([result], bucket, contact_sheet=False, replace=True, mark_provenance=False))
    assert record["action"] == "replaced" and object_bytes(s3_client, bucket, key) == data

    # An unrelated object where the manifest goes is found before anything is uploaded.
    s3_client.put_object(Bucket=bucket, Key=DEFAULT_MANIFEST_KEY, Body=b"{}")
    s3_calls.reset()
    with pytest.raises(OxenKeyConflictError, match="manifest_key"):
        _run(_operator(generate(1), bucket))
    assert s3_calls.uploads == 0 and object_bytes(s3_client, bucket, DEFAULT_MANIFEST_KEY) == b"{}"


@pytest.mark.parametrize(
    ("field", "template"),
    [
        # One per key; every other unsafe key and template is refused in tests/transfers/test_keys.py.
        ("key_template", "campaigns/../escape/{generation_id}.{ext}"),
        ("key_template", "campaigns/{model}.{ext}"),  # every image on one key
        ("manifest_key", "campaigns/{generation_id}.jpg"),  # not a batch field
        ("contact_sheet_key", "s3://other-bucket/sheet.png"),
    ],
)
def test_unsafe_keys_are_refused_before_any_download_or_upload(
    oxen_conn: EmulatorControl, s3_client: Any, bucket: str, s3_calls: S3Calls, field: str, template: str
) -> None:
    results = generate(2)
    downloads = oxen_conn.route_count(FILES)
    with pytest.raises(OxenKeyError):
        _run(_operator(results, bucket, **{field: template}))
    assert s3_calls.uploads == 0 and list_keys(s3_client, bucket) == []
    assert oxen_conn.route_count(FILES) == downloads


def test_an_expired_result_url_is_refreshed_once_and_one_that_stays_expired_fails(
    oxen_conn: EmulatorControl,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    capfd: pytest.CaptureFixture[str],
) -> None:
    oxen_conn.configure(url_ttl_seconds=-1)  # every URL handed out is already expired
    # Records holding signed URLs (as a caller that kept them hands over; the generate
    # operator's results keep none), already expired.
    results = [{**r, "result_url": fresh_url(r["generation_id"])} for r in generate(2)]
    assert httpx.get(results[0]["result_url"], timeout=30).status_code == 403
    # A URL that stays expired fails the transfer without storing anything.
    with pytest.raises(
        OxenResultDownloadError, match=f"{results[0]['generation_id']}.*refreshed URL"
    ) as info:
        _run(_operator(results[:1], bucket))
    assert "/files/" in str(info.value) and "?" not in str(info.value)  # the URL, not its signature
    assert s3_calls.uploads == 0
    downloads = oxen_conn.route_count(FILES)
    oxen_conn.configure(url_ttl_seconds=3600)  # ...but a fresh read of the generation signs a new one

    capfd.readouterr()
    records = _run(_operator(results, bucket))
    log = capfd.readouterr().out

    assert [r["url_refreshed"] for r in records] == [True, True]
    assert [r["action"] for r in records] == ["stored", "stored"]
    for record in records:
        data = object_bytes(s3_client, bucket, record["s3_key"])
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        Image.open(io.BytesIO(data)).verify()
    # Two expired attempts, two refreshed ones.
    assert oxen_conn.route_count(FILES) == downloads + 4
    ids = {r["generation_id"] for r in results}
    reads = [r for r in oxen_conn.requests(method="GET") if r["path"].rsplit("/", 1)[-1] in ids]
    assert len(reads) >= 2 and {r["status"] for r in reads} == {200}
    assert log.count("[result URL refreshed after HTTP 403 (expired URL)]") == 2


def test_check_failures_are_reported_per_image_and_raised_only_after_storing(
    oxen_conn: EmulatorControl, s3_client: Any, bucket: str, capfd: pytest.CaptureFixture[str]
) -> None:
    good, wrong_size, wrong_format = generate(3)  # 1024x1024 JPEGs
    wrong_size = {**wrong_size, "width": 999}
    wrong_format = {**wrong_format, "output_format": "png"}

    # With fail_on_check_failure the task fails, naming each image, after everything is stored.
    capfd.readouterr()
    context = transfer_context()
    with pytest.raises(OxenCheckFailedError) as info:
        _run(_operator([good, wrong_size, wrong_format], bucket, fail_on_check_failure=True), context)
    log = capfd.readouterr().out

    message = str(info.value)
    assert "2 of 3 image(s) failed" in message
    assert wrong_size["generation_id"] in message and "expected 999x1024" in message
    assert wrong_format["generation_id"] in message and "expected png" in message
    assert good["generation_id"] not in message
    size_failure, format_failure = info.value.failures
    assert size_failure["checks"]["problems"] == ["is 1024x1024, expected 999x1024"]
    assert format_failure["checks"]["problems"] == ["format is jpeg, expected png"]
    # The real type wins over the requested one for Content-Type.
    assert format_failure["content_type"] == "image/jpeg"
    failed_lines = [line for line in log.splitlines() if "checks: FAILED" in line]
    assert len(failed_lines) == 2 and all("[warning" in line for line in failed_lines)
    assert "expected 999x1024" in log and "Done: 3 image(s), 3 stored, 0 replaced, 0 skipped, 2 failed" in log

    assert len(list_keys(s3_client, bucket)) == 5  # three images, manifest, contact sheet
    assert context["ti"].xcoms["manifest_uri"] == f"s3://{bucket}/{DEFAULT_MANIFEST_KEY}"
    manifest = json.loads(object_bytes(s3_client, bucket, DEFAULT_MANIFEST_KEY))
    assert manifest["checks"]["passed"] == 1 and manifest["checks"]["failed"] == 2
    assert {f["generation_id"] for f in manifest["checks"]["failures"]} == {
        wrong_size["generation_id"],
        wrong_format["generation_id"],
    }
    assert manifest["images"][0]["checks"]["ok"] is True


# -- content, not metadata, decides what a re-run skips ------------------------------------------------


def _overwrite_keeping_metadata(s3_client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    """What someone (a script, a sync tool) does when replacing a file with its old metadata."""
    head = s3_client.head_object(Bucket=bucket, Key=key)
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=body, Metadata=head["Metadata"], ContentType=head["ContentType"], **extra
    )


@pytest.mark.parametrize("needs_bytes", [False, True], ids=["head-only", "checks-and-sheet"])
@pytest.mark.parametrize("checksum", [None, "SHA256"], ids=["no-checksum", "sha256-checksum"])
def test_a_rerun_replaces_an_object_overwritten_under_its_old_metadata(
    oxen_conn: EmulatorControl,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    needs_bytes: bool,
    checksum: str | None,
) -> None:
    options: dict[str, Any] = {} if needs_bytes else {"checks": False, "contact_sheet": False}
    results = generate(2)
    first = _run(_operator(results, bucket, **options))
    tampered, untouched = first
    original = object_bytes(s3_client, bucket, tampered["s3_key"])
    extra = {"ChecksumAlgorithm": checksum} if checksum else {}
    _overwrite_keeping_metadata(s3_client, bucket, tampered["s3_key"], b"not the generated image", **extra)
    downloads = oxen_conn.route_count(FILES)

    manifest = object_bytes(s3_client, bucket, DEFAULT_MANIFEST_KEY)
    _overwrite_keeping_metadata(s3_client, bucket, DEFAULT_MANIFEST_KEY, b'{"images": []}\n')
    s3_calls.reset()

    second = _run(_operator(results, bucket, **options))

    assert object_bytes(s3_client, bucket, DEFAULT_MANIFEST_KEY) == manifest  # the manifest too
    assert [r["action"] for r in second] == ["replaced", "skipped"]
    assert object_bytes(s3_client, bucket, tampered["s3_key"]) == original
    assert second[0]["sha256"] == tampered["sha256"] == hashlib.sha256(original).hexdigest()
    assert oxen_conn.route_count(FILES) == downloads + 1  # the good copy came from Oxen again
    assert s3_calls.keys["PutObject"][0] == tampered["s3_key"]
    if not needs_bytes:
        # The untouched object is proven by S3's checksum in its HEAD: never read back. The
        # tampered one is read back only when S3 has no SHA-256 of it to disprove it with.
        assert s3_calls.keys.get("GetObject", []) == ([] if checksum else [tampered["s3_key"]])
        assert untouched["s3_key"] not in s3_calls.keys.get("PutObject", [])
