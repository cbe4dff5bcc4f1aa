"""How long the cyclic garbage collector holds the process: one measured pause per collection.

A collection holds the GIL from start to end, so every thread waits for it: the event loop's
acks, health checks and keepalives as much as the ingest worker.  The loop lag
(:mod:`calico_accountant.runtime.loop_lag`) shows that the loop paused, not why; a full
collection of a heap that was not frozen (:mod:`calico_accountant.runtime.heap`) is one
cause that took seconds before, and Python's own ``python_gc_*`` figures count collections
but do not time them.  :class:`CollectorPauses` times each one through ``gc.callbacks`` and
exports ``calico_accountant_gc_pause_seconds{generation}`` (a histogram) and
``calico_accountant_gc_pause_max_seconds{generation}`` (the longest since start), beside the
standard ``python_gc_*`` families, so a pause of the loop can be matched with a collection
of the same length or ruled out as one.

A collection over :data:`LOGGED_FROM` seconds is also logged (at most one line per
:data:`LOG_INTERVAL`, with how many were not), so a pause shows in the log beside what else
happened then.  A young collection runs every few hundred allocations: the callback costs
~1.4 us a collection (two clock reads and one histogram observation, ``timeit``), ~0.35 s of
a 5,000-node run's ~243,000 collections (``bench/load_bench.py``).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, GCCollector, Histogram

from calico_accountant.runtime.loop_lag import LAG_BUCKETS

__all__ = ["CollectorPauses"]

log = logging.getLogger(__name__)

PAUSE_BUCKETS = (0.001, 0.0025, *LAG_BUCKETS)
"""Young collections take microseconds to a few milliseconds; full ones up to seconds."""

GENERATIONS = (0, 1, 2)

LOGGED_FROM = 0.1
"""Seconds from which a collection is logged: the pause the scale issue allows at most."""

LOG_INTERVAL = 10.0
"""Seconds between two log lines about long collections."""


class CollectorPauses:
    """Times every collection of the cyclic garbage collector while installed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        GCCollector(registry=registry)  # python_gc_collections_total, ..._objects_collected_total
        pauses = Histogram(
            "calico_accountant_gc_pause_seconds",
            "How long each collection of the cyclic garbage collector held the process "
            "(every thread waits for it, the event loop included), by generation.",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        longest = Gauge(
            "calico_accountant_gc_pause_max_seconds",
            "The longest collection of each generation since the process started.",
            ["generation"],
            registry=registry,
        )
        self._pauses = [pauses.labels(str(generation)) for generation in GENERATIONS]
        self._longest_gauges = [longest.labels(str(generation)) for generation in GENERATIONS]
        self.longest = [0.0 for _ in GENERATIONS]
        """The longest collection of each generation so far, in seconds."""
        self._started = 0.0
        self._installed = False
        self._logged_at = float("-inf")
        self._unlogged = 0

    def install(self) -> None:
        """Start timing collections (idempotent)."""
        if not self._installed:
            gc.callbacks.append(self._on_collection)
            self._installed = True

    def remove(self) -> None:
        """Stop timing collections (idempotent)."""
        if self._installed:
            gc.callbacks.remove(self._on_collection)
            self._installed = False

    def record(self, generation: int, seconds: float, collected: int = 0) -> None:
        """One collection of ``generation`` that took ``seconds`` and freed ``collected``
        objects."""
        self._pauses[generation].observe(seconds)
        if seconds > self.longest[generation]:
            self.longest[generation] = seconds
            self._longest_gauges[generation].set(seconds)
        if seconds >= LOGGED_FROM:
            now = time.monotonic()
            if now - self._logged_at < LOG_INTERVAL:
                self._unlogged += 1
                return
            log.warning(
                "a garbage collection of generation %d held the process for %.0f ms, freeing %d "
                "objects (%d more over %.0f ms since the last such line)",
                generation, seconds * 1000, collected, self._unlogged, LOGGED_FROM * 1000,
            )  # fmt: skip
            self._logged_at = now
            self._unlogged = 0

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # A collection holds the GIL throughout and collections never nest, so one start
        # time serves every thread.
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.record(info["generation"], time.perf_counter() - self._started, info["collected"])
