"""Credits (402 insufficient_credits), and cost as decimal strings on the generations endpoints."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from .helpers import ROW_KEYS, assert_error, control, enqueue, wait_for_status

# The details only this endpoint gives besides the queue row's fields.
DETAIL_KEYS = ROW_KEYS | {"result_urls", "retried_from_id", "cost", "currency", "triggered_by", "source"}
DETAIL_KEYS |= {"target_namespace", "parameters"}


def _credits(base_url: str) -> str | None:
    value: str | None = control(base_url, "GET", "/config")["credits"]
    return value


def test_generation_details_carry_cost_as_a_decimal_string(client: httpx.Client) -> None:
    (gid,) = enqueue(client, target_namespace="team-c", seed=1)
    wait_for_status(client, gid, {"succeeded"})
    details = client.get(f"/api/ai/generations/{gid}").json()
    assert set(details) == DETAIL_KEYS
    assert details["cost"] == "0.0600" and details["currency"] == "USD"
    assert details["triggered_by"] == "emulator-user" and details["target_namespace"] == "team-c"
    assert details["model_name"] == "ideogram-v4" and details["status"] == "succeeded"
    assert details["parameters"] == {"prompt": "a red fox in the snow", "seed": 1}
    (only_url,) = details["result_urls"]  # signed separately: compare without the query
    assert only_url.split("?")[0] == details["result_url"].split("?")[0]
    assert details["source"] == "queue" and details["retried_from_id"] is None


def test_history_lists_queue_and_sync_generations_with_a_total(client: httpx.Client) -> None:
    ids = enqueue(client, num_generations=2)
    for gid in ids:
        wait_for_status(client, gid, {"succeeded"})
    (bad,) = enqueue(client, image_size="huge")
    wait_for_status(client, bad, {"failed"})
    sync = client.post(
        "/api/ai/images/generate", json={"model": "ideogram-v4", "prompt": "two", "num_images": 2}
    )
    assert sync.status_code == 200
    history = client.get("/api/ai/generations").json()
    assert set(history) == {"generations", "total_cost", "count"}
    assert history["count"] == 4 and len(history["generations"]) == 4
    # 2 queue rows at 0.06 + one sync request of 2 images at 0.06; the failed one costs nothing.
    assert history["total_cost"] == "0.2400"
    newest = history["generations"][0]
    assert newest["source"] == "sync" and newest["cost"] == "0.1200" and len(newest["result_urls"]) == 2
    failed = client.get(f"/api/ai/generations/{bad}").json()
    assert failed["status"] == "failed" and failed["cost"] == "0.0000"
    only_failed = client.get("/api/ai/generations", params={"status": "failed"}).json()
    assert only_failed["count"] == 1 and only_failed["total_cost"] == "0.0000"
    page = client.get("/api/ai/generations", params={"limit": 1, "offset": 1}).json()
    assert page["count"] == 4 and [row["generation_id"] for row in page["generations"]] == [bad]
    assert_error(client.get("/api/ai/generations", params={"limit": "-1"}), 400, "invalid_params")


@pytest.mark.parametrize(
    ("model", "parameters", "units"),
    [
        ("ideogram-v4", {"num_generations": 2}, 2),  # cost_per_image x rows
        ("flux-2-dev", {}, 1),  # a price given as text
        ("kling-video-v2-6-pro-text-to-video", {"duration": 3}, 3),  # cost_per_second x duration
        ("kling-video-o3-pro-reference-to-video", {"input_image": "https://example.com/a.png"}, 5),
    ],
)
def test_requests_are_billed_by_the_published_pricing(
    client: httpx.Client, base_url: str, model: str, parameters: dict[str, object], units: int
) -> None:
    """``method`` names the unit and ``cost_per_<method>`` its price; without a ``duration`` a
    video is billed for the schema's default one."""
    published = client.get(f"/api/ai/models/{model}").json()
    pricing = published["pricing"]
    if "duration" not in parameters and pricing["method"] == "second":
        assert published["request_schema"]["properties"]["duration"]["default"] == units
    control(base_url, "POST", "/config", {"credits": "10.0000", "queue_seconds": 5})
    enqueue(client, model=model, **parameters)
    spent = Decimal("10") - Decimal(str(_credits(base_url)))
    assert spent == Decimal(str(pricing[f"cost_per_{pricing['method']}"])) * units


def test_insufficient_credits_answers_402_and_creates_nothing(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"credits": "0.1500"})
    response = client.post(
        "/api/ai/queue", json={"model": "ideogram-v4", "prompt": "x", "num_generations": 3}
    )
    assert_error(response, 402, "insufficient_credits", "0.1800", "0.1500")
    assert control(base_url, "GET", "/stats")["generations_created"] == 0
    assert _credits(base_url) == "0.1500"

    ids = enqueue(client, num_generations=2)  # 0.12 is held at once
    assert _credits(base_url) == "0.0300"
    for gid in ids:
        wait_for_status(client, gid, {"succeeded"})
    assert _credits(base_url) == "0.0300"
    sync = client.post("/api/ai/images/generate", json={"model": "ideogram-v4", "prompt": "x"})
    assert_error(sync, 402, "insufficient_credits")
    cheap = client.post(
        "/api/ai/images/generate", json={"model": "black-forest-labs-flux-2-klein-4b", "prompt": "x"}
    )
    assert cheap.status_code == 200, cheap.text
    assert _credits(base_url) == "0.0180"
    stats = control(base_url, "GET", "/stats")
    assert stats["generations_created"] == 3 and stats["credits_spent"] == "0.1320"
    statuses = [entry["status"] for entry in control(base_url, "GET", "/requests")["requests"]]
    assert statuses.count(402) == 2


def test_failed_and_cancelled_generations_are_refunded_and_an_unpaid_retry_refused(
    client: httpx.Client, base_url: str
) -> None:
    control(base_url, "POST", "/config", {"credits": "0.0600", "queue_seconds": 5})
    (gid,) = enqueue(client)
    assert _credits(base_url) == "0.0000"
    assert_error(
        client.post("/api/ai/queue", json={"model": "ideogram-v4", "prompt": "x"}),
        402,
        "insufficient_credits",
    )
    client.delete(f"/api/ai/queue/{gid}")
    assert _credits(base_url) == "0.0600"
    assert client.get(f"/api/ai/generations/{gid}").json()["cost"] == "0.0000"

    # Retrying a live row may spend the money it releases.
    (live,) = enqueue(client)
    fresh = client.post(f"/api/ai/queue/{live}/retry")
    assert fresh.status_code == 200, fresh.text
    assert _credits(base_url) == "0.0000"

    control(base_url, "POST", "/config", {"queue_seconds": 0.02})
    client.delete(f"/api/ai/queue/{fresh.json()['generations'][0]['generation_id']}")
    (bad,) = enqueue(client, image_size="huge")
    wait_for_status(client, bad, {"failed"})
    assert _credits(base_url) == "0.0600"

    # A retry the credits cannot pay for is refused and keeps the row (nothing is queued).
    control(base_url, "POST", "/config", {"credits": "0.01"})
    assert_error(client.post(f"/api/ai/queue/{bad}/retry"), 402, "insufficient_credits")
    assert client.get("/api/ai/queue", params={"status": "queued,processing"}).json()["count"] == 0
