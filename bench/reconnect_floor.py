"""The reconnect target against a floor: how long any Python server on one core takes 5,000
agents' first full snapshots, over the real transport, doing the least work a counter needs.

    .venv/bin/python -m bench.reconnect_floor --nodes 5000 [--work floor] [--workers 4]

The scale issue asks for 5,000 agents reconnecting at once (an aggregator restart) to be
applied in under 2 minutes on one aggregator core: ~23 M counters of
:mod:`bench.cluster_shape`, ~5.2 us of the core a counter, transport included.  The
aggregator takes 19-27 minutes (``load_bench --nodes 5000 --pin``).  This measures what the
transport and the least per-counter work cost on their own, at that size, with the load of
``load_bench``: a *floor server*, in a process of its own on one CPU, serves the real ingest
method (``grpc.aio``, the real proto, each message taken as bytes as the aggregator takes it,
the same server options), parses every message (upb, ``NodeSnapshot.FromString``) on its
event loop, does ``--work`` and acks at once -- no queue, no interim acks, no validation, no
ledger, no hits, no routes kept for later, no checkpoint:

* ``parse``: nothing more;
* ``read``: every field of every counter read into a tuple
  (:func:`bench.first_snapshot_floor.read_counters`);
* ``floor``: read, kept by key with its values, and its three series (app, node, cluster)
  found or made (:func:`~bench.first_snapshot_floor.store`,
  :class:`~bench.first_snapshot_floor.FloorRouting`: names in plain dicts made before the
  clock starts).  What ``first_snapshot_floor`` calls the floor, at 5,000 nodes' heap.

The cyclic garbage collector is off in the floor server unless ``--collector`` (the floor
makes no cycles; the aggregator freezes after full snapshots instead).  ``--workers`` load
processes on the other CPU build every node's first snapshot as ``load_bench`` does (key ids
defined), then all nodes connect, one connection each, and send at once.  Reported: the
wall time from the first send to the last ack, the server's CPU over it (and a counter's
share), the waits for a stream's ack (p50, max; over 30 s and 120 s: an agent's timeouts),
the server's RSS.  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from aggregator.ingest.servicer import INGEST_SERVICE
from aggregator.server import AggregatorConfig, server_options
from bench.cluster_shape import Shape, node_records
from bench.first_snapshot_floor import FloorRouting, read_counters, store
from bench.load_bench import snapshot_chunks
from bench.process_figures import children_on, cpu_seconds, percentile, rss_mib
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.wire.keyed import KeyIds
from tests.support.ports import free_port

_METHOD = f"/{INGEST_SERVICE}/StreamSnapshots"


class Work(enum.StrEnum):
    """What the floor server does with each message (see the module's docstring)."""

    PARSE = "parse"
    READ = "read"
    FLOOR = "floor"


class _FloorServer:
    """The floor server's handler and what it keeps (see the module's docstring)."""

    def __init__(self, shape: Shape, work: Work) -> None:
        self.work = work
        self.routing = FloorRouting(shape) if work is Work.FLOOR else None
        self.kept: dict[str, object] = {}
        """node -> what was kept of its snapshot (so the heap grows as an aggregator's does)."""
        self.counters = 0

    def take(self, raw: bytes) -> spb.IngestAck:
        message = spb.NodeSnapshot.FromString(raw)
        self.counters += len(message.counters)
        if self.work is Work.PARSE:
            self.kept[message.node] = message
        elif self.work is Work.READ:
            self.kept[message.node] = read_counters(message)
        else:
            assert self.routing is not None
            fields = read_counters(message)
            self.kept[message.node] = (store(fields), self.routing.route(message.node, fields))
        return spb.IngestAck(sequence=message.sequence)

    async def stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[spb.IngestAck]:
        async for raw in requests:
            yield self.take(raw)


async def _serve(args: argparse.Namespace) -> None:
    server_state = _FloorServer(Shape(args.nodes), args.work)
    gc.collect()
    gc.freeze()  # the names made before the clock starts
    if not args.collector:
        gc.disable()
    config = AggregatorConfig(grpc_port=args.port)
    server = grpc.aio.server(options=server_options(config))
    handler = grpc.stream_stream_rpc_method_handler(
        server_state.stream, request_deserializer=None, response_serializer=spb.IngestAck.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(INGEST_SERVICE, {"StreamSnapshots": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def _load(args: argparse.Namespace) -> None:
    """One load process: build this worker's nodes' first snapshots, then (once the main
    process says go) send them all at once, a connection each, and note each ack's wait."""
    shape = Shape(args.nodes)
    mine = list(range(args.worker, args.nodes, args.workers))
    built: list[list[bytes]] = []
    for node in mine:
        records = node_records(shape, node, 0)
        built.append(snapshot_chunks(node, 1, True, records, key_ids=KeyIds().for_full(records)))
    ready, go = Path(args.dir) / f"built-{args.worker}", Path(args.dir) / "go"
    ready.touch()
    while not go.exists():
        await asyncio.sleep(0.05)
    options = [
        ("grpc.max_send_message_length", 4 << 20),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.use_local_subchannel_pool", 1),  # a connection a node, as load_bench's nodes
    ]
    address = f"127.0.0.1:{args.port}"
    waits: list[float] = []
    failures = 0

    async def one(chunks: list[bytes]) -> None:
        nonlocal failures
        channel = grpc.aio.insecure_channel(address, options=options)
        method = channel.stream_stream(
            _METHOD, request_serializer=None, response_deserializer=spb.IngestAck.FromString
        )
        started = time.monotonic()
        try:
            call = method(iter(chunks), wait_for_ready=True)
            async for _ in call:
                waits.append(time.monotonic() - started)
                break
            call.cancel()
        except grpc.RpcError:
            failures += 1
        finally:
            await channel.close(None)

    await asyncio.gather(*(one(chunks) for chunks in built))
    print(json.dumps({"waits": waits, "failures": failures, "last": time.time()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--work", type=Work, choices=list(Work), default=Work.FLOOR)
    parser.add_argument("--collector", action="store_true", help="keep the cyclic collector on in the server")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args))
        return
    if args.worker is not None:
        asyncio.run(_load(args))
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("needs two CPUs: the floor server on one, the load on the others")
    port = free_port()
    common = [sys.executable, "-m", "bench.reconnect_floor", "--nodes", str(args.nodes), "--port", str(port)]
    with tempfile.TemporaryDirectory() as directory:
        serve = [*common, "--serve", "--work", args.work, *(["--collector"] if args.collector else [])]
        with children_on(cpus[:1]):
            server = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            with children_on(cpus[1:]):
                loads = [
                    subprocess.Popen(
                        [*common, "--workers", str(args.workers), "--worker", str(w), "--dir", directory],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for w in range(args.workers)
                ]
            while not all((Path(directory) / f"built-{w}").exists() for w in range(args.workers)):
                time.sleep(0.2)
            cpu_before, started = cpu_seconds(server.pid), time.time()
            (Path(directory) / "go").touch()
            results = [json.loads(load.communicate()[0]) for load in loads]
            cpu = cpu_seconds(server.pid) - cpu_before
            rss, peak = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait()
    waits = [wait for result in results for wait in result["waits"]]
    took = max(result["last"] for result in results) - started
    counters = args.nodes * len(node_records(Shape(args.nodes), 0, 0))
    collector = "on" if args.collector else "off"
    print(f"{args.nodes} nodes' first snapshots ({counters:,} counters), floor server --work {args.work}, "
          f"collector {collector}, {args.workers} load processes")  # fmt: skip
    print(f"  all acked in {took:.1f} s (the last load process's end), server CPU {cpu:.1f} s: "
          f"{cpu / counters * 1e6:.2f} us a counter")  # fmt: skip
    print(f"  acks: {len(waits):,} of {args.nodes:,}, failed {sum(r['failures'] for r in results)}; wait p50 "
          f"{percentile(waits, 0.5):.1f} s, max {max(waits, default=0):.1f} s; over 30 s "
          f"{sum(w > 30 for w in waits)}, over 120 s {sum(w > 120 for w in waits)}")  # fmt: skip
    print(f"  server RSS {rss:,.0f} MiB (peak {peak:,.0f})")


if __name__ == "__main__":
    main()
