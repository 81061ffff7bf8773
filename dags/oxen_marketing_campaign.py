"""Marketing campaign: prompts in, reviewed brand images in a bucket out.

spec (YAML) → prompts → generate (mapped, deferrable) → store in S3 (checks, manifest,
contact sheet, Asset event) → human review (Human-in-the-loop) → publish approved /
move rejected aside → regenerations loop back as a new run of this DAG.

Then the follow-up media of the approved key visual (the first approved image): edited
variants of it (an image-to-image model, one mapped task per variant) and a short clip
animating it (an image-to-video model) → store in S3 (clips with a poster frame each) →
review → publish. The spec's ``follow_up`` section says which models and prompts.

Connections: ``oxen_default`` (Oxen API) and ``aws_default`` (S3). The demo points them at
the embedded emulator and a local moto S3 server; nothing else changes for production.
Params: ``campaign_file`` (spec under dags/campaigns/) and ``bucket``. Reviewers have
``OXEN_CAMPAIGN_REVIEW_SECONDS`` (default one day); with no answer by then, each image's
default decision applies: approve, unless it failed the automatic checks.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, task

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator, OxenGenerateVideoOperator
from airflow_provider_oxen.operators.publish import OxenPublishReviewedOperator
from airflow_provider_oxen.operators.review import OxenImageReviewOperator
from airflow_provider_oxen.transfers.s3 import OxenGenerationToS3Operator

CAMPAIGNS = Path(__file__).parent / "campaigns"
# How long reviewers have before each image's default decision applies (the demo uses seconds).
REVIEW_SECONDS = int(os.environ.get("OXEN_CAMPAIGN_REVIEW_SECONDS", str(24 * 3600)))
CAMPAIGN_ASSETS = Asset("s3://oxen-campaigns/campaigns", extra={"producer": "oxen_marketing_campaign"})


def build_prompts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One generation request per (product, headline, size)."""
    requests = []
    for product in spec["products"]:
        for headline in spec["headlines"]:
            for size in spec["sizes"]:
                prompt = (
                    f"{spec['brand']} campaign image for {product['name']}: {product['description']}. "
                    f'Headline text, rendered exactly: "{headline}". Style: {spec["style"]}.'
                )
                requests.append({"prompt": prompt, "image_size": size})
    return requests


def product_of(spec: dict[str, Any], prompt: str) -> str:
    """The product a prompt is about (its name is in the prompt, regenerations included); else ""."""
    names = [str(p.get("name") or "") for p in spec.get("products") or []]
    return max((n for n in names if n and n in prompt), key=len, default="")


