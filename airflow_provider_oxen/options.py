"""The provider's own ``[oxen]`` settings, read the way Airflow reads its configuration."""

from __future__ import annotations

import contextlib
import os


def env_var(name: str) -> str:
    """``AIRFLOW__OXEN__<NAME>``: the environment variable Airflow maps to ``[oxen] <name>``."""
    return f"AIRFLOW__OXEN__{name.upper()}"


def provider_option(name: str) -> str | None:
    """``[oxen] <name>`` from Airflow's configuration; None if it is not set.

    Without an Airflow configuration (a bare script, a benchmark child) the environment
    variable Airflow would have read is looked at directly.
    """
    value: str | None = None
    with contextlib.suppress(Exception):
        from airflow.sdk import conf

        value = conf.get("oxen", name, fallback=None)
    if value is None:
        value = os.environ.get(env_var(name))
    return value
