"""The agent's side of ``Ingest.StreamSnapshots``: one long-lived stream, changes only.

Protocol (see ``snapshot.proto``):

* every stream starts with a **full** snapshot of the newest read;
* then, per newer read, a **delta** against the state the aggregator last
  *acknowledged* (values are absolute, so a delta re-sent after a lost ack is harmless);
* one snapshot is in flight at a time (stop-and-wait on its ack): at one read per
  10 s this costs nothing, and it makes "the acknowledged state" unambiguous;
* an ack with ``resync_requested`` makes the next snapshot full again, on the same
  stream; if even a full snapshot is refused, its sequence is behind what the
  aggregator saw of this instance, and the agent continues as a new instance (new id,
  sequence from 1) on a new stream; any stream error or a missing ack reconnects, with
  jittered exponential backoff, and the new stream starts with a full snapshot;
* counters go dictionary-encoded (:mod:`calico_accountant.wire.keyed`) once the aggregator
  said it understands that (``IngestAck.key_ids``, in the ack of the stream's full snapshot):
  every full snapshot defines an id per key (ids stable for the instance; an aggregator
  that predates them ignores the field), and a delta sends a counter whose only change is
  its value as three numbers in packed columns; to an aggregator that does not advertise
  them, deltas stay whole counters;
* "missing" means no message within ``ack_timeout``: while the aggregator has the snapshot
  queued or applies it, it sends interim acks (``waiting``, the queue position) every few
  seconds, each restarting the timeout, so a reconnect storm after an aggregator restart
  cannot make agents give up and send their full snapshots again.  Before the first message
  of a stream the wait is ``first_ack_timeout`` (longer): when thousands of agents reconnect
  at once the aggregator takes their new streams up one after another, and a stream not yet
  taken up gets no interim ack (36.9 s for the last of 5,000, ``bench/load_bench.py``).  A
  dead connection is still noticed within the keepalive's time.

Sharded aggregators (``--shards``): an ack with ``redirect_address`` means the replica
reached does not own this node; the agent ends the stream and opens one to that address at
once (a full snapshot first).  At most ``max_redirects`` in a row (no applied snapshot in
between: replicas that disagree about the membership for a moment); then, and after any
stream error, it goes back to its configured address, with the usual backoff.

Reading never waits for the network: reads go into a :class:`LatestSlot`, which keeps
only the newest one, and the streamer takes whatever is newest when it is ready to send.
A slow or absent aggregator therefore costs memory for one read, not a growing queue.

With a token file (a projected ServiceAccount token) every stream carries it as
``authorization: Bearer`` metadata, read from the file at every (re)connect: the kubelet
rewrites the file well before the token expires, and the aggregator checks the token
when a stream opens.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import grpc
import grpc.aio

from calico_accountant import __version__
from calico_accountant.records import CounterKey, CounterRecord
from calico_accountant.runtime.client_tls import ClientTls, TlsFileError, open_aio_channel
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.v1 import snapshot_pb2_grpc as pb_grpc
from calico_accountant.wire.bounds import DEFAULT_MAX_MESSAGE_BYTES
from calico_accountant.wire.chunks import split_snapshot
from calico_accountant.wire.keyed import KeyIds, encode_read
from calico_accountant.wire.snapshots import build_snapshot
from node_agent.health import AgentMetrics, AgentStatus
from node_agent.reader import NodeRead

__all__ = [
    "LatestSlot",
    "Redirected",
    "StreamBroken",
    "Streamer",
    "StreamerConfig",
    "backoff_delay",
    "bearer_metadata",
    "channel_options",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item mailbox where a newer item replaces an unconsumed older one."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._fresh = False
        self._event = asyncio.Event()

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced one nobody had taken yet."""
        replaced = self._fresh
        self._item, self._fresh = item, True
        self._event.set()
        return replaced

    def latest(self) -> T | None:
        """The newest item ever put (taken or not), without waiting."""
        return self._item

    def take_latest(self) -> T | None:
        """The newest item ever put (taken or not), marking it taken; None if none yet.
        A new stream starts from this: its full snapshot covers the newest read."""
        self._fresh = False
        return self._item

    async def take(self) -> T:
        """Wait for an item not taken before, and take it."""
        while not self._fresh:
            self._event.clear()
            await self._event.wait()
        self._fresh = False
        assert self._item is not None
        return self._item


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [initial/2, min(maximum, initial*2**attempt)],
    so agents that lost the same aggregator do not come back in lockstep."""
    ceiling = min(maximum, initial * (2 ** min(attempt, 32)))
    return rng.uniform(min(initial / 2, ceiling), ceiling)


@dataclass(frozen=True, slots=True)
class StreamerConfig:
    target: str
    """``HOST:PORT`` of the aggregator."""
    node: str
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Sent and received messages are capped at this (set explicitly on both sides)."""
    chunk_bytes: int = DEFAULT_MAX_MESSAGE_BYTES - 64 * 1024
    """Snapshots larger than this are sent in chunks."""
    ack_timeout: float = 30.0
    first_ack_timeout: float = 120.0
    """The wait for the first message of a new stream (see the module docstring)."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    keepalive_time_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000
    tls: ClientTls | None = None
    """None: plaintext.  The files are read at every (re)connect (a renewed certificate is
    used from the next connection on)."""
    token_file: str | None = None
    """A ServiceAccount token to send with every stream, re-read at each connect."""
    max_redirects: int = 3
    """Redirects followed in a row before going back to ``target`` (see the module docstring)."""


def channel_options(config: StreamerConfig) -> list[tuple[str, int]]:
    """gRPC channel options: explicit size limits and keepalives (so a dead aggregator or
    a silently dropped connection is noticed while the stream is idle between reads)."""
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect attempts are ours (with jitter); keep gRPC's own short.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


class StreamBroken(RuntimeError):
    """The stream ended or stopped answering; reconnect."""


class Redirected(Exception):
    """A sharded aggregator sent this node to the replica that owns it."""

    def __init__(self, address: str, owner: str, message: str) -> None:
        super().__init__(message)
        self.address = address
        self.owner = owner


def bearer_metadata(token_file: str | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying the token in ``token_file`` as it is now (None without one)."""
    if token_file is None:
        return None
    try:
        token = Path(token_file).read_text().strip()
    except OSError as error:
        raise StreamBroken(f"cannot read the token file {token_file}: {error.strerror or error}") from None
    if not token:
        raise StreamBroken(f"the token file {token_file} is empty")
    return (("authorization", f"Bearer {token}"),)


