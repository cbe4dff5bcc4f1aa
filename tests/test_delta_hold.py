"""While full snapshots wait their turn, an applied delta's ack is held back (real gRPC on
loopback, the real accountant).

After an aggregator restart the nodes whose full snapshot was applied first keep sending a
delta every interval while thousands of others still wait; an agent sends its next snapshot
only after the previous ack, and then its newest read, so holding the ack makes its reads of
the meantime one delta.  What is checked: the delta is applied at once (its counts are not
held, only the ack), the agent hears interim acks meanwhile, the ack comes when no full
snapshot waits any more or after ``delta_hold`` seconds, and ``delta_hold=0`` holds nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from unittest import mock

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.ingest import servicer as servicer_module
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.servicer import IngestServicer
from aggregator.ledger.state import NodeUpdate
from aggregator.series.views import Hits
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.v1 import snapshot_pb2_grpc as pb_grpc
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.accounting import accept
from tests.support.streaming import ingest_on_loopback
from tests.support.waits import async_wait_until

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.05
LARGE = 3000
"""Counters of a snapshot applied in the servicer's worker thread (``inline_below``: 2,000)."""


class GatedAccountant(Accountant):
    """The real accountant; the full snapshot of ``node-gate`` is applied only once
    :attr:`release` is set (outside the lock: other snapshots are applied meanwhile)."""

    def __init__(self) -> None:
        super().__init__(Catalog.empty())
        self.release = threading.Event()

    def apply(self, update: NodeUpdate, now: float) -> Hits:
        if update.node == "node-gate" and update.full:
            assert self.release.wait(30)
        return super().apply(update, now)


def _snapshot(node: str, sequence: int, packets: int, counters: int = 1) -> pb.NodeSnapshot:
    records = [accept(f"cali-{node}-{i}", "cali-pi-_x", packets) for i in range(counters)]
    return build_snapshot(
        node=node, agent_instance_id=f"agent-{node}", sequence=sequence, read_time=datetime.now(UTC),
        full=sequence == 1, records=records,
    )  # fmt: skip


class _Agent:
    """One stream, sending a snapshot when told to, as an agent does."""

    def __init__(self, stub: pb_grpc.IngestStub) -> None:
        self._messages: asyncio.Queue[pb.NodeSnapshot | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[pb.NodeSnapshot]:
            while (message := await self._messages.get()) is not None:
                yield message

        self.call = stub.StreamSnapshots(requests())

    def send(self, message: pb.NodeSnapshot) -> None:
        self._messages.put_nowait(message)

    async def ack(self) -> tuple[pb.IngestAck, list[pb.IngestAck]]:
        """The next ack that is not interim, and the interim ones before it."""
        interim: list[pb.IngestAck] = []
        while True:
            ack = await asyncio.wait_for(self.call.read(), 20)
            assert ack is not grpc.aio.EOF  # type: ignore[attr-defined]
            if not ack.waiting:
                return ack, interim
            interim.append(ack)

    def close(self) -> None:
        self._messages.put_nowait(None)


@dataclass
class Outcome:
    ack: pb.IngestAck
    interim: list[pb.IngestAck]
    full_waiting_at_ack: int
    """Full snapshots still waiting their turn when the ack came."""
    held_acks: float
    freezes: list[str]
    """How each applied full snapshot was frozen, in order: "counted" (the unfrozen objects
    counted first, :func:`~calico_accountant.runtime.heap.freeze_when_grown`) or "at once"."""


async def _delta_during_a_storm(delta_hold: float, release_after_ack: bool) -> Outcome:
    accountant = GatedAccountant()
    registry = CollectorRegistry()
    servicer = IngestServicer(
        accountant, heartbeat=HEARTBEAT, delta_hold=delta_hold, metrics=IngestMetrics(registry)
    )
    freezes: list[str] = []
    patches = (
        mock.patch.object(servicer_module, "freeze_when_grown", lambda: freezes.append("counted")),
        mock.patch.object(servicer_module, "freeze_long_lived", lambda: freezes.append("at once")),
    )
    for patch in patches:
        patch.start()
    try:
        async with ingest_on_loopback(servicer) as stub:
            applied, gate, queued = _Agent(stub), _Agent(stub), _Agent(stub)
            applied.send(_snapshot("node-applied", 1, 10))
            assert (await applied.ack())[0].sequence == 1  # nothing queued yet: at once
            # taken, and blocked in the worker (large: not applied on the loop)
            gate.send(_snapshot("node-gate", 1, 10, counters=LARGE))
            await async_wait_until(lambda: servicer._queue.passed == 2)
            queued.send(_snapshot("node-queued", 1, 10))  # waits behind it
            await async_wait_until(lambda: servicer._queue.waiting == 1)
            applied.send(_snapshot("node-applied", 2, 25))
            # applied at once, while the gate's full snapshot still blocks the queue
            state = accountant.ledger.node("node-applied")
            assert state is not None
            await async_wait_until(lambda: state.sequence == 2)
            if not release_after_ack:
                asyncio.get_running_loop().call_later(0.3, accountant.release.set)
            ack, interim = await applied.ack()
            waiting = servicer._queue.waiting
            accountant.release.set()
            assert (await gate.ack())[0].sequence == 1
            assert (await queued.ack())[0].sequence == 1
            for agent in (applied, gate, queued):
                agent.close()
    finally:
        accountant.release.set()
        for patch in patches:
            patch.stop()
    return Outcome(
        ack,
        interim,
        full_waiting_at_ack=waiting,
        held_acks=registry.get_sample_value("calico_accountant_ingest_held_acks_total") or 0.0,
        freezes=freezes,
    )


def test_a_delta_is_applied_at_once_and_acked_when_no_full_snapshot_waits() -> None:
    outcome = asyncio.run(_delta_during_a_storm(delta_hold=30, release_after_ack=False))
    assert (outcome.ack.sequence, outcome.ack.resync_requested) == (2, False)
    assert outcome.full_waiting_at_ack == 0  # released when the queue emptied, not before
    assert len(outcome.interim) >= 3  # ~0.3 s held, an interim ack every 0.05 s
    for interim in outcome.interim:
        assert interim.sequence == 1 and "applied" in interim.message
    # one full snapshot waited throughout; the last interim ack may come as the queue empties
    positions = [interim.queue_position for interim in outcome.interim]
    assert set(positions[:-1]) == {1} and positions[-1] in (0, 1)
    assert outcome.held_acks == 1
    # the first node's full snapshot and the last one's had no other waiting; the gate's had
    assert outcome.freezes == ["counted", "at once", "counted"]


def test_a_delta_ack_is_held_at_most_delta_hold_seconds() -> None:
    outcome = asyncio.run(_delta_during_a_storm(delta_hold=0.2, release_after_ack=True))
    assert outcome.ack.sequence == 2
    assert outcome.full_waiting_at_ack == 1  # the hold ended, the storm had not
    assert outcome.interim and outcome.held_acks == 1


def test_no_hold_with_delta_hold_zero() -> None:
    outcome = asyncio.run(_delta_during_a_storm(delta_hold=0, release_after_ack=True))
    assert outcome.ack.sequence == 2 and outcome.full_waiting_at_ack == 1
    # (an interim ack "being applied" could come if the inline apply took a heartbeat)
    assert not any("its ack" in interim.message for interim in outcome.interim)
    assert outcome.held_acks == 0