with DAG(
    dag_id="oxen_marketing_campaign",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "example", "marketing"],
    params={"campaign_file": "spring_roast.yaml", "bucket": "oxen-campaigns"},
) as dag:

    @task
    def load_spec(params: dict[str, Any], dag_run: Any = None) -> dict[str, Any]:
        import yaml

        spec = yaml.safe_load((CAMPAIGNS / params["campaign_file"]).read_text())
        regenerate = (dag_run.conf or {}).get("regenerate") if dag_run is not None else None
        spec["requests"] = regenerate or build_prompts(spec)
        return spec

    @task
    def generation_requests(spec: dict[str, Any]) -> list[dict[str, Any]]:
        parameters = {"rendering_speed": "TURBO", "output_format": "png"}
        return [
            {"prompt": r["prompt"], "parameters": {**parameters, "image_size": r["image_size"]}}
            for r in spec["requests"]
        ]

    spec = load_spec()
    generate = OxenGenerateImageOperator.partial(
        task_id="generate",
        model="ideogram-v4",
        poll_interval=2,
        timeout=1800,
        deferrable=True,
        retries=2,
        retry_delay=timedelta(seconds=10),
    ).expand_kwargs(generation_requests(spec))

    store = OxenGenerationToS3Operator(
        task_id="store",
        results=generate.output,
        bucket="{{ params.bucket }}",
        prefix="campaigns/{{ dag_run.run_after | ds }}/{{ dag_run.run_after | ts_nodash }}",
        key_template="{prefix}/{generation_id}.{ext}",
        outlets=[CAMPAIGN_ASSETS],
    )

    @task
    def review_labels(spec: dict[str, Any]) -> dict[str, str]:
        """What each prompt shows, for the review form's titles ("Image 1 — Cold Brew Kit, 16:9")."""
        return {r["prompt"]: product_of(spec, r["prompt"]) for r in spec["requests"]}

    labels = review_labels(spec)
    review = OxenImageReviewOperator(
        task_id="review",
        subject="Review the campaign images",
        records=store.output,
        labels=labels,
        contact_sheet_uri="{{ ti.xcom_pull(task_ids='store', key='contact_sheet_uri') }}",
        response_timeout=timedelta(seconds=REVIEW_SECONDS),
    )

    publish = OxenPublishReviewedOperator(
        task_id="publish",
        records=store.output,
        review=review.output,
        bucket="{{ params.bucket }}",
        approved_prefix="approved/{{ dag_run.run_after | ds }}",
        rejected_prefix="rejected/{{ dag_run.run_after | ds }}",
    )

    @task.short_circuit
    def anything_to_regenerate(outcome: dict[str, Any]) -> bool:
        return bool(outcome["regenerate"])

    regenerate = TriggerDagRunOperator(
        task_id="regenerate",
        trigger_dag_id="oxen_marketing_campaign",
        conf={"regenerate": publish.output["regenerate"]},
    )

    anything_to_regenerate(publish.output) >> regenerate

    # -- follow-up media of the approved key visual: edited variants and a clip ------------------

    @task.short_circuit
    def key_visual(
        outcome: dict[str, Any], spec: dict[str, Any], records: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The first approved image, the product it shows, and what to make of it (nothing
        approved: skip the rest)."""
        images = [uri for uri in outcome["approved"] if not str(uri).endswith((".mp4", ".webm", ".mov"))]
        follow_up = spec.get("follow_up") or {}
        if not images or not follow_up:
            return None
        # The published copy keeps the stored file's name.
        name = images[0].rsplit("/", 1)[-1]
        prompt = next((r["prompt"] for r in records if r["s3_key"].rsplit("/", 1)[-1] == name), "")
        return {"uri": images[0], "label": product_of(spec, prompt), **follow_up}

    visual = key_visual(publish.output, spec, store.output)

    @task
    def variant_requests(visual: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"prompt": prompt, "input_images": visual["uri"]} for prompt in visual["variants"]["prompts"]]

    variants = OxenGenerateImageOperator.partial(
        task_id="variants",
        model="{{ ti.xcom_pull(task_ids='key_visual')['variants']['model'] }}",
        poll_interval=2,
        timeout=1800,
        deferrable=True,
        retries=2,
        retry_delay=timedelta(seconds=10),
    ).expand_kwargs(variant_requests(visual))

    clip = OxenGenerateVideoOperator(
        task_id="clip",
        model="{{ ti.xcom_pull(task_ids='key_visual')['clip']['model'] }}",
        prompt="{{ ti.xcom_pull(task_ids='key_visual')['clip']['prompt'] }}",
        input_images="{{ ti.xcom_pull(task_ids='key_visual')['uri'] }}",
        parameters={
            "duration": "{{ ti.xcom_pull(task_ids='key_visual')['clip']['duration'] }}",
            "aspect_ratio": "{{ ti.xcom_pull(task_ids='key_visual')['clip']['aspect_ratio'] }}",
        },
        poll_interval=2,
        deferrable=True,
        retries=2,
        retry_delay=timedelta(seconds=10),
    )
    visual >> clip

    @task
    def follow_up_results(variants: list[Any], clip: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One batch for storage and review: the variants (one list per mapped task) and the clip."""
        flat = [r for batch in variants for r in (batch if isinstance(batch, list) else [batch])]
        return [*flat, *clip]

    store_media = OxenGenerationToS3Operator(
        task_id="store_media",
        results=follow_up_results(variants.output, clip.output),
        bucket="{{ params.bucket }}",
        prefix="campaigns/{{ dag_run.run_after | ds }}/{{ dag_run.run_after | ts_nodash }}/follow-up",
        key_template="{prefix}/{generation_id}.{ext}",
        outlets=[CAMPAIGN_ASSETS],
    )

    @task
    def media_labels(visual: dict[str, Any]) -> dict[str, str]:
        """The follow-up's prompts name no product: its titles keep the key visual's."""
        prompts = [*visual["variants"]["prompts"], visual["clip"]["prompt"]]
        return {prompt: visual["label"] for prompt in prompts}

    review_media = OxenImageReviewOperator(
        task_id="review_media",
        subject="Review the variants and the clip",
        records=store_media.output,
        labels=media_labels(visual),
        contact_sheet_uri="{{ ti.xcom_pull(task_ids='store_media', key='contact_sheet_uri') }}",
        response_timeout=timedelta(seconds=REVIEW_SECONDS),
    )

    OxenPublishReviewedOperator(
        task_id="publish_media",
        records=store_media.output,
        review=review_media.output,
        bucket="{{ params.bucket }}",
        approved_prefix="approved/{{ dag_run.run_after | ds }}/follow-up",
        rejected_prefix="rejected/{{ dag_run.run_after | ds }}/follow-up",
    )


with DAG(
    dag_id="oxen_campaign_assets_consumer",
    schedule=[CAMPAIGN_ASSETS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "example", "marketing"],
) as consumer:

    @task
    def announce(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Downstream consumption: read what the campaign run stored, from the Asset event."""
        summaries = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                print(f"New campaign batch: {event.extra}")
                summaries.append(dict(event.extra))
        return summaries

    announce()
