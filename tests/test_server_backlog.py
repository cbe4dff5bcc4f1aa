"""A reconnect storm: more new calls at once than gRPC's defaults let wait for the server.

After an aggregator restart every agent opens its stream at once.  A new call waits in
gRPC until the asyncio server picks it up (one at a time, on the event loop); with gRPC's
defaults it cancels waiting calls, at random past 1,000 and all past 3,000, and with 5,000
simulated agents a third of the streams ended CANCELLED within seconds
(``bench/load_bench.py``).  Here a real gRPC server with the aggregator's options
(:func:`aggregator.server.server_options`) has its event loop held while 3,400 calls arrive
over loopback; every call must then succeed.  The same storm against gRPC's defaults is
the control: it loses calls, so the test can fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence

import grpc
import grpc.aio
import pytest

from aggregator.server import MAX_STREAMS_PER_CONNECTION, AggregatorConfig, server_options

pytestmark = pytest.mark.slow

METHOD = "/storm.Storm/Call"
CALLS = 3_400
HOLD_SECONDS = 6.0


def _handler() -> grpc.GenericRpcHandler[bytes, bytes]:
    async def answer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    return grpc.method_handlers_generic_handler(
        "storm.Storm", {"Call": grpc.unary_unary_rpc_method_handler(answer)}
    )


def _serve(
    options: Sequence[tuple[str, int]], ready: threading.Event, port: list[int], stop: threading.Event
) -> None:
    """A server whose event loop is held (a blocking sleep on it) for ``HOLD_SECONDS`` once
    it serves: the calls of the storm wait in gRPC meanwhile, as behind a busy loop."""

    async def main() -> None:
        server = grpc.aio.server(options=list(options))
        server.add_generic_rpc_handlers((_handler(),))
        port.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        ready.set()
        await asyncio.sleep(0.5)  # the client's calls start arriving
        time.sleep(HOLD_SECONDS)  # the loop held: nothing is picked up
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.stop(None)

    asyncio.run(main())


async def _storm(port: int) -> Counter[str]:
    """``CALLS`` unary calls at once over enough connections to carry them all."""
    per_channel = MAX_STREAMS_PER_CONNECTION - 10
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(-(-CALLS // per_channel))
    ]
    try:
        calls = [
            channels[i // per_channel].unary_unary(METHOD, None, None)(b"x", timeout=120, wait_for_ready=True)
            for i in range(CALLS)
        ]
        outcomes: Counter[str] = Counter()
        for result in await asyncio.gather(*calls, return_exceptions=True):
            outcomes[_outcome(result)] += 1
        return outcomes
    finally:
        for channel in channels:
            await channel.close(None)


def _outcome(result: object) -> str:
    if result == b"x":
        return "OK"
    if isinstance(result, grpc.aio.AioRpcError):
        return result.code().name
    return repr(result)


def _run_storm(options: Sequence[tuple[str, int]]) -> Counter[str]:
    ready, stop = threading.Event(), threading.Event()
    port: list[int] = []
    server = threading.Thread(target=_serve, args=(options, ready, port, stop), daemon=True)
    server.start()
    try:
        assert ready.wait(10)
        return asyncio.run(_storm(port[0]))
    finally:
        stop.set()
        server.join(30)


def test_every_call_of_a_storm_waits_for_its_turn() -> None:
    outcomes = _run_storm(server_options(AggregatorConfig()))
    print(f"\nstorm of {CALLS} calls, loop held {HOLD_SECONDS:g} s, aggregator's options: {dict(outcomes)}")
    assert outcomes == Counter({"OK": CALLS})


def test_grpc_defaults_lose_calls_of_the_same_storm() -> None:
    """The control: without the aggregator's pending-call options, calls are cancelled."""
    defaults = [
        (name, value)
        for name, value in server_options(AggregatorConfig())
        if not name.startswith(("grpc.server.max_pending", "grpc.server_max_unrequested"))
    ]
    outcomes = _run_storm(defaults)
    print(f"\nstorm of {CALLS} calls, loop held {HOLD_SECONDS:g} s, gRPC's defaults: {dict(outcomes)}")
    assert outcomes["OK"] < CALLS, outcomes
