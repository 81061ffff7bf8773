"""Inputs read before anything is paid (moto S3), and keys named by what was stored — over real
sockets against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator
from tests.fixtures import EmulatorControl
from tests.integration.helpers import task_context
from tests.transfers.helpers import generate, transfer_context


def _edit(input_images: Any, **kwargs: Any) -> OxenGenerateImageOperator:
    return OxenGenerateImageOperator(
        task_id="edit",
        model="nano-banana-2-edit",  # its input_image is an array of 1-4 URLs
        prompt="Autumn palette",
        input_images=input_images,
        wait_for_completion=False,
        **kwargs,
    )


def test_a_missing_input_or_one_outside_the_allowed_prefixes_is_refused_before_anything_is_sent(
    oxen_conn: EmulatorControl, aws_conn: str, bucket: str, key_visual: str
) -> None:
    for missing in (f"s3://{bucket}/no-such-key.png", "s3://no-such-bucket-i20/a.png"):
        with pytest.raises(OxenValidationError) as info:
            _edit([key_visual, missing]).execute(task_context())
        assert info.value.field == "input_images"
        assert missing in str(info.value) and "does not exist" in str(info.value)
    allowed = [f"s3://{bucket}/approved/"]
    for outside in (
        f"s3://{bucket}/drafts/other.png",  # exists, but not where this task may read
        f"s3://{bucket}/approved-old/a.png",
        f"s3://{bucket}/approved/../drafts/other.png",
    ):
        with pytest.raises(OxenValidationError, match="allowed_input_prefixes") as info:
            _edit(outside, allowed_input_prefixes=allowed).execute(task_context())
        assert info.value.field == "input_images" and outside in str(info.value)
    assert oxen_conn.enqueue_posts() == 0  # nothing was presigned or sent
    _edit(key_visual, allowed_input_prefixes=[f"s3://{bucket}/approved"]).execute(task_context())
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert post["json"]["input_image"][0].split("?")[0].endswith("/approved/key-visual.png")


def _stored_key(results: list[dict[str, Any]], bucket: str) -> str:
    [record] = OxenGenerationToS3Operator(
        task_id="store", results=results, bucket=bucket, prefix="edits", contact_sheet=False
    ).execute(transfer_context())
    return str(record["s3_key"])


def test_a_format_left_to_the_model_names_the_key_by_its_schema_default_or_the_bytes(
    oxen_conn: EmulatorControl, aws_conn: str, bucket: str, s3_client: Any
) -> None:
    [result] = generate(1)  # ideogram-v4: output_format defaults to jpeg in its schema
    unsaid = {**result, "output_format": None, "parameters": {}}
    assert _stored_key([unsaid], bucket) == f"edits/{result['generation_id']}.jpg"
    # A model whose schema says nothing (flux-2-dev has none): the stored bytes say PNG.
    [result] = generate(1, model="flux-2-dev")
    unsaid = {**result, "output_format": None, "parameters": {}}
    key = _stored_key([unsaid], bucket)
    assert key == f"edits/{result['generation_id']}.png"
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "image/png"
    assert _stored_key([unsaid], bucket) == key  # a re-run finds it there
    # Given generation ids (nested as mapped tasks hand them over), the results are read from the API.
    assert _stored_key([[result["generation_id"]]], bucket) == key
