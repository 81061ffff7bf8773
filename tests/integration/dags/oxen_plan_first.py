"""The cost plan as a DAG's first task: over the budget, so the run fails before any enqueue."""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_provider_oxen.operators.generate import OxenGenerateImageOperator
from airflow_provider_oxen.operators.plan import OxenCostPlanOperator

with DAG("oxen_plan_first", schedule=None, params={"n": 3, "budget": "0.10"}) as dag:
    OxenCostPlanOperator(
        task_id="cost_plan", budget="{{ params.budget }}"
    ) >> OxenGenerateImageOperator.partial(
        task_id="posters", model="ideogram-v4", num_outputs="{{ params.n }}", deferrable=False
    ).expand(prompt=["A red poster", "A blue poster"])
