"""How many policy hits a ``Watch`` consumer receives per second from a real aggregator.

    .venv/bin/python -m bench.watch_bench [--nodes 24] [--interval 1] [--duration 20] [--consumers 1]
        [--encoding keyed|plain]

A real aggregator process (no datastore, ``--levels node,cluster`` so that the ingest side
spends little on series); ``--producers`` processes stream ``--nodes`` simulated nodes
(:mod:`bench.cluster_shape`, 4,620 counters each) over real gRPC: a full snapshot each, then
every ``--interval`` seconds a delta in which *every* counter moved -- so every interval
offers ``nodes x 4,620`` hits.  ``--encoding keyed`` (the default) sends deltas as the
agent does, by key id once the aggregator advertised it
(:mod:`calico_accountant.wire.keyed`); ``plain`` sends every changed counter whole, as
agents before key ids did.  ``--consumers`` processes each hold one ``Watch(follow=True)``
stream and count the hits (and ``lost`` notices) they receive per second, decoding every
message as a consumer would.

Reported: hits offered and published per second (the aggregator's
``calico_accountant_hits_published_total``), hits each consumer received per second over the
window, hits lost for it (it fell behind: the aggregator dropped them for that consumer and
said so), and the aggregator's CPU.  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio

from bench.cluster_shape import Shape, node_records
from calico_accountant.records import CounterKey, CounterRecord
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.v1 import snapshot_pb2_grpc as spb_grpc
from calico_accountant.wire.chunks import split_snapshot
from calico_accountant.wire.delta import index_records
from calico_accountant.wire.keyed import KeyIds, encode_read
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.ports import free_port
from tests.support.processes import processes
from tests.support.scrape import http_get, metric_samples

CHUNK = 4 * 1024 * 1024 - 64 * 1024


def _moved_columns(first: spb.NodeSnapshot, sequence: int) -> spb.NodeSnapshot:
    """The delta ``encode_read`` gives at ``sequence`` when ``first`` was its delta at
    ``first.sequence`` and every counter moved by 1 packet and 100 bytes a read since: built
    from the columns directly, so that one producer process can offer ~100k values a second
    (the agents' encoding work is spread over their nodes in a cluster)."""
    step = sequence - first.sequence
    snapshot = spb.NodeSnapshot(
        node=first.node, agent_instance_id=first.agent_instance_id, sequence=sequence, full=False
    )
    snapshot.read_time.FromDatetime(datetime.now(UTC))
    snapshot.values.ids.extend(first.values.ids)
    snapshot.values.packets.extend([value + step for value in first.values.packets])
    snapshot.values.bytes.extend([value + 100 * step for value in first.values.bytes])
    return snapshot


async def _produce_node(stub: spb_grpc.IngestStub, shape: Shape, node: int, args: argparse.Namespace) -> None:
    queue: asyncio.Queue[spb.NodeSnapshot | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[spb.NodeSnapshot]:
        while (message := await queue.get()) is not None:
            yield message

    call = stub.StreamSnapshots(requests())
    records = node_records(shape, node, 0)
    end = time.time() + args.warmup + args.duration + 2 * args.interval
    sequence = 0
    ids = KeyIds()
    previous: dict[CounterKey, CounterRecord] = {}
    peer_key_ids = False
    shortcut: spb.NodeSnapshot | None = None
    started = time.time()
    try:
        while time.time() < end:
            sequence += 1
            by_id = peer_key_ids and args.encoding == "keyed"
            if shortcut is not None:
                snapshot = _moved_columns(shortcut, sequence)
            else:
                moved = index_records(
                    r._replace(packets=r.packets + sequence, bytes=r.bytes + 100 * sequence) for r in records
                )
                encoded = encode_read(ids, None if sequence == 1 else previous, moved, by_id=by_id)
                snapshot = build_snapshot(
                    node=f"node-{node}", agent_instance_id=f"watch-{node}", sequence=sequence,
                    read_time=datetime.now(UTC), full=sequence == 1, records=encoded.defined,
                    key_ids=encoded.defined_ids if args.encoding == "keyed" else (), values=encoded.values,
                    removed_ids=encoded.removed_ids,
                )  # fmt: skip
                if by_id:  # the agent's encoding, once: later deltas move every column alike
                    shortcut = snapshot
                    assert not snapshot.counters and len(snapshot.values.ids) == len(records)
            previous = moved
            for chunk in split_snapshot(snapshot, CHUNK):
                queue.put_nowait(chunk)
            while (ack := await call.read()) is not grpc.aio.EOF and ack.waiting:  # type: ignore[attr-defined]
                pass
            peer_key_ids = ack is not grpc.aio.EOF and ack.key_ids  # type: ignore[attr-defined]
            # Every interval, not an interval after the ack: the offered rate is the nominal one.
            await asyncio.sleep(max(0.0, started + sequence * args.interval - time.time()))
    finally:
        queue.put_nowait(None)


async def _producer(args: argparse.Namespace) -> None:
    shape = Shape(args.nodes)
    async with grpc.aio.insecure_channel(
        args.target, options=[("grpc.max_send_message_length", 4 << 20)]
    ) as ch:
        stub = spb_grpc.IngestStub(ch)  # type: ignore[no-untyped-call]
        mine = range(args.part, args.nodes, args.producers)
        await asyncio.gather(*(_produce_node(stub, shape, n, args) for n in mine))


def _consumer(args: argparse.Namespace) -> None:
    """Count hits per second of wall time; print the window's figures as JSON."""
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
        start = time.time() + args.warmup
        end = start + args.duration
        received = lost = 0
        stream = stub.Watch(hpb.WatchRequest(follow=True), wait_for_ready=True, timeout=end - time.time())
        try:
            for batch in stream:
                if time.time() >= start:
                    received += len(batch.hits)
                    lost += batch.lost
        except grpc.RpcError as error:  # the deadline: the window is over
            if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
    print(json.dumps({"received": received, "lost": lost}))


def _published(metrics_port: int) -> float:
    text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
    return sum(metric_samples(text, "calico_accountant_hits_published_total").values())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=24)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the measured window")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before it (first snapshots)")
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--encoding", choices=("keyed", "plain"), default="keyed")
    parser.add_argument(
        "--producers", type=int, default=2, help="processes sending the nodes' snapshots (the nodes split)"
    )
    parser.add_argument("--role", choices=("producer", "consumer"), help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "producer":
        asyncio.run(_producer(args))
        return
    if args.role == "consumer":
        _consumer(args)
        return
    with tempfile.TemporaryDirectory() as directory, processes(Path(directory)) as run:
        grpc_port, metrics_port = free_port(), free_port()
        aggregator = run.aggregator(
            grpc_port,
            metrics_port,
            "--levels",
            "node,cluster",
            "--max-streams-per-peer",
            str(args.nodes + 10),
        )
        common = [
            *("--nodes", str(args.nodes), "--interval", str(args.interval), "--duration", str(args.duration)),
            *(
                "--warmup",
                str(args.warmup),
                "--target",
                f"127.0.0.1:{grpc_port}",
                "--encoding",
                args.encoding,
            ),
        ]
        command = [sys.executable, "-m", "bench.watch_bench", *common]
        consumers = [
            subprocess.Popen([*command, "--role", "consumer"], stdout=subprocess.PIPE, text=True)
            for _ in range(args.consumers)
        ]
        producers = [
            subprocess.Popen(
                [*command, "--producers", str(args.producers), "--role", "producer", "--part", str(part)]
            )
            for part in range(args.producers)
        ]
        time.sleep(args.warmup)
        published, cpu, started = _published(metrics_port), _cpu_seconds(aggregator.popen.pid), time.time()
        time.sleep(args.duration)
        published = _published(metrics_port) - published
        cpu = (_cpu_seconds(aggregator.popen.pid) - cpu) / (time.time() - started)
        results = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in consumers]
        for producer in producers:
            producer.wait()
    offered = args.nodes * 4620 / args.interval
    print(
        f"{args.nodes} nodes x 4,620 counters all moving every {args.interval:g} s ({args.encoding}): "
        f"{offered:,.0f} hits/s offered, {published / args.duration:,.0f}/s published; "
        f"aggregator {cpu:.2f} cores"
    )
    for index, result in enumerate(results):
        print(
            f"  consumer {index}: {result['received'] / args.duration:,.0f} hits/s received, "
            f"{result['lost']:,} lost"
        )


if __name__ == "__main__":
    main()
