"""The ``Ingest`` servicer: who may report, in which order, and how much at once.

Per stream it reassembles chunks (:class:`~calico_accountant.wire.chunks.ChunkAssembler`),
validates, applies each whole snapshot in one call to the accounting state (atomic: the
accountant applies under its lock and this stream waits for the result), hands the
resulting increases to the hit fan-out, and acknowledges with the snapshot's sequence.

Stream rules (the agent's side is :mod:`node_agent.streamer`):

* the caller must be allowed to report for the snapshot's node
  (:class:`~aggregator.trust.access.AccessRules`): otherwise ``PERMISSION_DENIED``;
* a stream belongs to one node and one agent instance, fixed by its first snapshot;
* a snapshot the ledger refuses as out of sequence (:meth:`aggregator.ledger.ledger.Ledger.check`)
  is not applied, and the ack asks for a full resync (``resync_requested``);
* a newer stream for the same node supersedes the older one, which is ended with
  ``ABORTED`` at its next message; when identities are checked, only a stream of the
  same identity may do so;
* over a cap (streams, streams per peer, bytes of an unfinished snapshot, the ledger's
  node, counter and diagnostic-code caps): ``RESOURCE_EXHAUSTED``, nothing kept;
* malformed input ends the stream with ``INVALID_ARGUMENT`` and a message saying why;
  individual counters that do not validate are skipped and counted instead;
* sharded (``--shards``, :mod:`aggregator.shard`): a snapshot for a node another replica
  owns is not applied; its ack carries ``redirect_address`` and the stream ends (the
  agent reconnects there).  :meth:`IngestServicer.release_nodes` hands nodes over when the
  membership changes: their streams are redirected at their next snapshot;
* full snapshots take turns (:mod:`aggregator.ingest.queue`); while one waits or is
  applied, its stream gets an interim ack (``waiting``, its queue position) every
  ``heartbeat`` seconds, so no agent times out in a reconnect storm;
* while full snapshots wait, an applied delta's ack is held back, up to ``delta_hold``
  seconds (interim acks meanwhile): the agent's reads of that time come as one delta, so
  the nodes already applied do not keep the storm's one core busy with their deltas;
* every ack of a snapshot sets ``key_ids`` (unless built with ``key_ids=False``, which
  stands for an aggregator that predates them): the agent may then send values by key id
  (:mod:`calico_accountant.wire.keyed`).  A snapshot naming an id the node's table does not
  hold, or defining one again for another key, gets a resync request (counted with reason
  ``key_ids``).

Every refusal is counted in ``calico_accountant_ingest_rejected_total{reason}`` and logged
once per peer, reason and minute, so a hostile client cannot flood the log.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry

from aggregator.accountant import SnapshotRefused
from aggregator.ingest.limits import StreamAdmission, StreamLimits
from aggregator.ingest.metrics import IngestMetrics, RejectReason
from aggregator.ingest.queue import SnapshotQueue, Ticket
from aggregator.series.views import Hits
from aggregator.shard.router import Redirect
from aggregator.trust.access import AccessRules
from aggregator.trust.identity import Identify, PeerIdentity, no_identity
from calico_accountant.runtime.heap import freeze_long_lived, freeze_when_grown
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.chunks import ChunkAssembler
from calico_accountant.wire.snapshots import DecodedSnapshot, decode_snapshot

__all__ = ["Accounting", "IngestServicer", "peer_address", "peer_key"]

log = logging.getLogger(__name__)
_R = TypeVar("_R")

INGEST_SERVICE: str = pb.DESCRIPTOR.services_by_name["Ingest"].full_name

PARSE_INLINE_BELOW = 64 * 1024
"""Bytes from which a message is parsed in a worker thread, not on the event loop.  gRPC
used to parse every message on the loop before the servicer saw it: when hundreds of
agents' full snapshots arrive at once (an aggregator restart), the loop parsed them one
after another in one pass (~0.3 ms for a 110-pod node's 4,620 counters, 338 kB), and
health checks, keepalives and acks waited for the whole pass (150-320 ms at 300 nodes,
``bench/load_bench.py --pin``).  A delta of a few hundred counters (tens of kB) parses in
microseconds: a thread's hand-off would cost more."""

FREEZE_EVERY_STREAMS = 100
"""Streams opened between two looks at the collector's unfrozen objects
(:func:`~calico_accountant.runtime.heap.freeze_when_grown`, a few ms).  When every agent
reconnects at once, each new stream leaves a few hundred long-lived objects (its gRPC call,
its generator and tasks) before any full snapshot is applied, and an automatic full collection
in the middle of that burst scanned them all: 67-97 ms at 1,000 nodes (``bench/load_bench.py
--pin``), growing with the streams."""

LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same peer and reason."""


class Accounting(Protocol):
    """What ingest needs of the accounting state (:class:`aggregator.accountant.Accountant`)."""

    def apply(self, update: DecodedSnapshot, now: float) -> Hits: ...

    def set_connected(self, node: str, connected: bool) -> None: ...

    def forget_nodes(self, nodes: Iterable[str]) -> int: ...

    def busy(self) -> bool:
        """Another thread holds the state's lock now (a scrape's copy, a checkpoint, a
        large snapshot's step)."""
        ...


class Sharding(Protocol):
    """Which nodes this replica owns (:class:`aggregator.shard.router.ShardRouter`)."""

    def redirect_for(self, node: str) -> Redirect | None: ...

    def owns(self, node: str) -> bool: ...


class _Stream:
    """What one ingest stream has established so far."""

    def __init__(self, stream_id: int, peer: str, identity: PeerIdentity | None) -> None:
        self.stream_id = stream_id
        self.peer = peer
        self.identity = identity
        self.node = ""
        self.instance_id = ""
        self.assembler = ChunkAssembler()
        self.pending_bytes = 0
        self.ticket: Ticket | None = None
        """The place of its full snapshot in the queue, while it waits or is applied."""
        self.connected = False
        """The ledger knows the node and it is marked connected for this stream."""
        self.redirected = False
        """Ended with a redirect to the node's owner (sharding)."""
        self.sequence = 0
        """The sequence of the message being handled (once parsed), for interim acks."""
        self.held = False
        """Its applied delta's ack is held while full snapshots wait (``delta_hold``)."""


class _Abort:
    __slots__ = ("code", "message", "reason")

    def __init__(self, code: grpc.StatusCode, message: str, reason: RejectReason | None = None) -> None:
        self.code = code
        self.message = message
        self.reason = reason


class IngestServicer:
    """The grpc.aio servicer; ``on_hits`` receives every applied snapshot's hits."""

    def __init__(
        self,
        accounting: Accounting,
        *,
        on_hits: Callable[[Hits], object] | None = None,
        metrics: IngestMetrics | None = None,
        access: AccessRules | None = None,
        identify: Identify = no_identity,
        limits: StreamLimits | None = None,
        clock: Callable[[], float] = time.time,
        inline_below: int = 2000,
        parse_inline_below: int = PARSE_INLINE_BELOW,
        heartbeat: float = 5.0,
        delta_hold: float = 300.0,
        shard: Sharding | None = None,
        key_ids: bool = True,
    ) -> None:
        self._accounting = accounting
        self._key_ids = key_ids
        self.shard = shard
        """None: this replica takes every node (no sharding); settable after construction."""
        self._inline_below = inline_below
        self._parse_inline_below = parse_inline_below
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        """Where large messages are parsed, decoded and applied: one thread, not the loop's
        default executor (six threads on two CPUs).  They all hold the GIL while they work,
        so more threads apply nothing sooner; they only take turns with the event loop more
        often: when a restart brought 1,000 full snapshots at once, six threads parsing and
        applying them stalled the loop for up to 350 ms at a time (``bench/load_bench.py
        --pin``), each of their hand-offs waking it as well."""
        self._on_hits = on_hits
        self._metrics = metrics if metrics is not None else IngestMetrics(CollectorRegistry())
        self._access = access or AccessRules()
        self._identify = identify
        self._admission = StreamAdmission(limits or StreamLimits())
        self._clock = clock
        self._heartbeat = heartbeat
        """Seconds between interim acks while a snapshot waits or is applied."""
        self._delta_hold = delta_hold
        """At most this long an applied delta's ack waits while full snapshots wait (0: never)."""
        self._queue = SnapshotQueue()
        self._metrics.queued.set_function(lambda: self._queue.waiting)
        self._ids = itertools.count(1)
        self._owner: dict[str, _Stream] = {}
        """node -> the stream currently accepted for it."""
        self._last_logged: dict[tuple[str, RejectReason], float] = {}
        self.ended_streams = 0
        """Streams that ended, refused or not (each may leave garbage only a full
        collection frees: the server's housekeeping collects when this moved)."""

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve ``calico_accountant.v1.Ingest`` on ``server``, its requests handed over as
        bytes (see :meth:`_parse`), not parsed by gRPC on the event loop."""
        handler = grpc.stream_stream_rpc_method_handler(
            self.StreamSnapshots,
            request_deserializer=None,
            response_serializer=pb.IngestAck.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(INGEST_SERVICE, {"StreamSnapshots": handler}),)
        )

    def close(self) -> None:
        """Stop the worker thread once the server stopped (what it was given is dropped)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def StreamSnapshots(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.IngestAck]:
        try:
            identity = self._identify(context)
        except PermissionError as error:
            await self._refuse(
                context, _Abort(grpc.StatusCode.UNAUTHENTICATED, str(error), RejectReason.IDENTITY)
            )
            return
        peer = peer_key(identity, context.peer())
        problem = self._admission.open(peer)
        if problem is not None:
            await self._refuse(
                context, _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem, RejectReason.LIMIT)
            )
            return
        stream = _Stream(next(self._ids), peer, identity)
        if stream.stream_id % FREEZE_EVERY_STREAMS == 0:
            freeze_when_grown()  # streams open by the thousand after a restart, and live on
        self._metrics.streams.inc()
        try:
            async for raw in request_iterator:
                self._metrics.messages.inc()
                work = asyncio.ensure_future(self._receive(stream, raw))
                del raw  # the parsed message is what waits its turn, not its bytes too
                try:
                    while not (await asyncio.wait((work,), timeout=self._heartbeat))[0]:
                        yield self._waiting_ack(stream)
                finally:
                    work.cancel()  # only when this stream ended while the snapshot waited
                ack = work.result()
                if isinstance(ack, _Abort):
                    await self._refuse(context, ack, stream)
                    return
                if ack is not None:
                    yield ack
                    if ack.redirect_address:
                        stream.redirected = True
                        return  # the agent continues with the owner
        except DecodeError as error:
            # Bytes that are not a NodeSnapshot (from _parse, through work.result()).  Before
            # the servicer parsed its messages itself, gRPC did, the error escaped, the stream
            # ended UNKNOWN and gRPC logged a traceback per such message.
            await self._refuse(
                context,
                _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a message that is not a NodeSnapshot: {error}",
                    RejectReason.MALFORMED,
                ),
                stream,
            )
            return
        except asyncio.CancelledError:
            return  # the agent went away or the server is stopping: nothing to answer
        finally:
            if not (stream.redirected and not stream.node):
                # A stream redirected before it took a node held nothing worth a full
                # collection (a start-up redirects half the agents: no reason to pause).
                self.ended_streams += 1
            self._metrics.streams.dec()
            self._admission.close(peer)
            self._drop_pending(stream)
            stream.assembler.reset()
            if stream.node and self._owner.get(stream.node) is stream:
                del self._owner[stream.node]
                if stream.connected:
                    self._accounting.set_connected(stream.node, False)

    async def _refuse(
        self, context: grpc.aio.ServicerContext[Any, Any], abort: _Abort, stream: _Stream | None = None
    ) -> None:
        self._metrics.stream_errors.labels(abort.code.name).inc()
        if abort.reason is not None:
            self._metrics.rejected.labels(abort.reason.value).inc()
        if stream is not None:
            stream.assembler.reset()  # before abort raises: its traceback keeps this frame alive
        peer = stream.peer if stream is not None else peer_address(context.peer())
        self._log_refusal(peer, abort.reason or RejectReason.MALFORMED, abort.message, stream)
        await context.abort(abort.code, abort.message)

    def _waiting_ack(self, stream: _Stream) -> pb.IngestAck:
        """An interim ack: the snapshot is heard and waits (see ``IngestAck.waiting``)."""
        self._metrics.waiting_acks.inc()
        if stream.held:  # (the hold may have just ended: its ack follows)
            waiting = self._queue.waiting
            return pb.IngestAck(
                sequence=max(0, stream.sequence - 1),
                waiting=True,
                queue_position=waiting,
                message=f"applied; its ack waits while {waiting} full snapshots wait their turn"
                if waiting
                else "applied; its ack follows",
            )
        position = stream.ticket.position if stream.ticket is not None else 0
        return pb.IngestAck(
            sequence=max(0, stream.sequence - 1),
            waiting=True,
            queue_position=position,
            message=f"{position} snapshots ahead of this one" if position else "being applied",
        )

    def _log_refusal(self, peer: str, reason: RejectReason, message: str, stream: _Stream | None) -> None:
        now = time.monotonic()
        key = (peer, reason)
        if now - self._last_logged.get(key, float("-inf")) < LOG_INTERVAL:
            return
        if len(self._last_logged) > 10_000:  # bounded whatever the number of peers
            self._last_logged.clear()
        self._last_logged[key] = now
        node = stream.node if stream is not None and stream.node else "?"
        log.warning("ingest from %s (node %s) refused, %s: %s", peer, node, reason.value, message)

    async def _parse(self, raw: bytes) -> pb.NodeSnapshot:
        """``raw`` as a NodeSnapshot (raises ``DecodeError``): on the event loop when small,
        in a worker thread from :data:`PARSE_INLINE_BELOW` bytes on."""
        if len(raw) < self._parse_inline_below:
            return pb.NodeSnapshot.FromString(raw)
        return await self._in_worker(pb.NodeSnapshot.FromString, raw)

    async def _receive(self, stream: _Stream, raw: bytes) -> pb.IngestAck | _Abort | None:
        """Handle one message; an ack when it completed a snapshot, an abort on bad input."""
        message = await self._parse(raw)
        del raw  # a full snapshot's bytes: a third of a MB and more, while it waits its turn
        stream.sequence = message.sequence
        if not message.node:
            return _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, "snapshot without a node name", RejectReason.MALFORMED
            )
        problem = self._access.ingest_problem(stream.identity, message.node)
        if problem is not None:
            return _Abort(grpc.StatusCode.PERMISSION_DENIED, problem, RejectReason.IDENTITY)
        redirect = self._redirect(stream, message)
        if redirect is not None:
            return redirect
        if stream.node:
            if message.node != stream.node:
                return _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"this stream belongs to node {stream.node!r}; got a snapshot for {message.node!r}",
                    RejectReason.MALFORMED,
                )
            if message.agent_instance_id != stream.instance_id:
                return _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "agent_instance_id changed within one stream",
                    RejectReason.MALFORMED,
                )
            if self._owner.get(stream.node) is not stream:
                return _Abort(
                    grpc.StatusCode.ABORTED, f"superseded by a newer stream for node {stream.node!r}"
                )
        try:
            whole = self._assemble(stream, message)
        except WireError as error:
            return self._bad_snapshot(message, error)
        if isinstance(whole, _Abort) or whole is None:
            return whole
        if not whole.full:
            ack = await self._decode_and_apply(stream, whole)
            if isinstance(ack, pb.IngestAck) and not ack.resync_requested:
                await self._hold(stream)
            return ack
        stream.ticket = self._queue.ticket()
        try:
            async with self._queue.turn(stream.ticket):
                return await self._decode_and_apply(stream, whole)
        finally:
            stream.ticket = None

    async def _decode_and_apply(self, stream: _Stream, whole: pb.NodeSnapshot) -> pb.IngestAck | _Abort:
        try:
            update = await self._offload(decode_snapshot, whole)
        except WireError as error:
            return self._bad_snapshot(whole, error)
        if not stream.node:
            taken = self._take_node(stream, update)
            if taken is not None:
                return taken
        return await self._apply(stream, update)

    async def _hold(self, stream: _Stream) -> None:
        """Hold an applied delta's ack while full snapshots wait (see :attr:`_delta_hold`)."""
        if self._delta_hold <= 0 or not self._queue.waiting:
            return
        stream.held = True
        started = time.monotonic()
        try:
            await self._queue.quiet(self._delta_hold)
        finally:
            stream.held = False
            self._metrics.held_acks.inc()
            self._metrics.held_seconds.inc(time.monotonic() - started)

    def _redirect(self, stream: _Stream, message: pb.NodeSnapshot) -> pb.IngestAck | None:
        """Sharded: the ack sending the agent to its node's owner, or None when this
        replica owns the node (see ``IngestAck.redirect_address``)."""
        if self.shard is None:
            return None
        target = self.shard.redirect_for(message.node)
        if target is None:
            return None
        self._drop_pending(stream)
        stream.assembler.reset()
        return pb.IngestAck(
            sequence=max(0, message.sequence - 1),
            redirect_address=target.address,
            redirect_owner=target.owner,
            message=f"node {message.node!r} belongs to aggregator {target.owner} at {target.address}",
        )

    def release_nodes(self, nodes: Iterable[str]) -> None:
        """Hand ``nodes`` over (they moved to another shard): the accountant forgets them
        and their streams, if any, are redirected at their next message."""
        nodes = list(nodes)
        for node in nodes:
            stream = self._owner.pop(node, None)
            if stream is not None:
                stream.connected = False  # its end must not mark the forgotten node again
        self._accounting.forget_nodes(nodes)

    def _bad_snapshot(self, message: pb.NodeSnapshot, error: WireError) -> _Abort:
        self._metrics.snapshots.labels("full" if message.full else "delta", "error").inc()
        return _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad snapshot: {error}", RejectReason.MALFORMED)

    def _assemble(self, stream: _Stream, message: pb.NodeSnapshot) -> pb.NodeSnapshot | _Abort | None:
        """Feed one message to the stream's assembler, holding its bytes while the
        snapshot is unfinished (and refusing what would exceed the byte caps)."""
        if message.chunk_count > 1:
            size = message.ByteSize()
            problem = self._admission.hold(stream.pending_bytes, size)
            if problem is not None:
                self._drop_pending(stream)
                return _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem, RejectReason.LIMIT)
            stream.pending_bytes += size
            self._metrics.pending_bytes.set(self._admission.pending_total)
        try:
            whole = stream.assembler.add(message)
        except WireError:
            self._drop_pending(stream)
            raise
        if whole is not None:
            self._drop_pending(stream)
        return whole

    def _drop_pending(self, stream: _Stream) -> None:
        if stream.pending_bytes:
            self._admission.release(stream.pending_bytes)
            stream.pending_bytes = 0
            self._metrics.pending_bytes.set(self._admission.pending_total)

    def _take_node(self, stream: _Stream, update: DecodedSnapshot) -> _Abort | None:
        """The stream claims its node with its first valid snapshot, not before: a stream
        that never sends one leaves no trace.  With identities checked, a stream of
        another identity cannot take a node over."""
        previous = self._owner.get(update.node)
        if (
            previous is not None
            and self._access.enforce
            and (previous.identity is None or stream.identity is None or previous.identity != stream.identity)
        ):
            return _Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {update.node!r} is reported by another identity's stream",
                RejectReason.IDENTITY,
            )
        stream.node, stream.instance_id = update.node, update.agent_instance_id
        self._owner[update.node] = stream
        return None

    async def _offload(self, function: Callable[..., _R], *args: Any, locking: bool = False) -> _R:
        """Run a large decode or apply in a worker thread, so Watch streams, health checks
        and small snapshots of other nodes keep being served meanwhile; also a small one
        that takes the accountant's lock (``locking``) while another thread holds it.  Still
        atomic: the accountant applies under its lock, and this stream waits for the result
        before reading its next message (so a node's snapshots apply in order)."""
        message = args[0]
        size = (
            message.size
            if isinstance(message, DecodedSnapshot)
            else len(message.counters) + len(message.values.ids)
        )
        if size < self._inline_below and not (locking and self._accounting.busy()):
            return function(*args)
        return await self._in_worker(function, *args)

    async def _in_worker(self, function: Callable[..., _R], *args: Any) -> _R:
        """``function(*args)`` in this servicer's one worker thread (see :attr:`_worker`)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    async def _apply(self, stream: _Stream, update: DecodedSnapshot) -> pb.IngestAck | _Abort:
        kind = "full" if update.full else "delta"
        started = time.perf_counter()
        try:
            hits = await self._offload(self._accounting.apply, update, self._clock(), locking=True)
        except SnapshotRefused as refused:
            if not refused.refusal.problem.is_sequence:
                self._metrics.snapshots.labels(kind, "error").inc()
                return _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(refused), RejectReason.LIMIT)
            self._connect(stream)
            self._metrics.snapshots.labels(kind, "resync").inc()
            key_ids = refused.refusal.problem.is_key_ids
            self._metrics.rejected.labels(
                (RejectReason.KEY_IDS if key_ids else RejectReason.SEQUENCE).value
            ).inc()
            if key_ids:
                self._log_refusal(stream.peer, RejectReason.KEY_IDS, str(refused), stream)
            return pb.IngestAck(
                sequence=update.sequence, resync_requested=True, message=str(refused), key_ids=self._key_ids
            )
        except Exception:  # a bug must cost this stream, not the server
            log.exception("applying snapshot %d of node %s failed", update.sequence, update.node)
            self._metrics.snapshots.labels(kind, "error").inc()
            return _Abort(
                grpc.StatusCode.INTERNAL, "the aggregator failed to apply the snapshot; see its log"
            )
        self._connect(stream)
        if self.shard is not None and not self.shard.owns(update.node):
            self.release_nodes([update.node])  # the membership changed while it was applied
        if update.full:  # what it added lives on: keep it out of automatic full collections
            if self._queue.waiting:
                # A storm: each full snapshot adds tens of thousands of objects, and counting
                # what is not frozen (a walk of them all, ~9 ms at 5,000 nodes) on the loop
                # before every freeze took 3.4 % of it (``bench/load_bench.py``, py-spy).
                freeze_long_lived()
            else:
                freeze_when_grown()
        self._metrics.apply_seconds.observe(time.perf_counter() - started)
        self._metrics.snapshots.labels(kind, "applied").inc()
        self._metrics.counters.inc(update.size)
        message = ""
        if update.invalid_counters:
            self._metrics.invalid_counters.inc(update.invalid_counters)
            message = f"skipped {update.invalid_counters} invalid counters: " + "; ".join(
                f"{reason} (x{count})" for reason, count in sorted(update.invalid_reasons.items())[:5]
            )
            log.warning("node %s: %s", update.node, message)
        if self._on_hits is not None and hits:
            try:
                self._on_hits(hits)
            except Exception:
                log.exception("publishing hits of node %s failed", update.node)
        return pb.IngestAck(sequence=update.sequence, message=message, key_ids=self._key_ids)

    def _connect(self, stream: _Stream) -> None:
        """Mark the stream's node connected once the ledger knows it (after its first
        applied, or sequence-refused, snapshot: a refused node is never created)."""
        if not stream.connected:
            stream.connected = True
            self._accounting.set_connected(stream.node, True)


def peer_key(identity: PeerIdentity | None, peer: str) -> str:
    """Whom a stream is counted for (stream caps, log lines): the identity, and for a token
    the node it names too, since every agent shares one ServiceAccount (its ``sub``);
    without an identity, the address."""
    if identity is None:
        return peer_address(peer)
    return f"{identity.subject} on node {identity.node}" if identity.node else identity.subject


def peer_address(peer: str) -> str:
    """``ipv4:10.0.0.1:51234`` / ``ipv6:[::1]:51234`` without the port: one peer per host."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")] or peer
    if kind == "ipv4":
        return rest.rpartition(":")[0] or peer
    return peer
