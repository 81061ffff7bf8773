"""``[oxen] triggerer_gc_thresholds``: the collector setting of a triggerer holding many waits.

With thousands of waiting triggers in one process, Python's default collector thresholds run
a full collection over every live object whenever a quarter more objects survived since the
last one; during a burst of completions that pause delays every event behind it (measured in
``docs/performance.md``: with 20,000 waits the longest pass took 0.7-1.1 s on 2 cores).
Raising the thresholds makes such passes rare. This is a process-wide
setting, so it is opt-in: the first Oxen hub of a triggerer process applies it once, and says
so in the triggerer's log. Empty (the default) leaves the collector alone.
"""

from __future__ import annotations

import gc
import logging

from airflow_provider_oxen.options import env_var, provider_option

log = logging.getLogger(__name__)

OPTION = "triggerer_gc_thresholds"
ENV_VAR = env_var(OPTION)

_applied = False


def parse_thresholds(value: str) -> tuple[int, ...] | None:
    """``"50000, 50, 100"`` → ``(50000, 50, 100)``; empty → None; anything else raises ValueError."""
    parts = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
    if not parts:
        return None
    if len(parts) > 3:
        raise ValueError(f"at most three thresholds (gc.set_threshold), got {len(parts)}")
    numbers = tuple(int(p) for p in parts)
    if any(n < 0 for n in numbers):
        raise ValueError("thresholds must not be negative")
    if numbers[0] == 0:
        raise ValueError("a first threshold of 0 would disable the collector; leave the option empty instead")
    return numbers


def apply_configured_thresholds() -> tuple[int, ...] | None:
    """Apply the configured thresholds once per process; what was applied, or None.

    A bad value is logged and ignored: a collector setting is never worth failing a wait for.
    """
    global _applied
    if _applied:
        return None
    _applied = True
    raw = provider_option(OPTION) or ""
    try:
        thresholds = parse_thresholds(raw)
    except ValueError as exc:
        log.warning("Ignoring [oxen] %s = %r: %s", OPTION, raw, exc)
        return None
    if thresholds is None:
        return None
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    log.info("[oxen] %s: collector thresholds %s -> %s in this triggerer process", OPTION, before, thresholds)
    return thresholds
