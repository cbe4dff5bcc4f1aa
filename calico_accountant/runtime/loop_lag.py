"""How late the event loop runs: the pauses agents, health checks and keepalives see.

Everything a daemon answers goes through its asyncio loop; whatever holds the GIL or the
loop (a garbage collection, a large apply, a render) delays all of it at once.  Averages
and CPU figures hide such pauses, so :class:`LoopLagMonitor` measures them directly: a
task asks to wake every ``interval`` seconds and records how much later than asked it
woke, as ``calico_accountant_event_loop_lag_seconds`` (a histogram: how often the loop
was late by how much) and ``calico_accountant_event_loop_lag_max_seconds`` (the longest
since start).

:func:`favour_event_loop` shortens the interpreter's switch interval: a loop thread that
gives up the GIL for every socket operation waits up to a whole interval (5 ms by default)
to get it back from a worker thread busy decoding or applying, once per operation -- the
"convoy effect" that stretched a 500-node start-up's loop pauses to hundreds of
milliseconds (``bench/load_bench.py``, ``docs/performance.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from prometheus_client import CollectorRegistry, Gauge, Histogram

__all__ = ["EVENT_LOOP_SWITCH_INTERVAL", "LAG_BUCKETS", "LoopLagMonitor", "favour_event_loop"]

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


EVENT_LOOP_SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005)."""


def favour_event_loop(interval: float = EVENT_LOOP_SWITCH_INTERVAL) -> None:
    """Let a waiting thread (the event loop's) take the GIL after ``interval`` seconds."""
    sys.setswitchinterval(interval)


class LoopLagMonitor:
    """Wakes every ``interval`` seconds on the running loop and records its lateness."""

    def __init__(self, registry: CollectorRegistry, interval: float = 0.01) -> None:
        if interval <= 0:
            raise ValueError("the interval must be > 0")
        self.interval = interval
        self.lag = Histogram(
            "calico_accountant_event_loop_lag_seconds",
            "How much later than asked a task on the event loop woke (checked every 10 ms): "
            "the pauses every stream, health check and keepalive of this process saw.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.max_lag = Gauge(
            "calico_accountant_event_loop_lag_max_seconds",
            "The longest event loop pause since the process started.",
            registry=registry,
        )
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def record(self, lag: float) -> None:
        """One wake-up ``lag`` seconds late."""
        lag = max(lag, 0.0)
        self.lag.observe(lag)
        if lag > self.longest:
            self.longest = lag
            self.max_lag.set(lag)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.record(loop.time() - asked)
