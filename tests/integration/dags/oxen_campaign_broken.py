"""The campaign DAG with one deliberately broken downstream task, for the cost plan's proof.

Its clip is pinned to the spec's follow-up values (the campaign reads them from an upstream
task, so a plan could not know them), with a typo in its parameters: ``aspect_ration``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from airflow.sdk import DAG  # noqa: F401  (the DAG file heuristic looks for both words)

_SOURCE = Path(__file__).resolve().parents[3] / "dags" / "oxen_marketing_campaign.py"
_spec = importlib.util.spec_from_file_location("oxen_campaign_for_plan", _SOURCE)
assert _spec is not None and _spec.loader is not None
_campaign = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_campaign)

dag = _campaign.dag
clip = dag.get_task("clip")
clip.model = "kling-video-o3-pro-reference-to-video"
clip.prompt = "Slow push-in on the poster, steam rising from the cup"
clip.parameters = {"duration": 4, "aspect_ration": "16:9"}
