"""Example: three ways to generate images with Oxen.ai.

* ``poster`` — one deferrable task, one typography poster from ``ideogram-v4``;
* ``product_shots`` — dynamic task mapping: one mapped task per prompt;
* ``enqueue_only`` + ``wait_for_banners`` — fire-and-forget, then a sensor waits.

Needs a connection ``oxen_default`` (type ``oxen``): host = API base URL, password = API key.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.sensors.generation import OxenGenerationSensor

with DAG(
    dag_id="oxen_generate_images",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["oxen", "example"],
    params={"brand": "Acme Coffee"},
) as dag:
    poster = OxenGenerateImageOperator(
        task_id="poster",
        prompt='A bold typographic poster that reads "{{ params.brand }}: Open Late", warm colours',
        parameters={"image_size": "portrait_4_3", "rendering_speed": "TURBO", "output_format": "png"},
        poll_interval=1,
        timeout=600,
        deferrable=True,
    )

    product_shots = OxenGenerateImageOperator.partial(
        task_id="product_shots",
        parameters={"image_size": "square"},
        poll_interval=1,
        timeout=600,
        deferrable=True,
    ).expand(
        prompt=[
            "A ceramic coffee mug on a marble counter, studio light",
            "A bag of single-origin coffee beans, flat lay, pastel background",
        ]
    )

    enqueue_only = OxenGenerateImageOperator(
        task_id="enqueue_only",
        prompt="A wide banner with the words 'Fresh Roast Friday'",
        parameters={"image_size": "landscape_16_9"},
        num_outputs=2,
        wait_for_completion=False,
    )

    wait_for_banners = OxenGenerationSensor(
        task_id="wait_for_banners",
        generation_ids=enqueue_only.output,
        poll_interval=1,
        timeout=600,
        deferrable=True,
    )