class Streamer:
    """Ships reads from a :class:`LatestSlot` to the aggregator until cancelled."""

    def __init__(
        self,
        config: StreamerConfig,
        slot: LatestSlot[NodeRead],
        *,
        metrics: AgentMetrics | None = None,
        status: AgentStatus | None = None,
        instance_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.slot = slot
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.status = status
        self.instance_id = instance_id or uuid.uuid4().hex
        self.key_ids = KeyIds()
        """This instance's id per counter key (a new instance starts a new table)."""
        self.peer_key_ids = False
        """The aggregator of the current stream advertised key ids (``IngestAck.key_ids``)."""
        self._heard = False
        """The current stream's aggregator has sent a message (an ack, interim or not)."""
        self._rng = rng if rng is not None else random.Random()
        self.sequence = 0
        self.sessions = 0
        self.acked_sequence = 0
        self.target = config.target
        """Where the next stream goes: ``config.target``, or the owner a redirect named."""
        self.connected_to = config.target
        """Where the current (or last) stream went."""

    async def run(self) -> None:
        """Connect, stream, reconnect; returns only by cancellation."""
        attempt = 0
        redirects = 0
        while True:
            acked_before = self.acked_sequence
            target, self.target = self.target, self.config.target  # any failure: back to the configured one
            try:
                self.connected_to = target
                async with open_aio_channel(target, self.config.tls, channel_options(self.config)) as ch:
                    await self._session(ch)
            except Redirected as redirect:
                redirects = 0 if self.acked_sequence > acked_before else redirects + 1
                if redirects <= self.config.max_redirects:
                    self.metrics.redirects.labels("followed").inc()
                    log.info("aggregator %s redirects to %s: %s", target, redirect.address, redirect)
                    self.target = redirect.address
                    self._set_connected(False)
                    continue
                self.metrics.redirects.labels("fallback").inc()
                redirects = 0
                log.warning(
                    "%d redirects in a row (last: %s); back to %s",
                    self.config.max_redirects + 1,
                    redirect,
                    self.config.target,
                )
            except TlsFileError as error:  # mid-rotation, or a Secret not mounted yet
                self.metrics.stream_errors.labels("TLS_FILES").inc()
                log.warning("cannot connect to %s: %s", target, error)
            except grpc.aio.AioRpcError as error:
                self.metrics.stream_errors.labels(error.code().name).inc()
                log.warning(
                    "ingest stream to %s failed: %s %s",
                    target,
                    error.code().name,
                    error.details(),
                )
            except StreamBroken as error:
                self.metrics.stream_errors.labels("BROKEN").inc()
                log.warning("ingest stream to %s broke: %s", target, error)
            except (asyncio.InvalidStateError, grpc.RpcError) as error:  # the call ended under us
                self.metrics.stream_errors.labels("FINISHED").inc()
                log.warning("ingest stream to %s ended: %s", target, error)
            except Exception:  # a bug must cost a reconnect, not the agent
                self.metrics.stream_errors.labels("ERROR").inc()
                log.exception("ingest stream to %s failed unexpectedly", target)
            finally:
                self._set_connected(False)
            if self.acked_sequence > acked_before:
                attempt = redirects = 0
            delay = backoff_delay(attempt, self.config.backoff_initial, self.config.backoff_max, self._rng)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, channel: grpc.aio.Channel) -> None:
        stub = pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamSnapshots(metadata=bearer_metadata(self.config.token_file))
        self.sessions += 1
        if self.sessions > 1:
            self.metrics.reconnects.inc()
        acked: Mapping[CounterKey, CounterRecord] | None = None  # None: next one is full
        self.peer_key_ids = False  # until this stream's aggregator says otherwise
        self._heard = False  # nothing from this stream's aggregator yet
        current = self.slot.take_latest()
        if current is None:
            current = await self.slot.take()
        try:
            while True:
                was_full = acked is None
                acked = await self._send_and_confirm(call, current, acked)
                if was_full:
                    log.info(
                        "aggregator %s acknowledged full snapshot %d (%d counters)",
                        self.connected_to,
                        self.sequence,
                        len(current.records),
                    )
                self._set_connected(True)
                if acked is None and not was_full:
                    continue  # resync asked after a delta: resend this read in full at once
                current = await self.slot.take()
        finally:
            call.cancel()

    async def _send_and_confirm(
        self,
        call: grpc.aio.StreamStreamCall[pb.NodeSnapshot, pb.IngestAck],
        read: NodeRead,
        acked: Mapping[CounterKey, CounterRecord] | None,
    ) -> Mapping[CounterKey, CounterRecord] | None:
        """Send one snapshot (full when ``acked`` is None) and wait for its ack; returns
        the new acknowledged state (None when the aggregator asked for a resync)."""
        self.sequence += 1
        full = acked is None
        encoded = encode_read(self.key_ids, acked, read.records, by_id=self.peer_key_ids)
        snapshot = build_snapshot(
            node=self.config.node,
            agent_instance_id=self.instance_id,
            sequence=self.sequence,
            read_time=read.read_time,
            full=full,
            records=encoded.defined,
            removed=encoded.removed,
            sources=read.sources,
            diagnostic_counts=read.diagnostic_totals,
            diagnostics=read.result.diagnostics[:20],
            agent_version=__version__,
            key_ids=encoded.defined_ids,
            values=encoded.values,
            removed_ids=encoded.removed_ids,
        )
        chunks = split_snapshot(snapshot, self.config.chunk_bytes)
        for chunk in chunks:
            await call.write(chunk)
        self.metrics.messages_sent.inc(len(chunks))
        self.metrics.snapshots_sent.labels("full" if full else "delta").inc()
        self.metrics.counters_sent.inc(len(encoded.defined) + len(encoded.values))
        while True:
            timeout = self.config.ack_timeout if self._heard else self.config.first_ack_timeout
            try:
                ack = await asyncio.wait_for(call.read(), timeout)
            except TimeoutError:
                raise StreamBroken(f"no ack for snapshot {self.sequence} in {timeout:g} s") from None
            self._heard = True
            if not isinstance(ack, pb.IngestAck):  # grpc.aio.EOF
                raise StreamBroken("the aggregator closed the stream")
            if ack.redirect_address:
                raise Redirected(ack.redirect_address, ack.redirect_owner, ack.message)
            if ack.waiting:
                # Heard, and waiting its turn (after an aggregator restart every agent's full
                # snapshot arrives at once): each interim ack restarts the ack timeout.
                self.metrics.queue_position.set(ack.queue_position)
                continue
            if ack.sequence < self.sequence and not ack.resync_requested:
                continue  # an ack of an older snapshot; ours is still to come
            break
        self.acked_sequence = self.sequence
        self.peer_key_ids = ack.key_ids
        self.metrics.queue_position.set(0)
        if self.status is not None:
            self.status.ever_acked = True
        self.metrics.last_ack.set(time.time())
        if ack.resync_requested:
            self.metrics.resyncs.inc()
            log.info("aggregator asked for a full resync: %s", ack.message or "(no reason given)")
            if full:
                # Even a full snapshot is out of sequence: the aggregator has seen a later
                # sequence of this instance (a restored checkpoint, or someone else using
                # our instance id).  A new instance starts a new sequence; kernel counters
                # did not reset, so nothing is counted twice.
                self.instance_id = uuid.uuid4().hex
                self.key_ids = KeyIds()
                self.sequence = 0
                raise StreamBroken(f"full snapshot refused ({ack.message}); continuing as a new instance")
            return None
        return read.records

    def _set_connected(self, up: bool) -> None:
        self.metrics.connected.set(1 if up else 0)
        if self.status is not None:
            self.status.stream_up = up
