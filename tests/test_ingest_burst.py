"""What keeps the ingest servicer's event loop answering when every agent connects at once
(an aggregator restart), over real gRPC on loopback.

* Large messages are parsed, decoded and applied in the servicer's one worker thread: not on
  the event loop (health checks, keepalives and acks wait while it works) and not on several
  threads at once (they would only take the GIL from the loop more often; see
  ``IngestServicer._worker`` and ``PARSE_INLINE_BELOW`` in aggregator.ingest.servicer).
* Opening streams looks at the collector's unfrozen objects every ``FREEZE_EVERY_STREAMS``
  streams, so that a burst of new streams is not scanned by automatic full collections.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import grpc
import grpc.aio
import pytest

import aggregator.ingest.servicer as servicer_module
from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.ingest.servicer import PARSE_INLINE_BELOW, IngestServicer
from aggregator.ledger.state import NodeUpdate
from aggregator.series.views import Hits
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.v1 import snapshot_pb2_grpc as pb_grpc
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.accounting import accept
from tests.support.streaming import ingest_on_loopback
from tests.support.waits import async_wait_until

NODES = 4


class ThreadNotingAccountant(Accountant):
    """The real accountant, noting the thread each snapshot was applied in."""

    def __init__(self) -> None:
        super().__init__(Catalog.empty())
        self.threads: list[str] = []

    def apply(self, update: NodeUpdate, now: float) -> Hits:
        self.threads.append(threading.current_thread().name)
        return super().apply(update, now)


def _message(node: int, sequence: int, packets: int) -> pb.NodeSnapshot:
    records = [accept(f"cali{node:04d}{i:07d}", "cali-pi-_x", packets) for i in range(50)]
    return build_snapshot(
        node=f"node-{node}", agent_instance_id=f"agent-{node}", sequence=sequence,
        read_time=datetime.now(UTC), full=sequence == 1, records=records,
    )  # fmt: skip


async def _exchange(stub: pb_grpc.IngestStub, node: int) -> list[pb.IngestAck]:
    messages = [_message(node, 1, 10), _message(node, 2, 15)]
    acks: list[pb.IngestAck] = []
    queue: asyncio.Queue[pb.NodeSnapshot | None] = asyncio.Queue()

    async def requests() -> object:
        while (message := await queue.get()) is not None:
            yield message

    call = stub.StreamSnapshots(requests())
    for message in messages:  # each after the previous one's ack, as agents send them
        queue.put_nowait(message)
        ack = await call.read()
        assert ack is not grpc.aio.EOF  # type: ignore[attr-defined]
        acks.append(ack)
    queue.put_nowait(None)
    return acks


async def _nodes_stream(accountant: Accountant, nodes: int) -> str:
    """``nodes`` agents stream two snapshots each at once; returns the loop's thread name.
    Every snapshot counts as large here: parsed and applied in the worker."""
    servicer = IngestServicer(accountant, inline_below=1, parse_inline_below=1)
    async with ingest_on_loopback(servicer) as stub:
        results = await asyncio.gather(*(_exchange(stub, node) for node in range(nodes)))
    for acks in results:
        assert [(ack.sequence, ack.resync_requested) for ack in acks] == [(1, False), (2, False)]
    return threading.current_thread().name


def test_large_snapshots_are_applied_in_one_worker_thread_off_the_loop() -> None:
    accountant = ThreadNotingAccountant()
    loop_thread = asyncio.run(_nodes_stream(accountant, NODES))
    assert len(accountant.threads) == 2 * NODES
    (worker,) = set(accountant.threads)  # one thread, whatever the number of streams
    assert worker.startswith("ingest") and worker != loop_thread
    assert [len(accountant.ledger.counters(f"node-{node}")) for node in range(NODES)] == [50] * NODES


def test_the_parse_threshold_sits_between_a_delta_and_a_full_snapshot() -> None:
    """A 110-pod node's full snapshot (4,620 counters, ~338 kB) is parsed off the loop; a
    tenth of it moving (a delta by key id, a few kB) is parsed on it."""
    full = _message(0, 1, 10)
    full.counters.extend(full.counters[0] for _ in range(4620 - 50))
    delta = pb.NodeSnapshot(node="node-0", sequence=2)
    delta.values.ids.extend(range(462))
    delta.values.packets.extend(range(462))
    delta.values.bytes.extend(range(462))
    assert delta.ByteSize() < PARSE_INLINE_BELOW < full.ByteSize()


def test_opening_streams_freezes_what_grew_every_so_many_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[int] = []

    def freeze_when_grown() -> bool:
        looks.append(1)
        return False

    frozen_at_once: list[int] = []
    monkeypatch.setattr(servicer_module, "FREEZE_EVERY_STREAMS", 3)
    monkeypatch.setattr(servicer_module, "freeze_when_grown", freeze_when_grown)
    monkeypatch.setattr(servicer_module, "freeze_long_lived", lambda: frozen_at_once.append(1))
    asyncio.run(_nodes_stream(Accountant(Catalog.empty()), 7))
    # streams 3 and 6 looked; each of the 7 full snapshots applied was frozen once: after a
    # look, or at once when others waited their turn (a storm)
    assert len(looks) + len(frozen_at_once) == 2 + 7
    assert len(looks) >= 2


def test_a_small_snapshot_goes_to_the_worker_while_another_thread_holds_the_lock() -> None:
    """Small snapshots are applied on the loop, unless the accountant's lock is held (a
    scrape's copy, a checkpoint): the loop must not wait for it."""
    accountant = ThreadNotingAccountant()
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with accountant._lock:  # as a scrape's copy or a checkpoint's capture does
            held.set()
            release.wait(10)

    async def main() -> str:
        servicer = IngestServicer(accountant)  # the default thresholds: these are small
        holder = threading.Thread(target=hold_the_lock)
        try:
            async with ingest_on_loopback(servicer) as stub:
                await _exchange(stub, 0)
                # node-0's stream has ended: its disconnection (which takes the lock on the
                # loop, briefly) is done before the lock is held
                await async_wait_until(lambda: not accountant.ledger.node("node-0").connected)  # type: ignore[union-attr]
                holder.start()
                assert held.wait(10)
                asyncio.get_running_loop().call_later(0.3, release.set)
                await _exchange(stub, 1)
        finally:
            release.set()
            holder.join(10)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    assert accountant.threads[:2] == [loop_thread, loop_thread]
    assert accountant.threads[2].startswith("ingest")  # node-1's first, while the lock was held
    assert len(accountant.threads) == 4  # its second came after the release: either way
