"""``[oxen] triggerer_gc_thresholds``: parsed strictly, applied once per process, opt-in."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import pytest

from airflow_provider_oxen.triggers import gc_tuning


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in a new triggerer process: nothing applied yet; the test's thresholds undone after."""
    before = gc.get_threshold()
    monkeypatch.setattr(gc_tuning, "_applied", False)
    yield
    gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50000,50,100", (50000, 50, 100)),
        (" 50000, 50 ", (50000, 50)),
        ("20000", (20000,)),
        ("", None),
        ("  ", None),
    ],
)
def test_parse(value: str, expected: tuple[int, ...] | None) -> None:
    assert gc_tuning.parse_thresholds(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid literal"),
        ("1,2,3,4", "at most three"),
        ("700,-1", "negative"),
        ("0", "disable the collector"),
    ],
)
def test_parse_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gc_tuning.parse_thresholds(value)


def test_unset_leaves_the_collector_alone(fresh_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gc_tuning.ENV_VAR, raising=False)
    before = gc.get_threshold()
    assert gc_tuning.apply_configured_thresholds() is None
    assert gc.get_threshold() == before


def test_applied_once_and_logged(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(gc_tuning.ENV_VAR, "40000,40,90")
    with caplog.at_level(logging.INFO, logger=gc_tuning.__name__):
        assert gc_tuning.apply_configured_thresholds() == (40000, 40, 90)
    assert gc.get_threshold() == (40000, 40, 90)
    assert "triggerer_gc_thresholds" in caplog.text
    # Once per process: a later change of mind by the operator (or another hub) changes nothing.
    gc.set_threshold(700, 10, 10)
    assert gc_tuning.apply_configured_thresholds() is None
    assert gc.get_threshold() == (700, 10, 10)


def test_a_bad_value_is_logged_and_ignored(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(gc_tuning.ENV_VAR, "fast please")
    before = gc.get_threshold()
    with caplog.at_level(logging.WARNING, logger=gc_tuning.__name__):
        assert gc_tuning.apply_configured_thresholds() is None
    assert gc.get_threshold() == before
    assert "Ignoring [oxen] triggerer_gc_thresholds" in caplog.text


def test_the_hub_applies_it_when_it_starts(fresh_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's real start (the triggerer path) applies the option before anything else."""
    from airflow_provider_oxen.triggers.hub import OxenHub

    monkeypatch.setenv(gc_tuning.ENV_VAR, "30000,30,60")

    class Stop(Exception):
        pass

    async def no_settings(self: object) -> None:
        raise Stop

    monkeypatch.setattr("airflow_provider_oxen.hooks.oxen.OxenAsyncHook.get_settings", no_settings)

    async def scenario() -> None:
        with pytest.raises(Stop):
            await OxenHub("oxen_default", "events").start()

    asyncio.run(scenario())
    assert gc.get_threshold() == (30000, 30, 60)
