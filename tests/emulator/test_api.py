"""The emulated Oxen API: auth, sync generation, the queue, result files, history and models."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from .helpers import API_KEY, AUTH, PLAIN, control, enqueue, open_image, wait_for_status


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": API_KEY},
    ],
    ids=["missing", "empty", "blank-token", "wrong", "no-scheme"],
)
def test_api_requires_the_bearer_key(base_url: str, headers: dict[str, str]) -> None:
    response = PLAIN.post(
        f"{base_url}/api/ai/queue", headers=headers, json={"model": "ideogram-v4", "prompt": "x"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or missing API key"}
    assert control(base_url, "GET", "/stats")["generations_created"] == 0
    assert PLAIN.get(f"{base_url}/api/ai/models", headers=AUTH).status_code == 200


def test_sync_generate_returns_a_real_image_of_the_requested_size(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/images/generate",
        json={
            "model": "ideogram-v4",
            "prompt": "a lighthouse at dusk",
            "image_size": "landscape_16_9",
            "output_format": "png",
            "num_images": 2,
            "seed": 7,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "ideogram-v4" and isinstance(body["created"], int)
    assert len(body["images"]) == 2
    for item in body["images"]:
        download = PLAIN.get(item["url"])  # signed URL: no bearer token needed
        assert download.status_code == 200
        assert download.headers["content-type"] == "image/png"
        assert int(download.headers["content-length"]) == len(download.content)
        image = open_image(download.content)
        assert (image.format, image.size) == ("PNG", (1024, 576))


def test_sync_generate_b64_json_with_custom_dimensions(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/images/generate",
        json={
            "model": "black-forest-labs-flux-2-klein-4b",
            "prompt": "tiny robot",
            "response_format": "b64_json",
            "image_size": {"width": 320, "height": 256},
            "output_format": "webp",
        },
    )
    assert response.status_code == 200, response.text
    image = open_image(base64.b64decode(response.json()["images"][0]["b64_json"]))
    assert (image.format, image.size) == ("WEBP", (320, 256))


@pytest.mark.parametrize(
    ("body", "param", "fragments"),
    [
        (
            {"model": "ideogram-v4", "prompt": "x", "image_size": "huge"},
            "image_size",
            ["'huge'", "square_hd"],
        ),
        ({"model": "ideogram-v4", "prompt": "x", "rendering_speed": "FAST"}, "rendering_speed", ["TURBO"]),
        (
            {
                "model": "black-forest-labs-flux-2-klein-4b",
                "prompt": "x",
                "image_size": {"width": 100, "height": 300},
            },
            "image_size",
            ["image_size.width", "256"],
        ),
        ({"model": "ideogram-v4", "prompt": ""}, "prompt", ["Prompt cannot be empty"]),
        ({"model": "no-such-model", "prompt": "x"}, "model", ["no-such-model"]),
        ({"model": "gpt-oss-120b", "prompt": "x"}, "model", ["gpt-oss-120b"]),
        ({"model": "flux-2-dev", "prompt": "x", "num_images": 9}, "num_images", ["num_images"]),
    ],
    ids=["enum", "enum-speed", "dimensions", "empty-prompt", "unknown-model", "text-model", "too-many"],
)
def test_sync_generate_rejects_bad_requests_at_once(
    client: httpx.Client, body: dict[str, Any], param: str, fragments: list[str]
) -> None:
    response = client.post("/api/ai/images/generate", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["param"] == param
    for fragment in fragments:
        assert fragment in error["error"]


def test_queue_row_goes_queued_processing_succeeded(client: httpx.Client) -> None:
    response = client.post(
        "/api/ai/queue",
        json={
            "model": "ideogram-v4",
            "prompt": "a castle",
            "image_size": "portrait_4_3",
            "num_generations": 2,
            "target_namespace": "team-a",
        },
    )
    assert response.status_code == 200
    rows = response.json()["generations"]
    assert [row["status"] for row in rows] == ["queued", "queued"]
    ids = [row["generation_id"] for row in rows]
    listed = client.get("/api/ai/queue").json()["generations"]
    assert {row["generation_id"] for row in listed} == set(ids)

    done = wait_for_status(client, ids[0], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert done["model"] == "ideogram-v4" and done["prompt"] == "a castle"
    assert done["parameters"] == {"prompt": "a castle", "image_size": "portrait_4_3"}
    assert done["target_namespace"] == "team-a" and done["media_type"] == "image"
    assert done["cost"] == pytest.approx(0.06)
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["created_at"].endswith("Z") and done["retried_from_id"] is None
    image = open_image(PLAIN.get(done["result_url"]).content)
    assert (image.format, image.size) == ("JPEG", (768, 1024))

    wait_for_status(client, ids[1], {"succeeded"})
    assert client.get("/api/ai/queue").json()["generations"] == []
    finished = client.get("/api/ai/queue", params={"status": "succeeded,failed", "namespace": "team-a"})
    assert {row["generation_id"] for row in finished.json()["generations"]} == set(ids)
    assert client.get("/api/ai/queue", params={"namespace": "other", "status": "succeeded"}).json() == {
        "generations": []
    }


def test_result_urls_expire_and_are_resigned_on_read(client: httpx.Client, base_url: str) -> None:
    (gid,) = enqueue(client)
    wait_for_status(client, gid, {"succeeded"})
    control(base_url, "POST", "/config", {"url_ttl_seconds": -10})
    expired = client.get(f"/api/ai/queue/{gid}").json()["result_url"]
    response = PLAIN.get(expired)
    assert response.status_code == 403 and response.json() == {"error": "URL expired"}

    control(base_url, "POST", "/config", {"url_ttl_seconds": 3600})
    fresh = client.get(f"/api/ai/queue/{gid}").json()["result_url"]
    assert fresh != expired
    assert PLAIN.get(fresh).status_code == 200
    assert PLAIN.get(fresh.replace("sig=", "sig=0")).status_code == 403


def test_invalid_parameters_are_accepted_then_fail(client: httpx.Client) -> None:
    bad_size, empty_prompt = enqueue(client, image_size="huge")[0], enqueue(client, prompt="")[0]
    failed = wait_for_status(client, bad_size, {"failed", "succeeded"})
    assert failed["status"] == "failed"
    assert "image_size" in failed["error_message"] and "square_hd" in failed["error_message"]
    assert failed["result_url"] is None
    assert wait_for_status(client, empty_prompt, {"failed"})["error_message"] == "Prompt cannot be empty"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"num_generations": 0}, "num_generations"),
        ({"num_generations": 5}, "num_generations"),
        ({"num_generations": "2"}, "num_generations"),
        ({"model": "gpt-oss-120b"}, "gpt-oss-120b"),
        ({"model": "missing-model"}, "missing-model"),
    ],
)
def test_enqueue_validates_only_model_and_count(
    client: httpx.Client, base_url: str, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/api/ai/queue", json={"model": "ideogram-v4", "prompt": "x", **body})
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert control(base_url, "GET", "/stats")["generations_created"] == 0


def test_cancel_and_retry(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 5})
    (gid,) = enqueue(client)
    response = client.delete(f"/api/ai/queue/{gid}")
    assert response.json() == {"generation_id": gid, "status": "cancelled"}
    # Cancelling a finished row answers 200 with its status unchanged.
    assert client.delete(f"/api/ai/queue/{gid}").json()["status"] == "cancelled"
    assert client.delete("/api/ai/queue/00000000-0000-0000-0000-000000000000").status_code == 404

    control(base_url, "POST", "/config", {"queue_seconds": 0.02})
    retried = client.post(f"/api/ai/queue/{gid}/retry").json()["generations"][0]
    assert retried["generation_id"] != gid
    row = wait_for_status(client, retried["generation_id"], {"succeeded"})
    assert row["retried_from_id"] == gid and row["prompt"] == "a red fox in the snow"
    assert client.get(f"/api/ai/queue/{gid}").json()["status"] == "cancelled"
    response = client.post(f"/api/ai/queue/{row['generation_id']}/retry")
    assert response.status_code == 400 and "succeeded" in response.json()["error"]


def test_retry_of_a_live_row_cancels_it(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"queue_seconds": 5})
    (gid,) = enqueue(client)
    fresh = client.post(f"/api/ai/queue/{gid}/retry").json()["generations"][0]
    assert client.get(f"/api/ai/queue/{gid}").json()["status"] == "cancelled"
    assert client.get(f"/api/ai/queue/{fresh['generation_id']}").json()["retried_from_id"] == gid


def test_unknown_generation_is_404(client: httpx.Client) -> None:
    for path in ("/api/ai/queue/nope", "/api/ai/generations/nope"):
        response = client.get(path)
        assert response.status_code == 404 and response.json() == {"error": "Generation not found"}


def test_history_has_costs(client: httpx.Client) -> None:
    ids = enqueue(client, num_generations=2)
    for gid in ids:
        wait_for_status(client, gid, {"succeeded"})
    client.post("/api/ai/images/generate", json={"model": "flux-2-dev", "prompt": "sync one"})
    history = client.get("/api/ai/generations").json()
    assert history["total"] == 3
    assert history["total_cost"] == pytest.approx(0.06 * 2 + 0.025)
    assert client.get(f"/api/ai/generations/{ids[0]}").json()["cost"] == pytest.approx(0.06)
    only_flux = client.get("/api/ai/generations", params={"model": "flux-2-dev"}).json()
    assert only_flux["total"] == 1 and only_flux["generations"][0]["status"] == "succeeded"


def test_models_catalogue(client: httpx.Client) -> None:
    models = client.get("/api/ai/models").json()
    assert models["object"] == "list"
    by_id = {model["id"]: model for model in models["data"]}
    assert {"ideogram-v4", "black-forest-labs-flux-2-klein-4b", "flux-2-dev", "gpt-oss-120b"} <= set(by_id)
    ideogram = by_id["ideogram-v4"]
    assert ideogram["endpoint"] == "/images/generate" and ideogram["capabilities"]["output"] == ["image"]
    assert ideogram["request_schema"]["properties"]["image_size"]["enum"][0] == "square_hd"
    klein = by_id["black-forest-labs-flux-2-klein-4b"]
    assert (
        "request_schema" not in klein and "anyOf" in klein["json_request_schema"]["properties"]["image_size"]
    )
    assert by_id["flux-2-dev"]["request_schema"] is None
    assert by_id["gpt-oss-120b"]["capabilities"]["output"] == ["text"]

    search = client.get("/api/ai/models/search", params={"search": "flux"}).json()["data"]
    assert {model["id"] for model in search} == {"black-forest-labs-flux-2-klein-4b", "flux-2-dev"}
    developer = client.get("/api/ai/models", params={"developer_name": "Ideogram"}).json()["data"]
    assert [model["id"] for model in developer] == ["ideogram-v4"]
    assert client.get("/api/ai/models/ideogram-v4").json()["id"] == "ideogram-v4"
    assert client.get("/api/ai/models/nope").status_code == 404


def test_request_log_and_stats_never_hold_the_key(client: httpx.Client, base_url: str) -> None:
    enqueue(client)
    client.get("/api/ai/queue")
    PLAIN.get(f"{base_url}/api/ai/queue", headers={"Authorization": "Bearer wrong-key"})
    text = PLAIN.get(f"{base_url}/_emulator/requests").text
    assert API_KEY not in text and "wrong-key" not in text

    posts = control(base_url, "GET", "/requests?method=POST&path=/api/ai/queue")["requests"]
    assert len(posts) == 1
    assert posts[0]["json"] == {"model": "ideogram-v4", "prompt": "a red fox in the snow"}
    assert posts[0]["authorized"] is True and posts[0]["status"] == 200
    gets = control(base_url, "GET", "/requests?method=GET")["requests"]
    assert [entry["authorized"] for entry in gets] == [True, False]

    stats = control(base_url, "GET", "/stats")
    assert stats["POST /api/ai/queue"] == 1 and stats["GET /api/ai/queue"] == 2
    assert stats["generations_created"] == 1
    assert API_KEY not in str(control(base_url, "GET", "/config"))


def test_latency_setting_slows_api_calls(client: httpx.Client, base_url: str) -> None:
    control(base_url, "POST", "/config", {"latency_ms": 150})
    started = time.monotonic()
    client.get("/api/ai/models")
    assert time.monotonic() - started >= 0.15
    response = PLAIN.post(f"{base_url}/_emulator/config", json={"latency_ms": "fast"})
    assert response.status_code == 400
