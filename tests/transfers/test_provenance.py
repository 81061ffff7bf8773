"""Provenance marking in the S3 transfer, over real sockets (emulator, moto S3): what exiftool reads
in the stored file, both hashes in metadata, manifest and XCom, re-runs that upload nothing, and
a signed edit → clip chain whose clip is paid once after a worker crash."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
from PIL import Image

from airflow_provider_oxen import __version__
from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.provenance.facts import COMPOSITE, GENERATED
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from tests.fixtures import API_KEY, EmulatorControl, FakeTaskStateStore, FileServer, exiftool_xmp, png_bytes
from tests.integration.helpers import defer, run_trigger, task_context
from tests.transfers.conftest import S3Calls
from tests.transfers.helpers import (
    fresh_url,
    generate,
    image_result,
    list_keys,
    object_bytes,
    run_transfer,
    s3_operator,
    served_sha256,
)

MANIFEST_KEY = "campaigns/manifest-manual__2026-05-01T09-30-00-00-00.json"


def test_an_edit_is_sent_presigned_and_stored_marked_with_both_hashes(
    oxen_conn: EmulatorControl, aws_conn: str, s3_client: Any, bucket: str, key_visual: str
) -> None:
    [result] = generate(1, model="qwen-image-edit", prompt="Autumn palette", input_images=key_visual)
    assert result["input_uris"] == [key_visual]  # as the DAG named it, not the presigned URL sent
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    sent = post["json"]["input_image"]
    assert sent.startswith(aws_conn) and "Signature=" in sent  # Oxen got a presigned URL
    assert result["media_type"] == "image" and result["parameters"]["input_image"] == sent.split("?")[0]
    assert "Signature" not in repr(result)  # XCom keeps no signature

    [record] = run_transfer(s3_operator([result], bucket))

    data = object_bytes(s3_client, bucket, record["s3_key"])
    assert exiftool_xmp(data) == {
        "SourceFile": "-",
        "DigitalSourceType": COMPOSITE,
        "AISystemUsed": "qwen-image-edit",
        "DocumentID": f"oxen:generation:{result['generation_id']}",
        "CreatorTool": f"airflow-provider-oxen {__version__}",
        "IngredientsFilePath": key_visual,
    }
    Image.open(io.BytesIO(data)).load()
    oxen_sha256 = served_sha256(fresh_url(result["generation_id"]))
    assert record["sha256"] == hashlib.sha256(data).hexdigest() != oxen_sha256 == record["oxen_sha256"]
    assert record["provenance"] == {"state": "marked", "digital_source_type": COMPOSITE, "reason": None}
    metadata = s3_client.head_object(Bucket=bucket, Key=record["s3_key"])["Metadata"]
    assert (metadata["sha256"], metadata["oxen-sha256"], metadata["provenance"]) == (
        record["sha256"],
        oxen_sha256,
        "marked",
    )
    [listed] = json.loads(object_bytes(s3_client, bucket, MANIFEST_KEY))["images"]
    assert {k: listed[k] for k in ("sha256", "oxen_sha256", "provenance", "input_uris")} == {
        k: record[k] for k in ("sha256", "oxen_sha256", "provenance", "input_uris")
    }
    # (Marking is deterministic: a re-run finds the same bytes and skips them, in
    # test_stores_every_image_with_metadata_manifest_sheet_and_asset_event_and_a_rerun_writes_nothing.)


def test_marking_turned_off_stores_what_oxen_returned_and_turned_on_again_marks_it(
    oxen_conn: EmulatorControl, s3_client: Any, bucket: str, s3_calls: S3Calls
) -> None:
    [result] = generate(1)
    with pytest.raises(OxenValidationError, match="mark_provenance") as refused:
        run_transfer(s3_operator([result], bucket, mark_provenance="sometimes"))
    assert refused.value.field == "mark_provenance" and s3_calls.uploads == 0
    # Signing needs marking: refused before any upload.
    operator = s3_operator([result], bucket, mark_provenance=False, c2pa_conn_id="oxen_c2pa_default")
    with pytest.raises(OxenValidationError, match="mark_provenance=True") as refused:
        run_transfer(operator)
    assert refused.value.field == "c2pa_conn_id" and s3_calls.uploads == 0

    # Templated: a rendered "False" is off.
    [off] = run_transfer(s3_operator([result], bucket, mark_provenance="False", contact_sheet=False))
    data = object_bytes(s3_client, bucket, off["s3_key"])
    assert off["sha256"] == off["oxen_sha256"] == hashlib.sha256(data).hexdigest()
    assert "DigitalSourceType" not in exiftool_xmp(data)
    assert off["provenance"] == {
        "state": "unmarked",
        "digital_source_type": GENERATED,
        "reason": "marking is off (mark_provenance=False)",
    }

    # Turned on again: downloaded from Oxen again, marked, and the unmarked copy replaced.
    downloads = oxen_conn.route_count("GET /files/{id}/{name}")
    [on] = run_transfer(s3_operator([result], bucket, contact_sheet=False))
    assert on["action"] == "replaced" and on["provenance"]["state"] == "marked"
    assert oxen_conn.route_count("GET /files/{id}/{name}") == downloads + 1
    assert exiftool_xmp(object_bytes(s3_client, bucket, on["s3_key"]))["DigitalSourceType"] == GENERATED
    assert on["oxen_sha256"] == off["oxen_sha256"]


def test_a_file_of_an_unknown_container_is_stored_unmarked_and_the_log_says_why(
    fake_oxen: FileServer,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    capfd: pytest.CaptureFixture[str],
) -> None:
    gif = png_bytes((32, 32), (9, 99, 199), "GIF")
    url = fake_oxen.add_result("gen-gif", gif, "still.gif", "image")
    result = {**image_result("gen-gif", f"{url}?signature=test", 32), "output_format": "gif"}
    operator: OxenGenerationToS3Operator = s3_operator([result], bucket, checks=False, contact_sheet=False)
    capfd.readouterr()

    [record] = run_transfer(operator)

    assert "Storing gen-gif unmarked: unknown or damaged container" in capfd.readouterr().out
    assert object_bytes(s3_client, bucket, record["s3_key"]) == gif
    assert record["sha256"] == record["oxen_sha256"] == hashlib.sha256(gif).hexdigest()
    assert record["provenance"]["state"] == "unmarked"
    assert record["provenance"]["reason"].startswith("unknown or damaged container")
    s3_calls.reset()
    [again] = run_transfer(s3_operator([result], bucket, checks=False, contact_sheet=False))
    assert again["action"] == "skipped" and again["provenance"] == record["provenance"]
    assert s3_calls.uploads == 0 and list_keys(s3_client, bucket) == [record["s3_key"], MANIFEST_KEY]


def test_signed_edit_then_clip_read_back_as_one_chain_and_a_rerun_signs_nothing(
    oxen_conn: EmulatorControl,
    s3_client: Any,
    bucket: str,
    s3_calls: S3Calls,
    key_visual: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transfer signs what it marked: photo (unsigned) ← edit ← clip, as c2pa's Reader sees
    it; the clip is paid once although its first worker died before deferring, and is stored as
    a video whose every frame still decodes, with a marked poster frame."""
    import av
    import c2pa

    from airflow_provider_oxen.operators.generate import OxenGenerateVideoOperator
    from tests.provenance.certs import make_signer

    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_DEFAULT", make_signer().connection_json())
    oxen_conn.configure(video_render_seconds=0.5)

    def manifests(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        data = object_bytes(s3_client, bucket, record["s3_key"])
        with c2pa.Reader(record["content_type"], io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
        # A test CA is on no trust list; anything else (a hash mismatch) fails here.
        assert {s["code"] for s in store.get("validation_status", [])} == {"signingCredential.untrusted"}
        assert exiftool_xmp(data)["DigitalSourceType"] == COMPOSITE  # the XMP survived signing
        return store, store["manifests"][store["active_manifest"]]

    [edit] = generate(1, model="qwen-image-edit", prompt="Autumn palette", input_images=key_visual)
    [edit_record] = run_transfer(s3_operator([edit], bucket, c2pa_conn_id="oxen_c2pa_default"))
    assert edit_record["provenance"]["state"] == "signed"
    assert (
        s3_client.head_object(Bucket=bucket, Key=edit_record["s3_key"])["Metadata"]["provenance"] == "signed"
    )
    _, edit_manifest = manifests(edit_record)
    [photo] = edit_manifest["ingredients"]
    photo_bytes = object_bytes(s3_client, bucket, key_visual.removeprefix(f"s3://{bucket}/"))
    assert (photo["title"], photo["metadata"]["sha256"]) == (
        key_visual,
        hashlib.sha256(photo_bytes).hexdigest(),
    )

    def clip_operator() -> OxenGenerateVideoOperator:
        return OxenGenerateVideoOperator(
            task_id="clip",
            model="kling-video-o3-pro-reference-to-video",
            prompt="Slow push-in",
            input_images=edit_record["s3_uri"],
            parameters={"duration": 3, "aspect_ratio": "16:9"},
            poll_interval=0.2,
            deferrable=True,
        )

    class _Died(BaseException):
        pass

    def die(*args: Any, **kwargs: Any) -> None:
        raise _Died

    task_state = FakeTaskStateStore()
    with monkeypatch.context() as patch:
        patch.setattr(OxenGenerateVideoOperator, "defer", die)
        with pytest.raises(_Died):
            clip_operator().execute(task_context(task_state, try_number=1))
    # The retry presigns the input afresh (another signature) and still resumes, paying nothing.
    trigger = defer(clip_operator(), task_context(task_state, try_number=2)).trigger
    assert (
        oxen_conn.stats()["generations_created"] == 2 and oxen_conn.enqueue_posts() == 2
    )  # the edit, the clip
    [clip] = clip_operator().execute_complete(task_context(task_state, try_number=2), run_trigger(trigger))
    assert (clip["media_type"], clip["output_format"]) == ("video", "mp4")
    assert API_KEY not in repr(clip)
    [clip_record] = run_transfer(
        s3_operator(
            [clip], bucket, c2pa_conn_id="oxen_c2pa_default", prefix="clips", key_template="clips/clip.mp4"
        )
    )
    store, clip_manifest = manifests(clip_record)
    [edit_ingredient] = clip_manifest["ingredients"]
    assert edit_ingredient["title"] == edit_record["s3_uri"]
    assert edit_ingredient["metadata"]["sha256"] == edit_record["sha256"]
    # The edit's manifest came along: the clip names the edit, which names the photo.
    assert store["manifests"][edit_ingredient["active_manifest"]]["ingredients"][0]["title"] == key_visual
    assert s3_client.head_object(Bucket=bucket, Key="clips/clip.mp4")["ContentType"] == "video/mp4"
    body = object_bytes(s3_client, bucket, "clips/clip.mp4")
    with av.open(io.BytesIO(body)) as video:  # marked and signed, and still every frame decodes
        assert sum(1 for _ in video.decode(video=0)) == 3 * 8  # 3 s at the emulator's 8 fps
    assert exiftool_xmp(body)["IngredientsFilePath"] == edit_record["s3_uri"]
    poster = object_bytes(s3_client, bucket, clip_record["poster_s3_key"])
    assert Image.open(io.BytesIO(poster)).format == "JPEG"
    assert exiftool_xmp(poster)["DocumentID"] == f"oxen:generation:{clip['generation_id']}"

    # A re-run keeps what was signed (signing is not deterministic: nothing is re-signed or uploaded).
    s3_calls.reset()
    [again] = run_transfer(s3_operator([edit], bucket, c2pa_conn_id="oxen_c2pa_default"))
    assert (again["action"], again["sha256"], s3_calls.uploads) == ("skipped", edit_record["sha256"], 0)
