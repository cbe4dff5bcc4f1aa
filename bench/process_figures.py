"""What the benchmarks read about processes they start: CPU time and memory from ``/proc``,
the CPUs their children run on, and percentiles of what they measured.

One copy for every benchmark that runs a real aggregator or agent beside its load
(``load_bench``, ``reconnect_floor``, ``agent_resources_bench``): their figures are then read
the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["children_on", "cpu_seconds", "percentile", "rss_mib"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Seconds of CPU process ``pid`` has used, all its threads (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def rss_mib(pid: int) -> tuple[float, float]:
    """Process ``pid``'s resident memory and its peak, MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@contextlib.contextmanager
def children_on(cpus: list[int] | None) -> Iterator[None]:
    """Processes started meanwhile run on ``cpus`` (all: None), every thread of theirs: a
    child inherits this process's affinity, and its threads the affinity of the thread
    starting them."""
    if cpus is None:
        yield
        return
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (the nearest rank; NaN when there are none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
