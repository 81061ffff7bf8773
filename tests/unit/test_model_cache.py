"""The model cache: per process, and shared by a host's task processes through a private directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from airflow_provider_oxen.hooks.model_cache import ModelCache, default_cache_dir
from airflow_provider_oxen.models import OxenModel

URL = "https://hub.oxen.ai"
MODEL = OxenModel.model_validate(
    {
        "id": "ideogram-v4",
        "pricing": {"per_image": "0.06"},
        "request_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
    }
)


def test_a_second_process_reads_what_the_first_one_fetched(tmp_path: Path) -> None:
    ModelCache(600, tmp_path).put(URL, MODEL, "ideogram-v4")
    other = ModelCache(600, tmp_path)  # a fresh task process: nothing in memory
    assert other.get(URL, "ideogram-v4") == MODEL
    assert other.get("https://other.example", "ideogram-v4") is None
    assert other.get(URL, "flux-2-dev") is None


def test_an_expired_or_unreadable_file_is_a_miss(tmp_path: Path) -> None:
    ModelCache(600, tmp_path).put(URL, MODEL, "ideogram-v4")
    [path] = tmp_path.glob("*.json")
    old = time.time() - 601
    os.utime(path, (old, old))
    assert ModelCache(600, tmp_path).get(URL, "ideogram-v4") is None
    path.write_text("{not json")
    os.utime(path, None)
    assert ModelCache(600, tmp_path).get(URL, "ideogram-v4") is None
    # A file naming another URL or model under this name (tampered, or a hash collision): a miss.
    forged = {"base_url": URL, "model_id": "other", "model": MODEL.model_dump(mode="json")}
    path.write_text(json.dumps(forged))
    assert ModelCache(600, tmp_path).get(URL, "ideogram-v4") is None


def test_a_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ModelCache(600, shared).put(URL, MODEL, "ideogram-v4")
    assert not list(shared.glob("*.json"))
    assert ModelCache(600, shared).get(URL, "ideogram-v4") is None


def test_a_private_directory_under_a_parent_others_can_write_is_not_used(tmp_path: Path) -> None:
    # Whoever can rename "models" could put a directory of their own in its place, with model
    # details (pricing, schema) that let a request pass checks it should fail.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ModelCache(600, shared / "models").put(URL, MODEL, "ideogram-v4")
    assert not list((shared / "models").glob("*.json"))
    shared.chmod(0o1777)  # sticky, like /tmp: only an entry's owner can rename it
    ModelCache(600, shared / "models").put(URL, MODEL, "ideogram-v4")
    assert ModelCache(600, shared / "models").get(URL, "ideogram-v4") == MODEL


def test_a_refused_directory_is_logged_once_naming_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for _ in range(3):
        ModelCache(600, shared / "models").put(URL, MODEL, "ideogram-v4")
    warnings = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_oxen.options"]
    assert warnings == [
        f"Not using {shared / 'models'} as a shared cache directory: {shared} is another user's, "
        "or others can write to it without the sticky bit."
    ]


def test_the_parents_it_creates_are_private(tmp_path: Path) -> None:
    ModelCache(600, tmp_path / "per-user" / "models").put(URL, MODEL, "ideogram-v4")
    assert (tmp_path / "per-user").stat().st_mode & 0o777 == 0o700


def test_no_directory_keeps_the_cache_in_the_process(tmp_path: Path) -> None:
    cache = ModelCache(600, None)
    cache.put(URL, MODEL, "ideogram-v4")
    assert cache.get(URL, "ideogram-v4") == MODEL
    assert ModelCache(600, None).get(URL, "ideogram-v4") is None


def test_clear_forgets_the_shared_files_too(tmp_path: Path) -> None:
    cache = ModelCache(600, tmp_path)
    cache.put(URL, MODEL, "ideogram-v4")
    cache.clear()
    assert cache.get(URL, "ideogram-v4") is None and not list(tmp_path.glob("*.json"))


def test_the_directory_is_configurable_and_can_be_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__OXEN__MODEL_CACHE_DIR", str(tmp_path / "models"))
    assert default_cache_dir() == tmp_path / "models"
    monkeypatch.setenv("AIRFLOW__OXEN__MODEL_CACHE_DIR", "")
    assert default_cache_dir() is None
    monkeypatch.delenv("AIRFLOW__OXEN__MODEL_CACHE_DIR")
    default = default_cache_dir()
    assert default is not None and default.name == "models" and str(os.getuid()) in default.parent.name


def test_files_are_private_to_the_user(tmp_path: Path) -> None:
    directory = tmp_path / "fresh"
    ModelCache(600, directory).put(URL, MODEL, "ideogram-v4")
    assert directory.stat().st_mode & 0o077 == 0
    [path] = directory.glob("*.json")
    assert path.stat().st_mode & 0o077 == 0  # mkstemp creates files 0600
