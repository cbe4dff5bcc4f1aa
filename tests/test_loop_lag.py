"""The event loop lag self-metric: a loop blocked for a while shows as one late wake-up."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from calico_accountant.runtime.loop_lag import LoopLagMonitor


def test_a_blocked_loop_is_recorded_as_its_pause() -> None:
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry, interval=0.01)

    async def scenario() -> None:
        monitor.start()
        await asyncio.sleep(0.1)  # some on-time wake-ups first
        time.sleep(0.3)  # the loop is blocked (as by a long apply or a full collection)
        await asyncio.sleep(0.1)
        await monitor.stop()

    asyncio.run(scenario())
    longest = registry.get_sample_value("calico_accountant_event_loop_lag_max_seconds")
    assert longest is not None and 0.25 <= longest < 5.0
    wakeups = registry.get_sample_value("calico_accountant_event_loop_lag_seconds_count")
    under = registry.get_sample_value("calico_accountant_event_loop_lag_seconds_bucket", {"le": "0.1"})
    assert wakeups is not None and under is not None
    assert wakeups - under >= 1  # the blocked wake-up was later than 100 ms (others only on a busy machine)
    assert wakeups >= 10
