"""Apache Airflow provider for the Oxen.ai inference API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# The version is written once, in pyproject.toml; this reads it from the installed
# distribution, so ``__version__``, ``get_provider_info()["versions"]`` and what
# ``airflow providers list`` shows (the distribution's metadata) cannot disagree.
try:
    __version__ = version("airflow-provider-oxen")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
