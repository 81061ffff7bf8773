"""Helpers shared by the benchmarks: statistics over repetitions, load average, markdown."""

from __future__ import annotations

import math
import os
import re
import resource
import statistics
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAN = float("nan")


def load_average() -> str:
    """``uptime``'s three figures (1, 5, 15 minutes) and the core count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def rusage_self() -> tuple[float, float]:
    """(CPU seconds user+system, peak RSS in MB) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def process_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default) so far; 0.0 if it is gone."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over its cores."""
    import psutil

    times = psutil.cpu_times()
    # Guest time is already counted in user time.
    total = sum(
        getattr(times, name, 0.0)
        for name in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    )
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def current_rss_mb() -> float:
    """This process's resident set now (not the peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of every value; NaN when there are none."""
    if not values:
        return NAN
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def median(values: Iterable[Any]) -> float:
    numbers = [v for v in values if is_number(v)]
    return statistics.median(numbers) if numbers else NAN


def spread(values: Iterable[Any], fmt: Callable[[float], str], *, show_range: bool = True) -> str:
    """``median (min-max)`` over repetitions; just the median when they agree or only one ran."""
    numbers = [v for v in values if is_number(v)]
    if not numbers:
        return "-"
    mid = fmt(statistics.median(numbers))
    low, high = fmt(min(numbers)), fmt(max(numbers))
    if not show_range or len(numbers) == 1 or low == high:
        return mid
    return f"{mid} ({low}-{high})"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_1(value: float) -> str:
    return f"{value:,.1f}"


def fmt_2(value: float) -> str:
    return f"{value:,.2f}"


def fmt_3(value: float) -> str:
    return f"{value:,.3f}"


def ratio(ours: float, theirs: float) -> str:
    if not is_number(ours) or not is_number(theirs) or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table; ``align`` has one character per column: ``l`` or ``r``."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


BEGIN = "<!-- BEGIN GENERATED: {name} (benchmarks/run_all.py --write-docs; do not edit by hand) -->"
END = "<!-- END GENERATED: {name} -->"


def replace_generated(path: Path, name: str, body: str) -> None:
    """Replace the block between the ``name`` markers in ``path`` with ``body`` (markers kept)."""
    text = path.read_text()
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path} has no generated block {name!r} (markers {begin!r} … {end!r})")
    text = pattern.sub(lambda _: f"{begin}\n{body.strip()}\n{end}", text)
    path.write_text(text)
