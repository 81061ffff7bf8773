"""The real peer: what a user writes without this provider, with the official http provider.

``HttpEventTrigger`` (apache-airflow-providers-http) polling ``GET /api/ai/queue/{id}`` every
``poll_interval`` with a response check, through an ``http`` connection whose extras carry
the ``Authorization`` header. Nothing here is tuned: it is the provider's trigger as shipped.
(The trigger re-imports the response-check module on every poll and opens a fresh aiohttp
session per request: that is its own behaviour, so this module is kept as small as a user's.)
"""

from __future__ import annotations

import json
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
HTTP_CONN_ID = "oxen_http"
CHECK_PATH = "benchmarks.http_peer.generation_finished"


async def generation_finished(response: Any) -> bool:
    """The response check: the queue row says the generation is finished."""
    return response.json().get("status") in TERMINAL


def http_connection_json(url: str, api_key: str) -> str:
    """``AIRFLOW_CONN_OXEN_HTTP``: the emulator as an ``http`` connection, the key in a header."""
    return json.dumps({"conn_type": "http", "host": url, "extra": {"Authorization": f"Bearer {api_key}"}})


def build_trigger(generation_id: str, poll_interval: float) -> Any:
    from airflow.providers.http.triggers.http import HttpEventTrigger

    return HttpEventTrigger(
        response_check_path=CHECK_PATH,
        http_conn_id=HTTP_CONN_ID,
        method="GET",
        endpoint=f"api/ai/queue/{generation_id}",
        poll_interval=poll_interval,
    )


def event_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The queue row carried by a fired event (the trigger ships the whole response, base64)."""
    import base64

    if payload.get("status") != "success":
        return []
    body = base64.standard_b64decode(payload["response"]["content"])
    return [json.loads(body)]
