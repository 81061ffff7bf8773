"""The model cache: per process, keyed by API base URL and model id, for a fixed time."""

from __future__ import annotations

import pytest

from airflow_provider_oxen.hooks import oxen
from airflow_provider_oxen.hooks.oxen import ModelCache
from airflow_provider_oxen.models import OxenModel

URL = "https://hub.oxen.ai"
MODEL = OxenModel.model_validate(
    {
        "id": "ideogram-v4",
        "pricing": {"per_image": "0.06"},
        "request_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
    }
)


def test_a_model_is_found_by_its_url_and_id_only() -> None:
    cache = ModelCache(600)
    cache.put(URL, MODEL, "ideogram-v4")
    assert cache.get(URL, "ideogram-v4") == MODEL
    assert cache.get("https://other.example", "ideogram-v4") is None
    assert cache.get(URL, "flux-2-dev") is None
    cache.clear()
    assert cache.get(URL, "ideogram-v4") is None


def test_an_entry_expires_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(oxen.time, "monotonic", lambda: now[0])
    cache = ModelCache(600)
    cache.put(URL, MODEL, "ideogram-v4")
    now[0] += 600
    assert cache.get(URL, "ideogram-v4") == MODEL
    now[0] += 1
    assert cache.get(URL, "ideogram-v4") is None
