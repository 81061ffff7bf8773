"""What the release tests share: the repository, the distribution name, pyproject's version."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "airflow-provider-oxen"


def pyproject_version() -> str:
    """The version, read from where it is written (the only place)."""
    with (REPO / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])
