"""Key ids between real components over real gRPC on loopback: the agent's streamer
(node_agent.streamer) or a raw client, and ingest servicers (aggregator.ingest) in front of
real accountants.

* a new agent and a new aggregator: after the full snapshot's ack the agent sends values by
  id, and the totals, hits and series equal those of the same reads sent whole to an
  aggregator that does not advertise key ids (an old one: the agent keeps sending whole
  counters to it), chunked or not;
* an old agent (no ids at all) and a new aggregator: applied as before;
* an aggregator restarted from a checkpoint: the agent's new stream starts with a full
  snapshot that defines the ids again, and counting goes on exactly;
* hostile input: an unknown id gets a resync request (counted, reason ``key_ids``),
  columns of unequal length end the stream with ``INVALID_ARGUMENT`` (counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from aggregator.accountant import Accountant
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.servicer import IngestServicer
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.views import ResolvedIncrease
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.v1 import snapshot_pb2_grpc as pb_grpc
from node_agent.reader import NodeRead, NodeReader
from node_agent.streamer import LatestSlot, Streamer, StreamerConfig
from tests.support.accounting import FakeCatalog
from tests.support.keyed import T0, Read, agent_messages, evolving_reads
from tests.support.streaming import make_nodes
from tests.support.waits import async_wait_until

NODE = "node-k"


class SpyServicer(IngestServicer):
    """The real servicer, noting what each message carried (whole counters, values by id)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[tuple[bool, int, int]] = []

    async def _parse(self, raw: bytes) -> pb.NodeSnapshot:
        message = await super()._parse(raw)
        self.seen.append((message.full, len(message.counters), len(message.values.ids)))
        return message


@dataclass
class Aggregator:
    accountant: Accountant
    servicer: SpyServicer
    server: grpc.aio.Server
    address: str
    registry: CollectorRegistry
    hits: Counter[str] = field(default_factory=Counter)

    def rejected(self, reason: str) -> float:
        return (
            self.registry.get_sample_value("calico_accountant_ingest_rejected_total", {"reason": reason})
            or 0.0
        )

    def totals(self) -> list[tuple[str, int, int, bool]]:
        return sorted((str(t.counter.key), t.packets, t.bytes, t.live) for t in self.accountant.totals())

    def series(self) -> list[object]:
        return [
            (f.family, sorted(zip(f.labels, f.values, strict=True)))
            for f in self.accountant.view(0.0).families
        ]

    async def stop(self) -> None:
        await self.server.stop(0)


