"""Model details (schema, pricing) cached per process and shared by the task processes of a host.

Every task validates its parameters against the model's schema before it spends anything,
and Airflow starts a fresh process for each task (twice for a deferring one). Without a
cache shared between those processes, every task would read the same schema again: one
request per task, often more than the enqueue itself. The second layer is one small JSON
file per (API base URL, model) in a directory only this OS user can write, trusted for
``ttl`` seconds by its modification time; a file that cannot be read, or a directory that is
not private, is simply not used. Set ``[oxen] model_cache_dir`` (``AIRFLOW__OXEN__MODEL_CACHE_DIR``)
to choose the directory, or to an empty string to keep the cache per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from airflow_provider_oxen.models import OxenModel
from airflow_provider_oxen.options import private_directory, provider_directory

log = logging.getLogger(__name__)

MODEL_CACHE_TTL = 600.0


def default_cache_dir() -> Path | None:
    """``[oxen] model_cache_dir``, else a per-user directory under the system temp dir."""
    return provider_directory("model_cache_dir", "models")


class ModelCache:
    """Process-wide cache of model details, shared by every hook (and thread) in the process,
    backed by the per-user directory (see the module docstring)."""

    def __init__(self, ttl: float, directory: Path | str | None = "default") -> None:
        self._ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, OxenModel]] = {}
        self._lock = threading.Lock()
        self._directory_setting = directory
        self._directory: Path | None = None
        self._directory_checked = False

    # -- the shared directory ----------------------------------------------------------------------

    def _dir(self) -> Path | None:
        if not self._directory_checked:
            wanted = default_cache_dir() if self._directory_setting == "default" else self._directory_setting
            path = Path(wanted) if wanted is not None else None
            # A refused directory is logged (once, saying why) by private_directory.
            self._directory = path if path is not None and private_directory(path) else None
            self._directory_checked = True
        return self._directory

    @staticmethod
    def _file_name(base_url: str, model_id: str) -> str:
        return hashlib.sha256(f"{base_url}\0{model_id}".encode()).hexdigest() + ".json"

    def _read_file(self, base_url: str, model_id: str) -> tuple[float, OxenModel] | None:
        directory = self._dir()
        if directory is None:
            return None
        path = directory / self._file_name(base_url, model_id)
        try:
            age = time.time() - path.stat().st_mtime
            if not 0 <= age <= self._ttl:
                return None
            data = json.loads(path.read_text())
            if data.get("base_url") != base_url or data.get("model_id") != model_id:
                return None
            model = OxenModel.model_validate(data["model"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Expire it in this process when the file would have expired.
        return time.monotonic() - age, model

    def _write_file(self, base_url: str, model: OxenModel, model_id: str) -> None:
        directory = self._dir()
        if directory is None:
            return
        body = json.dumps(
            {"base_url": base_url, "model_id": model_id, "model": model.model_dump(mode="json")}
        )
        # Written aside and renamed: a reader sees the old file or the new one, never half.
        try:
            fd, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        except OSError as exc:
            log.debug("Model cache file not written: %s", exc)
            return
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            os.replace(temp, directory / self._file_name(base_url, model_id))
        except OSError as exc:
            log.debug("Model cache file not written: %s", exc)
            with contextlib.suppress(OSError):
                os.unlink(temp)

    # -- the cache -----------------------------------------------------------------------------------

    def get(self, base_url: str, model_id: str) -> OxenModel | None:
        key = (base_url, model_id)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            entry = self._read_file(base_url, model_id)
            if entry is None:
                return None
            with self._lock:
                self._entries[key] = entry
        return entry[1]

    def put(self, base_url: str, model: OxenModel, model_id: str) -> None:
        with self._lock:
            self._entries[(base_url, model_id)] = (time.monotonic(), model)
        self._write_file(base_url, model, model_id)

    def clear(self) -> None:
        """Forget everything, in this process and in the shared directory."""
        with self._lock:
            self._entries.clear()
        directory = self._dir()
        if directory is not None:
            for path in directory.glob("*.json"):
                with contextlib.suppress(OSError):
                    path.unlink()
