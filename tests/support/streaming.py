"""What the streaming tests compare against: nodes whose dumps advance, the exact totals
they must add up to, and a ``PolicyHits`` reader (plaintext or TLS) to fetch what the
aggregator made of them.

A :class:`Node`'s dump at version k has every counter of version 1 multiplied by k (see
:mod:`tests.support.dumps`); :func:`sums` is the parser's own reading of it, summed per
(node, kind, direction), which is what the aggregator's totals must equal.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from aggregator.ingest.servicer import IngestServicer
from calico_accountant.records import CounterRecord, Direction
from calico_accountant.runtime.client_tls import ClientTls, open_channel
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.v1 import snapshot_pb2_grpc as spb_grpc
from calico_accountant.wire.counters import KIND_TO_PB
from node_agent.parsing import parse_node
from tests.support.dumps import scale_dump, write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import Processes
from tests.support.waits import wait_until

__all__ = [
    "KIND_TO_PB",
    "HitsReader",
    "Node",
    "Sums",
    "hit_sums",
    "ingest_on_loopback",
    "make_nodes",
    "nonzero",
    "raw_ingest",
    "start_aggregator",
    "sums",
    "totals_reach",
]

Sums = Counter[tuple[str, int, int]]
"""(node, kind, direction) -> packets (and a twin Counter for bytes)."""


@dataclass
class Node:
    name: str
    path: Path
    text: str
    """Version 1 of the dump."""

    def write(self, factor: int) -> None:
        write_atomic(self.path, scale_dump(self.text, factor))

    def records(self, factor: int) -> list[CounterRecord]:
        """What the agent reads at version ``factor``: the parser's own reading of it."""
        return parse_node([(str(self.path), scale_dump(self.text, factor))]).records


def make_nodes(directory: Path, sizes: Sequence[tuple[int, int]]) -> list[Node]:
    """One node per (pods, policies), named ``node-0``..., its dump written at version 1."""
    nodes = []
    for index, (pods, policies) in enumerate(sizes):
        table = render(sized_model(pods, policies, seed=index + 1))
        node = Node(f"node-{index}", directory / f"node-{index}.save", table.text)
        node.write(1)
        nodes.append(node)
    return nodes


def sums(nodes: Sequence[Node], factor: int) -> tuple[Sums, Sums]:
    packets: Sums = Counter()
    octets: Sums = Counter()
    for node in nodes:
        for record in node.records(factor):
            key = (
                node.name,
                int(KIND_TO_PB[record.key.kind]),
                1 if record.key.direction is Direction.INGRESS else 2,
            )
            packets[key] += record.packets
            octets[key] += record.bytes
    return packets, octets


def counted(nodes: Sequence[Node], factor: int, baseline: int = 1) -> tuple[Sums, Sums]:
    """What an aggregator that first saw version ``baseline`` has counted at ``factor``: a
    started aggregator counts from the first snapshot it sees of each node."""
    now_packets, now_bytes = sums(nodes, factor)
    base_packets, base_bytes = sums(nodes, baseline)
    return now_packets - base_packets, now_bytes - base_bytes


def hit_sums(hits: Sequence[hpb.Hit]) -> tuple[Sums, Sums]:
    packets: Sums = Counter()
    octets: Sums = Counter()
    for hit in hits:
        packets[(hit.node, int(hit.kind), int(hit.direction))] += hit.packets
        octets[(hit.node, int(hit.kind), int(hit.direction))] += hit.bytes
    return packets, octets


def nonzero(counter: Sums) -> Sums:
    return Counter({k: v for k, v in counter.items() if v})


class HitsReader:
    """A raw ``PolicyHits`` client (the project's channel code, plaintext or TLS)."""

    def __init__(self, target: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls, [("grpc.max_receive_message_length", 64 << 20)])
        self.hits = hpb_grpc.PolicyHitsStub(self.channel)  # type: ignore[no-untyped-call]

    def status(self) -> hpb.ServerStatusResponse:
        return self.hits.ServerStatus(hpb.ServerStatusRequest(), timeout=5, wait_for_ready=True)  # type: ignore[no-any-return]

    def totals(self) -> tuple[Sums, Sums]:
        response = self.hits.Snapshot(hpb.SnapshotRequest(), timeout=10)
        return hit_sums(list(response.totals))

    def nodes(self) -> dict[str, hpb.NodeStatus]:
        return {n.node: n for n in self.hits.ListNodes(hpb.ListNodesRequest(), timeout=5).nodes}

    def close(self) -> None:
        self.channel.close()


def raw_ingest(
    target: str, messages: Sequence[bytes], max_send: int = 64 << 20, tls: ClientTls | None = None
) -> grpc.RpcError | None:
    """Send raw bytes on an ingest stream; the error the server ended it with (None: acks)."""
    channel = open_channel(target, tls, [("grpc.max_send_message_length", max_send)])
    call = channel.stream_stream(
        "/calico_accountant.v1.Ingest/StreamSnapshots",
        request_serializer=lambda raw: raw,
        response_deserializer=spb.IngestAck.FromString,
    )
    try:
        for _ in call(iter(messages), timeout=10):
            pass
    except grpc.RpcError as error:
        return error
    finally:
        channel.close()
    return None


def totals_reach(client: HitsReader, expected: Sums) -> Callable[[], bool]:
    return lambda: nonzero(client.totals()[0]) == nonzero(expected)


def reporting(client: HitsReader, count: int) -> Callable[[], bool]:
    """Every one of ``count`` nodes has had a snapshot applied (its baseline is set)."""
    return lambda: len(client.nodes()) == count and all(n.sequence >= 1 for n in client.nodes().values())


def start_aggregator(
    run: Processes, *extra: str, grpc_port: int = 0, metrics_port: int = 0, tls: ClientTls | None = None
) -> tuple[int, int]:
    """An aggregator process; returns (gRPC port, metrics port) once it answers
    ``ServerStatus`` (over TLS with ``tls``, for a server that requires it)."""
    grpc_port = grpc_port or free_port()
    metrics_port = metrics_port or free_port()
    run.aggregator(grpc_port, metrics_port, *extra)
    client = HitsReader(f"127.0.0.1:{grpc_port}", tls)
    try:
        wait_until(client.status, what="aggregator up")
    finally:
        client.close()
    return grpc_port, metrics_port


@contextlib.asynccontextmanager
async def ingest_on_loopback(servicer: IngestServicer) -> AsyncIterator[spb_grpc.IngestStub]:
    """``servicer`` served by a real gRPC server on loopback, and a stub on a channel to it
    (both closed after)."""
    server = grpc.aio.server()
    servicer.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield spb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await server.stop(0)