async def _aggregator(
    *, key_ids: bool = True, port: int = 0, accountant: Accountant | None = None
) -> Aggregator:
    catalog = FakeCatalog().add_pod(NODE, "cali00000000000", "ns", "pod-0", "app")
    accountant = accountant or Accountant(
        catalog, ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE), chunk=7
    )
    registry = CollectorRegistry()
    hits: Counter[str] = Counter()

    def record(increases: object) -> None:
        for increase in increases:  # type: ignore[attr-defined]
            assert isinstance(increase, ResolvedIncrease)
            hits[f"{increase.counter.key} packets"] += increase.packets
            hits[f"{increase.counter.key} bytes"] += increase.bytes

    servicer = SpyServicer(
        accountant, metrics=IngestMetrics(registry), key_ids=key_ids, heartbeat=0.5, on_hits=record
    )
    server = grpc.aio.server()
    servicer.add_to(server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return Aggregator(accountant, servicer, server, f"127.0.0.1:{bound}", registry, hits)


async def _base_read(tmp_path: Path) -> NodeRead:
    (node,) = make_nodes(tmp_path, [(1, 1)])
    return await NodeReader([f"cat {node.path}"]).read()


async def _stream(
    target: str, base: NodeRead, reads: list[Read], chunk_bytes: int | None = None
) -> tuple[Streamer, asyncio.Task[None]]:
    """A real streamer sending each of ``reads`` once it acknowledged the one before."""
    slot: LatestSlot[NodeRead] = LatestSlot()
    config = StreamerConfig(target=target, node=NODE, backoff_initial=0.05, backoff_max=0.2)
    if chunk_bytes is not None:
        config = dataclasses.replace(config, chunk_bytes=chunk_bytes)
    streamer = Streamer(config, slot, instance_id="agent-k")
    task = asyncio.create_task(streamer.run())
    await _feed(streamer, base, reads)
    return streamer, task


async def _feed(streamer: Streamer, base: NodeRead, reads: list[Read], start: int = 0) -> None:
    """Put each of ``reads`` in the streamer's slot once it acknowledged the one before."""
    for index, records in enumerate(reads, start=start):
        acked = streamer.acked_sequence
        streamer.slot.put(
            dataclasses.replace(base, records=records, read_time=T0 + timedelta(seconds=10 * index))
        )

        def sent(acked: int = acked) -> bool:
            return streamer.acked_sequence > acked

        await async_wait_until(sent, what=f"read {index} acknowledged", timeout=15.0, interval=0.01)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("chunk_bytes", [None, 600])
def test_values_by_id_count_exactly_what_whole_counters_count(
    tmp_path: Path, chunk_bytes: int | None
) -> None:
    reads = evolving_reads(random.Random(7), 10, size=20)

    async def main() -> None:
        base = await _base_read(tmp_path)
        new, old = await _aggregator(), await _aggregator(key_ids=False)
        try:
            by_id, by_id_task = await _stream(new.address, base, reads, chunk_bytes)
            whole, whole_task = await _stream(old.address, base, reads, chunk_bytes)
            await _stop(by_id_task)
            await _stop(whole_task)
            assert by_id.peer_key_ids and not whole.peer_key_ids
            deltas = [seen for seen in new.servicer.seen if not seen[0]]
            assert sum(values for _, _, values in deltas) > sum(counters for _, counters, _ in deltas)
            assert all(values == 0 for _, _, values in old.servicer.seen)
            if chunk_bytes is not None:
                assert len(new.servicer.seen) > len(reads)  # chunked
            assert new.totals() == old.totals() and new.totals()
            assert new.hits == old.hits and sum(new.hits.values()) > 0
            assert new.series() == old.series()
        finally:
            await new.stop()
            await old.stop()

    asyncio.run(main())


async def _exchange(
    stub: pb_grpc.IngestStub, messages: list[pb.NodeSnapshot]
) -> tuple[list[pb.IngestAck], grpc.aio.AioRpcError | None]:
    """Send ``messages`` one at a time on one stream, each after the previous one's ack."""
    queue: asyncio.Queue[pb.NodeSnapshot | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.NodeSnapshot]:
        while (message := await queue.get()) is not None:
            yield message

    call = stub.StreamSnapshots(requests())
    acks: list[pb.IngestAck] = []
    try:
        for message in messages:
            queue.put_nowait(message)
            while (ack := await call.read()) is not grpc.aio.EOF and ack.waiting:  # type: ignore[attr-defined]
                pass
            if ack is grpc.aio.EOF:  # type: ignore[attr-defined]
                break
            acks.append(ack)
        queue.put_nowait(None)
        await call.wait_for_connection()
        await call.code()
    except grpc.aio.AioRpcError as error:
        return acks, error
    return acks, None


def test_old_agents_and_hostile_ids(tmp_path: Path) -> None:
    reads = evolving_reads(random.Random(8), 6, size=10)
    keyed = agent_messages(reads, by_id=True)
    old_agent = agent_messages(reads, by_id=False)
    for message in old_agent:  # an agent that predates key ids sends none
        for counter in message.counters:
            counter.ClearField("key_id")

    async def main() -> None:
        new, reference = await _aggregator(), await _aggregator()
        try:
            async with (
                grpc.aio.insecure_channel(new.address) as channel,
                grpc.aio.insecure_channel(reference.address) as other,
            ):
                acks, error = await _exchange(pb_grpc.IngestStub(channel), old_agent)  # type: ignore[no-untyped-call]
                assert error is None and all(a.key_ids and not a.resync_requested for a in acks)
                acks, error = await _exchange(pb_grpc.IngestStub(other), keyed)  # type: ignore[no-untyped-call]
                assert error is None and not any(a.resync_requested for a in acks)
                assert new.totals() == reference.totals() and new.hits == reference.hits

                unknown = agent_messages(reads[:2], by_id=True, node="node-u", instance="u")
                unknown[1].values.ids[0] = 4242
                acks, error = await _exchange(pb_grpc.IngestStub(channel), unknown)  # type: ignore[no-untyped-call]
                assert error is None and acks[1].resync_requested and "4242" in acks[1].message
                assert new.rejected("key_ids") == 1 and new.rejected("sequence") == 0

                unequal = agent_messages(reads[:2], by_id=True, node="node-v", instance="v")
                unequal[1].values.bytes.append(1)
                acks, error = await _exchange(pb_grpc.IngestStub(channel), unequal)  # type: ignore[no-untyped-call]
                assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert "unequal length" in (error.details() or "")
                assert new.rejected("malformed") == 1
        finally:
            await new.stop()
            await reference.stop()

    asyncio.run(main())


def test_an_aggregator_restarted_from_a_checkpoint_gets_the_ids_again(tmp_path: Path) -> None:
    reads = evolving_reads(random.Random(9), 8, size=10)

    async def main() -> None:
        base = await _base_read(tmp_path)
        first, reference = await _aggregator(), await _aggregator()
        port = int(first.address.rsplit(":", 1)[1])
        streamer, task = await _stream(first.address, base, reads[:4])
        _, reference_task = await _stream(reference.address, base, reads)
        await _stop(reference_task)
        await first.stop()
        nodes, series, tombstones = first.accountant.capture()
        restarted_accountant = Accountant(
            FakeCatalog().add_pod(NODE, "cali00000000000", "ns", "pod-0", "app"),
            ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE),
        )
        restarted_accountant.restore(nodes, series, tombstones)
        restarted = await _aggregator(port=port, accountant=restarted_accountant)
        try:
            await _feed(streamer, base, reads[4:], start=4)
            await _stop(task)
            seen = restarted.servicer.seen
            assert seen[0][0] and seen[0][1] > 0  # the new stream began with a full snapshot
            assert any(values for full, _, values in seen[1:] if not full)  # then by id again
            assert restarted.totals() == reference.totals()
        finally:
            await restarted.stop()
            await reference.stop()

    asyncio.run(main())
