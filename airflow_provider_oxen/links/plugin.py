"""The provider's Airflow plugin: the extra links the api-server computes when they are shown.

Registered through the ``airflow.plugins`` entry point. Airflow prefers a plugin's link to an
operator's stored link of the same name, so with this plugin loaded the api-server presigns
S3 objects and fetches fresh Oxen result URLs on demand (see :mod:`airflow_provider_oxen.links`);
without it, the stored (unsigned) links are shown.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_oxen.links.extra_links import LIVE_LINKS


class OxenLinksPlugin(AirflowPlugin):
    """Live extra links for the generate, store and review operators."""

    name = "airflow_provider_oxen_links"
    operator_extra_links = [link() for link in LIVE_LINKS]
