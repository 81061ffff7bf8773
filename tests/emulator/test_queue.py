"""The queue: documented row shape, listing and filters, late parameter failures, cancel and retry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import PLAIN, ROW_KEYS, assert_error, control, enqueue, open_image, wait_for_status

T2V = "kling-video-v2-6-pro-text-to-video"


def test_queue_row_goes_queued_processing_succeeded(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/queue",
        json={
            "model": "ideogram-v4",
            "prompt": "a castle",
            "image_size": "portrait_4_3",
            "seed": 11,
            "num_generations": 2,
            "target_namespace": "team-a",
        },
    )
    assert response.status_code == 200
    rows = response.json()["generations"]
    assert rows == [{"generation_id": row["generation_id"], "status": "queued"} for row in rows]
    ids = [row["generation_id"] for row in rows]
    listed = client.get("/api/ai/queue").json()
    assert listed["count"] == 2 and {row["generation_id"] for row in listed["generations"]} == set(ids)
    assert all(set(row) == ROW_KEYS for row in listed["generations"])

    done = wait_for_status(client, ids[0], {"succeeded", "failed"})
    # Exactly the documented names: model_name and enqueued_at, no cost, no parameters.
    assert set(done) == ROW_KEYS
    assert done["status"] == "succeeded" and done["error_message"] is None
    assert done["model_name"] == "ideogram-v4" and done["prompt"] == "a castle"
    assert done["media_type"] == "image"
    assert done["enqueued_at"] <= done["started_at"] <= done["completed_at"]
    assert done["enqueued_at"].endswith("Z")
    image = open_image(PLAIN.get(done["result_url"]).content)
    assert (image.format, image.size) == ("JPEG", (768, 1024))

    wait_for_status(client, ids[1], {"succeeded"})
    assert client.get("/api/ai/queue").json() == {"count": 0, "generations": []}


def test_listing_filters(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 5})
    ideogram = set(enqueue(client, num_generations=2))
    (flux,) = enqueue(client, model="flux-2-dev", target_namespace="org")

    def listed(**params: str) -> set[str]:
        body = client.get("/api/ai/queue", params=params).json()
        assert body["count"] == len(body["generations"])
        return {row["generation_id"] for row in body["generations"]}

    assert listed() == ideogram | {flux}
    assert listed(model="ideogram-v4") == ideogram
    assert listed(namespace="org") == {flux}
    assert listed(namespace="emulator-user", model="flux-2-dev") == set()
    assert listed(media_type="image") == ideogram | {flux}
    assert listed(media_type="video") == set()
    assert listed(status="queued") == ideogram | {flux}
    assert listed(status="succeeded") == set()
    assert_error(client.get("/api/ai/queue", params={"status": "done"}), 400, "invalid_params", "status")


def test_row_parameters_setting_adds_the_request_parameters(client: httpx.Client, base_url: str) -> None:
    (gid,) = enqueue(client, image_size="square", seed=5, target_namespace="team-b")
    assert set(client.get(f"/api/ai/queue/{gid}").json()) == ROW_KEYS
    control(base_url, "POST", "/config", {"row_parameters": True})
    row = client.get(f"/api/ai/queue/{gid}").json()
    assert set(row) == ROW_KEYS | {"image_size", "seed"}
    assert row["image_size"] == "square" and row["seed"] == 5
    # A parameter named like a documented field never replaces it.
    (odd,) = enqueue(client, model="openai/gpt-image-1.5:latest", status="weird", size="1024x1024")
    odd_row = client.get(f"/api/ai/queue/{odd}").json()
    assert odd_row["status"] in ("queued", "processing", "succeeded") and odd_row["size"] == "1024x1024"
    listed = client.get("/api/ai/queue", params={"status": "queued,processing,succeeded"}).json()
    assert all("prompt" in row and row["model_name"] for row in listed["generations"])


# Enqueue validates only the model and the count (400, nothing created). Model parameters are
# accepted and fail the generation later: a few of the checks the sync endpoint makes at once
# (test_api's table has them all), and the field only the sync endpoint takes.
@pytest.mark.parametrize(
    ("body", "refused", "fragments"),
    [
        ({"num_generations": 0}, True, ["num_generations"]),
        ({"num_generations": 5}, True, ["num_generations"]),
        ({"num_generations": "2"}, True, ["num_generations"]),
        ({"model": "gpt-oss-120b"}, True, ["gpt-oss-120b"]),
        ({"model": "missing-model"}, True, ["missing-model"]),
        ({"image_size": "huge"}, False, ["image_size", "'huge'", "square_hd"]),
        ({"model": "nano-banana-2", "resolution": "8K"}, False, ["resolution", "'8K'"]),
        ({"response_format": "url"}, False, ["response_format"]),
        ({"prompt": ""}, False, ["Prompt cannot be empty"]),
        ({"model": T2V, "multi_prompt": ["b"]}, False, ["Invalid parameter multi_prompt:"]),
        ({"model": T2V, "duration": 30}, False, ["Invalid parameter duration:"]),
        ({"model": T2V, "prompt": ""}, False, ["Prompt cannot be empty"]),
    ],
)
def test_enqueue_validates_only_model_and_count_and_bad_parameters_fail_later(
    client: httpx.Client, base_url: str, body: dict[str, Any], refused: bool, fragments: list[str]
) -> None:
    response = client.post("/api/ai/queue", json={"model": "ideogram-v4", "prompt": "x", **body})
    if refused:
        assert_error(response, 400, "invalid_params", *fragments)
        assert control(base_url, "GET", "/stats")["generations_created"] == 0
        return
    assert response.status_code == 200, response.text
    failed = wait_for_status(
        client, response.json()["generations"][0]["generation_id"], {"failed", "succeeded"}
    )
    assert failed["status"] == "failed" and failed["result_url"] is None
    for fragment in fragments:
        assert fragment in failed["error_message"]


def test_cancel_answers_success_then_names_the_terminal_state(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 5})
    (gid,) = enqueue(client)
    response = client.delete(f"/api/ai/queue/{gid}")
    assert response.status_code == 200
    assert response.json() == {"status": "success", "generation_id": gid}
    assert client.get(f"/api/ai/queue/{gid}").json()["status"] == "cancelled"  # the row is kept
    assert_error(client.delete(f"/api/ai/queue/{gid}"), 400, "invalid_params", "already cancelled")
    missing = client.delete("/api/ai/queue/00000000-0000-0000-0000-000000000000")
    assert_error(missing, 404, "resource_not_found", "Generation not found")

    control(base_url, "POST", "/config", {"queue_seconds": 0.02})
    (done,) = enqueue(client)
    wait_for_status(client, done, {"succeeded"})
    detail = assert_error(client.delete(f"/api/ai/queue/{done}"), 400, "invalid_params")
    assert detail == "Generation is already succeeded"
    (bad,) = enqueue(client, image_size="huge")
    wait_for_status(client, bad, {"failed"})
    assert_error(client.delete(f"/api/ai/queue/{bad}"), 400, "invalid_params", "already failed")


def test_retry_links_a_new_row_cancels_a_live_one_and_refuses_succeeded(
    client: httpx.Client, base_url: str
) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 5})
    (gid,) = enqueue(client, seed=3)
    client.delete(f"/api/ai/queue/{gid}")
    (live,) = enqueue(client)
    fresh = client.post(f"/api/ai/queue/{live}/retry").json()["generations"][0]
    assert client.get(f"/api/ai/queue/{live}").json()["status"] == "cancelled"
    assert client.get(f"/api/ai/queue/{fresh['generation_id']}").json()["retried_from_id"] == live

    control(base_url, "POST", "/config", {"queue_seconds": 0.02})
    retried = client.post(f"/api/ai/queue/{gid}/retry").json()["generations"][0]
    assert retried["generation_id"] != gid and retried["retried_from_id"] == gid
    row = wait_for_status(client, retried["generation_id"], {"succeeded"})
    assert set(row) == ROW_KEYS | {"retried_from_id"}
    assert row["retried_from_id"] == gid and row["prompt"] == "a red fox in the snow"
    assert client.get(f"/api/ai/queue/{gid}").json()["status"] == "cancelled"
    response = client.post(f"/api/ai/queue/{row['generation_id']}/retry")
    assert_error(response, 400, "invalid_params", "succeeded")
    assert_error(client.post("/api/ai/queue/nope/retry"), 404, "resource_not_found")

    # A failed row fails again: the retry keeps its parameters.
    (bad,) = enqueue(client, image_size="huge")
    wait_for_status(client, bad, {"failed"})
    again = client.post(f"/api/ai/queue/{bad}/retry").json()["generations"][0]["generation_id"]
    assert "image_size" in wait_for_status(client, again, {"failed"})["error_message"]


def test_unknown_generations_and_sync_generations_are_not_queue_rows(client: httpx.Client) -> None:
    for path in ("/api/ai/queue/nope", "/api/ai/generations/nope"):
        assert_error(client.get(path), 404, "resource_not_found", "Generation not found")
    response = client.post("/api/ai/images/generate", json={"model": "flux-2-dev", "prompt": "sync"})
    gid = response.json()["images"][0]["url"].split("/files/")[1].split("/")[0]
    assert client.get(f"/api/ai/queue/{gid}").status_code == 404
    assert client.get(f"/api/ai/generations/{gid}").json()["source"] == "sync"
