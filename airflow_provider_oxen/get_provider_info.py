"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_oxen import __version__

# Shown in the connection form as the Extra placeholder; every key is optional.
_EXTRA_PLACEHOLDER = """{
  "timeout": 60,
  "max_retries": 5,
  "backoff_base": 0.5,
  "backoff_max": 30,
  "target_namespace": "my-org"
}"""


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-oxen",
        "name": "Oxen.ai",
        "description": "Generate images with the `Oxen.ai <https://oxen.ai>`__ inference API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Oxen.ai",
                "external-doc-url": "https://docs.oxen.ai",
                "tags": ["ai", "service"],
            }
        ],
        "hooks": [{"integration-name": "Oxen.ai", "python-modules": ["airflow_provider_oxen.hooks.oxen"]}],
        "operators": [
            {
                "integration-name": "Oxen.ai",
                "python-modules": [
                    "airflow_provider_oxen.operators.generate",
                    "airflow_provider_oxen.operators.review",
                    "airflow_provider_oxen.operators.publish",
                    "airflow_provider_oxen.operators.plan",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Oxen.ai", "python-modules": ["airflow_provider_oxen.sensors.generation"]}
        ],
        "triggers": [
            {"integration-name": "Oxen.ai", "python-modules": ["airflow_provider_oxen.triggers.generation"]}
        ],
        "transfers": [
            {
                "source-integration-name": "Oxen.ai",
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_oxen.transfers.s3",
            }
        ],
        # Stored links (declared on the operators) and the live ones the api-server computes
        # through the provider's plugin (the ``airflow.plugins`` entry point); see docs/links.md.
        "extra-links": [
            "airflow_provider_oxen.links.extra_links.OxenImageLink",
            "airflow_provider_oxen.links.extra_links.OxenS3FolderLink",
            "airflow_provider_oxen.links.extra_links.OxenManifestLink",
            "airflow_provider_oxen.links.extra_links.OxenContactSheetLink",
            "airflow_provider_oxen.links.extra_links.OxenImageLiveLink",
            "airflow_provider_oxen.links.extra_links.OxenManifestLiveLink",
            "airflow_provider_oxen.links.extra_links.OxenContactSheetLiveLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_oxen.hooks.oxen.OxenHook",
                "hook-name": "Oxen.ai",
                "connection-type": "oxen",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "API base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://hub.oxen.ai",
                        "password": "your Oxen API key (Settings → API keys)",
                        "extra": _EXTRA_PLACEHOLDER,
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (s)",
                        "description": "Per-request HTTP timeout in seconds.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries for 429/502/503/504 and connection errors (never for "
                        "a paid request that may have reached the server).",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "target_namespace": {
                        "label": "Target namespace",
                        "description": "User or organisation that results are saved and billed to.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
            {
                # C2PA signing (docs/provenance.md): the key in the password, the rest in extra.
                "hook-class-name": "airflow_provider_oxen.provenance.c2pa.C2paSigningHook",
                "hook-name": "Oxen C2PA signing",
                "connection-type": "oxen_c2pa",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "login"],
                    "relabeling": {"password": "Private key (PEM)"},
                    "placeholders": {"password": "-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----"},
                },
                "conn-fields": {
                    "certificate_chain": {
                        "label": "Certificate chain (PEM)",
                        "description": "The signing certificate first, then its intermediate CAs.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "algorithm": {
                        "label": "Algorithm",
                        "description": "Must fit the key: es256/384/512 (EC), ps256/384/512 (RSA), ed25519.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "es256",
                            "enum": ["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"],
                        },
                    },
                    "tsa_url": {
                        "label": "Timestamp authority URL",
                        "description": "Optional RFC 3161 service that timestamps each signature.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
        ],
    }
