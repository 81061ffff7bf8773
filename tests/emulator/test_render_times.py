"""Render times: fixed, drawn from a seeded uniform range (``render_seconds_max``, ``render_seed``),
and the video render time."""

from __future__ import annotations

import time

import httpx
import pytest

from airflow_provider_oxen.emulator.__main__ import parse_args
from airflow_provider_oxen.emulator.config import EmulatorConfig
from airflow_provider_oxen.emulator.events import EventBroker
from airflow_provider_oxen.emulator.faults import FaultBook
from airflow_provider_oxen.emulator.state import GenerationStore

from .helpers import control, enqueue, render_time, wait_for_status

T2V = "kling-video-v2-6-pro-text-to-video"


def _store(**settings: object) -> GenerationStore:
    return GenerationStore(EmulatorConfig(**settings), FaultBook(), EventBroker())  # type: ignore[arg-type]


def test_render_time_is_fixed_or_drawn_uniformly_from_a_seeded_range() -> None:
    fixed = _store(render_seconds=3.0)
    assert {fixed.render_duration() for _ in range(20)} == {3.0}
    # A maximum below the minimum is no range: render_seconds it is.
    fixed.config.render_seconds_max = 1.0
    assert fixed.render_duration() == 3.0

    first = _store(render_seconds=10.0, render_seconds_max=20.0, render_seed=42)
    draws = [first.render_duration() for _ in range(2000)]
    assert all(10.0 <= d <= 20.0 for d in draws)
    # Spread over the whole range, not clustered (uniform: each quarter holds about 500).
    quarters = [sum(1 for d in draws if 10 + 2.5 * q <= d < 12.5 + 2.5 * q) for q in range(4)]
    assert all(400 < q < 600 for q in quarters), quarters

    again = _store(render_seconds=10.0, render_seconds_max=20.0, render_seed=42)
    assert [again.render_duration() for _ in range(2000)] == draws
    other = _store(render_seconds=10.0, render_seconds_max=20.0, render_seed=43)
    other_draws = [other.render_duration() for _ in range(10)]
    assert other_draws != draws[:10]

    # A reset restarts the sequence; so does changing the seed at run time.
    first.reset()
    assert [first.render_duration() for _ in range(5)] == draws[:5]
    first.config.render_seed = 43
    assert [first.render_duration() for _ in range(10)] == other_draws


@pytest.mark.asyncio
async def test_a_render_started_late_still_ends_on_schedule() -> None:
    store = _store(render_seconds=0.5, queue_seconds=0.1)
    (row,) = store.enqueue(store.catalogue["flux-2-dev"], {"prompt": "x"}, "ns")
    time.sleep(0.3)  # noqa: ASYNC251 (the point: the loop is held past the start, as by a 20,000-row listing)
    assert row.task is not None
    await row.task
    assert row.started_at is not None and row.completed_at is not None
    # Queue time plus render time after the enqueue (0.6 s), not the hold plus both (0.9 s): a late
    # start must not bunch every render due meanwhile into one burst. The row says when it was due.
    assert 0.55 <= row.completed_at - row.enqueued_at < 0.75
    assert row.started_at - row.enqueued_at == pytest.approx(0.1)


def test_queue_rows_render_for_different_times(base_url: str, client: httpx.Client) -> None:
    control(
        base_url,
        "POST",
        "/config",
        {"render_seconds": 0.05, "render_seconds_max": 0.6, "render_seed": 3, "queue_seconds": 0.0},
    )
    ids = [i for _ in range(3) for i in enqueue(client, num_generations=4)]
    rows = [wait_for_status(client, i, {"succeeded"}, timeout=10) for i in ids]
    renders = [render_time(row) for row in rows]
    # Timer and millisecond rounding slack on both ends.
    assert all(0.04 <= r <= 0.7 for r in renders), renders
    assert max(renders) - min(renders) > 0.15, renders


def test_video_render_time_setting(client: httpx.Client, base_url: str) -> None:
    # Default: four times the image render time (0.05 s in these tests).
    (default,) = enqueue(client, model=T2V, prompt="x", duration=3)
    rows = [wait_for_status(client, default, {"succeeded"}, timeout=10)]
    control(base_url, "POST", "/config", {"video_render_seconds": 0.6, "queue_seconds": 0.0})
    (slow,) = enqueue(client, model=T2V, prompt="x", duration=3)
    rows.append(wait_for_status(client, slow, {"succeeded"}, timeout=10))
    renders = [render_time(row) for row in rows]
    assert 0.18 <= renders[0] < 0.55 and renders[1] >= 0.59, renders

    assert parse_args(["--port", "0", "--video-render-seconds", "1.5"]).video_render_seconds == 1.5
