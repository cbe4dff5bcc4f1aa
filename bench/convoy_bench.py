"""The GIL's convoy effect on an event loop, at two switch intervals.

    .venv/bin/python -m bench.convoy_bench [--seconds 5]

A worker thread runs pure Python (as the aggregator's decode and apply threads do) while
the event loop does socket I/O (as it does for every stream) and a task asks to wake every
10 ms.  Each socket operation releases the GIL and then waits up to a switch interval to
get it back from the worker, so the wake-ups are late by many intervals.  Printed: the
wake-ups' lateness at Python's default interval (5 ms) and at the aggregator's
(:data:`calico_accountant.runtime.loop_lag.EVENT_LOOP_SWITCH_INTERVAL`).  A measurement,
not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time

from calico_accountant.runtime.loop_lag import EVENT_LOOP_SWITCH_INTERVAL


def _burn(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for value in range(10_000):
            total += value * value


async def _measure(interval: float, seconds: float) -> list[float]:
    sys.setswitchinterval(interval)
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    stop = threading.Event()
    worker = threading.Thread(target=_burn, args=(stop,))
    worker.start()
    loop = asyncio.get_running_loop()

    async def traffic() -> None:
        while not stop.is_set():
            for _ in range(20):
                await loop.sock_sendall(left, b"x" * 100)
                await loop.sock_recv(right, 100)
            await asyncio.sleep(0)

    task = asyncio.create_task(traffic())
    lags: list[float] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            asked = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lags.append(loop.time() - asked)
    finally:
        stop.set()
        await task
        worker.join()
        left.close()
        right.close()
    return sorted(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    default = sys.getswitchinterval()
    try:
        for interval in (0.005, EVENT_LOOP_SWITCH_INTERVAL):
            lags = asyncio.run(_measure(interval, args.seconds))
            p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99)]
            print(
                f"switch interval {interval * 1000:.0f} ms: wake-ups {len(lags)}, late p50 "
                f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
            )
    finally:
        sys.setswitchinterval(default)


if __name__ == "__main__":
    main()
