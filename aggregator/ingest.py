"""The ``Ingest`` gRPC servicer: node agents stream snapshots in, acknowledgements go out.

Per stream it reassembles chunks (:class:`~calico_accountant.wire.ChunkAssembler`),
validates, applies each whole snapshot in one call to the accounting state (atomic: the
asyncio loop runs nothing else meanwhile, and the accountant takes its lock), hands the
resulting increases to the hit fan-out, and acknowledges with the snapshot's sequence.

Stream rules (the agent's side is :mod:`node_agent.streamer`):

* a stream belongs to one node and one agent instance, fixed by its first message;
* a snapshot the ledger refuses as out of sequence (see
  :meth:`aggregator.ledger.Ledger.check`: a delta before any full snapshot of
  its agent instance, a gap, a sequence that went back) is not applied, and the ack asks
  for a full resync (``resync_requested``), on the same stream;
* a newer stream for the same node supersedes the older one, which is ended with
  ``ABORTED`` at its next message (an agent that restarted, or two agents claiming
  one node: the newest wins, and the metric shows the churn);
* malformed input (bad chunking, a message for another node, no node name, ...) ends
  the stream with ``INVALID_ARGUMENT`` and a message saying why; the server keeps
  serving everyone else.  Individual counters that do not validate are skipped and
  counted instead (one bad counter must not cost a node all its data).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aggregator.accountant import SnapshotRefused
from aggregator.series.views import ResolvedIncrease
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.v1 import snapshot_pb2_grpc as pb_grpc
from calico_accountant.wire import ChunkAssembler, DecodedSnapshot, WireError, decode_snapshot

__all__ = ["Accounting", "IngestMetrics", "IngestServicer"]

log = logging.getLogger(__name__)
_R = TypeVar("_R")


class Accounting(Protocol):
    """What ingest needs of the accounting state (:class:`aggregator.accountant.Accountant`)."""

    def apply(self, update: DecodedSnapshot, now: float) -> list[ResolvedIncrease]: ...

    def set_connected(self, node: str, connected: bool) -> None: ...


class IngestMetrics:
    """``calico_accountant_ingest_*`` self-metrics, on the registry the server exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.snapshots = Counter(
            "calico_accountant_ingest_snapshots",
            "Whole snapshots received, by type (full, delta) and outcome (applied, resync, error).",
            ["type", "outcome"],
            registry=registry,
        )
        self.messages = Counter(
            "calico_accountant_ingest_messages",
            "Ingest messages (chunks included) received.",
            registry=registry,
        )
        self.counters = Counter(
            "calico_accountant_ingest_counters_applied", "Counters applied from snapshots.", registry=registry
        )
        self.invalid_counters = Counter(
            "calico_accountant_ingest_invalid_counters",
            "Counters skipped because they did not validate (see the aggregator log for why).",
            registry=registry,
        )
        self.stream_errors = Counter(
            "calico_accountant_ingest_stream_errors",
            "Ingest streams ended by the aggregator, by gRPC status code.",
            ["code"],
            registry=registry,
        )
        self.streams = Gauge("calico_accountant_ingest_streams", "Open ingest streams.", registry=registry)
        self.apply_seconds = Histogram(
            "calico_accountant_ingest_apply_seconds",
            "Time to apply one whole snapshot to the totals and series.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )


class _StreamState:
    """What one ingest stream has established so far."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.node = ""
        self.instance_id = ""
        self.assembler = ChunkAssembler()


class IngestServicer(pb_grpc.IngestServicer):
    """The grpc.aio servicer; ``on_increases`` receives every applied snapshot's increases."""

    def __init__(
        self,
        accounting: Accounting,
        *,
        on_increases: Callable[[Sequence[ResolvedIncrease]], object] | None = None,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.time,
        inline_below: int = 2000,
    ) -> None:
        self._accounting = accounting
        self._inline_below = inline_below
        self._on_increases = on_increases
        self._metrics = metrics if metrics is not None else IngestMetrics(CollectorRegistry())
        self._clock = clock
        self._ids = itertools.count(1)
        self._owner: dict[str, int] = {}
        """node -> id of the stream currently accepted for it."""

    async def StreamSnapshots(
        self, request_iterator: AsyncIterator[pb.NodeSnapshot], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.IngestAck]:
        state = _StreamState(next(self._ids))
        self._metrics.streams.inc()
        try:
            async for message in request_iterator:
                self._metrics.messages.inc()
                ack = await self._receive(state, message)
                if isinstance(ack, _Abort):
                    self._metrics.stream_errors.labels(ack.code.name).inc()
                    log.warning(
                        "ingest stream from %s (%s): %s", state.node or "?", context.peer(), ack.message
                    )
                    await context.abort(ack.code, ack.message)
                    return
                if ack is not None:
                    yield ack
        except asyncio.CancelledError:
            return  # the agent went away or the server is stopping: nothing to answer
        finally:
            self._metrics.streams.dec()
            if state.node and self._owner.get(state.node) == state.stream_id:
                del self._owner[state.node]
                self._accounting.set_connected(state.node, False)

    async def _receive(self, state: _StreamState, message: pb.NodeSnapshot) -> pb.IngestAck | _Abort | None:
        """Handle one message; an ack when it completed a snapshot, an abort on bad input."""
        if not message.node:
            return _Abort(grpc.StatusCode.INVALID_ARGUMENT, "snapshot without a node name")
        if state.node:
            if message.node != state.node:
                return _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"this stream belongs to node {state.node!r}; got a snapshot for {message.node!r}",
                )
            if message.agent_instance_id != state.instance_id:
                return _Abort(grpc.StatusCode.INVALID_ARGUMENT, "agent_instance_id changed within one stream")
            if self._owner.get(state.node) != state.stream_id:
                return _Abort(
                    grpc.StatusCode.ABORTED, f"superseded by a newer stream for node {state.node!r}"
                )
        try:
            whole = state.assembler.add(message)
            if whole is None:
                return None
            update = await self._offload(decode_snapshot, whole)
        except WireError as error:
            self._metrics.snapshots.labels("full" if message.full else "delta", "error").inc()
            return _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad snapshot: {error}")
        if not state.node:
            # The stream claims its node with its first valid snapshot, not before: a
            # stream that never sends one leaves no trace in the node list.
            state.node, state.instance_id = update.node, update.agent_instance_id
            previous = self._owner.get(update.node)
            self._owner[update.node] = state.stream_id
            if previous is None:
                self._accounting.set_connected(update.node, True)
        return await self._apply(update)

    async def _offload(self, function: Callable[..., _R], *args: Any) -> _R:
        """Run a large decode or apply in a worker thread, so Watch streams, health checks
        and small snapshots of other nodes keep being served meanwhile.  Still atomic:
        the accountant applies under its lock, and this stream waits for the result
        before reading its next message (so a node's snapshots apply in order)."""
        size = len(args[0].records) if isinstance(args[0], DecodedSnapshot) else len(args[0].counters)
        if size < self._inline_below:
            return function(*args)
        return await asyncio.to_thread(function, *args)

    async def _apply(self, update: DecodedSnapshot) -> pb.IngestAck | _Abort:
        kind = "full" if update.full else "delta"
        started = time.perf_counter()
        try:
            increases = await self._offload(self._accounting.apply, update, self._clock())
        except SnapshotRefused as refused:
            self._metrics.snapshots.labels(kind, "resync").inc()
            return pb.IngestAck(sequence=update.sequence, resync_requested=True, message=str(refused))
        except Exception:  # a bug must cost this stream, not the server
            log.exception("applying snapshot %d of node %s failed", update.sequence, update.node)
            self._metrics.snapshots.labels(kind, "error").inc()
            return _Abort(
                grpc.StatusCode.INTERNAL, "the aggregator failed to apply the snapshot; see its log"
            )
        self._metrics.apply_seconds.observe(time.perf_counter() - started)
        self._metrics.snapshots.labels(kind, "applied").inc()
        self._metrics.counters.inc(len(update.records))
        message = ""
        if update.invalid_counters:
            self._metrics.invalid_counters.inc(update.invalid_counters)
            message = f"skipped {update.invalid_counters} invalid counters: " + "; ".join(
                f"{reason} (x{count})" for reason, count in sorted(update.invalid_reasons.items())[:5]
            )
            log.warning("node %s: %s", update.node, message)
        if self._on_increases is not None and increases:
            try:
                self._on_increases(increases)
            except Exception:
                log.exception("publishing hits of node %s failed", update.node)
        return pb.IngestAck(sequence=update.sequence, message=message)


class _Abort:
    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message
