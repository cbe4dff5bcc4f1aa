"""The policy-hit API: ``Watch`` fan-out, ``Snapshot``, ``ListNodes``, ``ServerStatus``.

A *hit* is the increase of one resolved counter between two snapshots of a node.
:class:`HitHub` receives every applied snapshot's increases from ingest, keeps a recent
window for ``since`` replays (bounded by age *and* count), and offers them to every
``Watch`` stream through that stream's own bounded buffer.

A slow consumer never slows ingest or other consumers: :meth:`HitHub.publish` only
appends to buffers and never waits.  When a consumer's buffer is full, the hits that do
not fit are dropped *for that consumer*, and it finds, at the place in its stream where
they would have been, a ``HitBatch`` with ``lost = N`` (as Hubble reports lost events);
``calico_accountant_hits_lost_total`` counts them.

Not hits: zero increases (a series being created) and the increases of a node's first
snapshot after the aggregator started (``initial``: traffic since the rule was created,
already history).  Their totals are in ``Snapshot`` and in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.model import ResolvedCounter
from aggregator.series.views import NodeView, ResolvedIncrease, ResolvedTotal
from calico_accountant import __version__
from calico_accountant.records import Direction, Kind, Verdict
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb

__all__ = [
    "API_VERSION",
    "HitFilterSpec",
    "HitHub",
    "HitMetrics",
    "HitsState",
    "PolicyHitsServicer",
    "counter_to_hit",
]

log = logging.getLogger(__name__)

#: ``ServerStatus.api_version``: 1 for ``calico_accountant.v1``.
API_VERSION = 1

#: Hits per ``HitBatch`` message (about 150 bytes each: well under any message limit).
MAX_HITS_PER_BATCH = 1000

_KIND_TO_PB: dict[Kind, spb.CounterKind] = {
    Kind.POLICY_ACCEPT: spb.POLICY_ACCEPT,
    Kind.POLICY_DENY: spb.POLICY_DENY,
    Kind.NO_POLICY_DROP: spb.NO_POLICY_DROP,
    Kind.PROFILE_ACCEPT: spb.PROFILE_ACCEPT,
    Kind.NO_PROFILE_DROP: spb.NO_PROFILE_DROP,
    Kind.POLICY_RULE: spb.POLICY_RULE,
}
_DIRECTION_TO_PB = {Direction.INGRESS: spb.INGRESS, Direction.EGRESS: spb.EGRESS}
DIRECTIONS = frozenset({"ingress", "egress"})


# --- converting -------------------------------------------------------------------------


def counter_to_hit(counter: ResolvedCounter, packets: int, octets: int, moment: datetime) -> hpb.Hit:
    """A resolved counter with an amount (an increase or a total) as a ``Hit``."""
    key = counter.key
    workload = counter.workload
    hit = hpb.Hit(
        node=counter.node,
        namespace=workload.namespace if workload else "",
        pod=workload.pod if workload else "",
        app=workload.app if workload else "",
        interface=key.interface,
        direction=_DIRECTION_TO_PB[key.direction],
        verdict=counter.verdict,
        kind=_KIND_TO_PB[key.kind],
        profile=counter.profile.name if counter.profile else "",
        packets=packets,
        bytes=octets,
    )
    if counter.policy is not None:
        policy = counter.policy
        hit.policy.CopyFrom(
            hpb.PolicyRef(
                kind=policy.kind,
                namespace=policy.namespace,
                name=policy.name,
                tier=counter.tier,
                stored_name=policy.stored_name,
            )
        )
    hit.time.FromDatetime(moment.astimezone(UTC))
    return hit


def _policy_names(counter: ResolvedCounter) -> frozenset[str]:
    """Every name a ``policy`` filter may use for this counter: name, namespace/name, the
    stored name, the raw chain, and the same for each member of a policy group."""
    names: set[str] = set()
    policies = list(counter.group.policies) if counter.group is not None else []
    if counter.policy is not None:
        policies.append(counter.policy)
    for policy in policies:
        names.update(p for p in (policy.name, policy.stored_name) if p)
        if policy.namespace:
            names.add(f"{policy.namespace}/{policy.name}")
    if counter.key.chain and counter.policy is not None:
        names.add(counter.key.chain)
    return frozenset(names)


class _Entry:
    """One hit as kept and fanned out.  The ``Hit`` message and the policy names filters
    use are built on first need only: a busy node yields ~100k increases per read, most
    of which no consumer ever asks for."""

    __slots__ = ("_hit", "_names", "increase", "received")

    def __init__(self, increase: ResolvedIncrease, received: float) -> None:
        self.increase = increase
        self.received = received
        """Aggregator wall time of arrival: what ``since`` is measured against."""
        self._hit: hpb.Hit | None = None
        self._names: frozenset[str] | None = None

    @property
    def hit(self) -> hpb.Hit:
        if self._hit is None:
            increase = self.increase
            self._hit = counter_to_hit(increase.counter, increase.packets, increase.bytes, increase.time)
        return self._hit

    @property
    def policy_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = _policy_names(self.increase.counter)
        return self._names


# --- filters ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HitFilterSpec:
    """A validated ``HitFilter``: values within one field are alternatives (OR), fields
    combine with AND; an empty field matches everything."""

    nodes: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    pods: frozenset[str] = frozenset()
    """``pod`` or ``namespace/pod``."""
    apps: frozenset[str] = frozenset()
    policies: frozenset[str] = frozenset()
    """``name``, ``namespace/name``, the stored name, or the raw chain."""
    verdicts: frozenset[Verdict] = frozenset()
    directions: frozenset[str] = frozenset()
    min_packets: int = 0

    @classmethod
    def from_pb(cls, message: hpb.HitFilter) -> HitFilterSpec:
        """Validates; :class:`ValueError` says which value is wrong."""
        known = {verdict.value: verdict for verdict in Verdict}
        asked = {v.lower() for v in message.verdict}
        if asked - known.keys():
            raise ValueError(f"unknown verdict {sorted(asked - known.keys())}; use one of {sorted(known)}")
        verdicts = frozenset(known[v] for v in asked)
        directions = frozenset(d.lower() for d in message.direction)
        if directions - DIRECTIONS:
            raise ValueError(f"unknown direction {sorted(directions - DIRECTIONS)}; use ingress or egress")
        return cls(
            nodes=frozenset(message.node),
            namespaces=frozenset(message.namespace),
            pods=frozenset(message.pod),
            apps=frozenset(message.app),
            policies=frozenset(message.policy),
            verdicts=verdicts,
            directions=directions,
            min_packets=message.min_packets,
        )

    def matches(
        self, counter: ResolvedCounter, packets: int, policy_names: Callable[[], frozenset[str]]
    ) -> bool:
        """Whether a counter with this amount passes; ``policy_names`` is called only
        when a policy filter is set (building the names costs more than the rest)."""
        if packets < self.min_packets:
            return False
        if self.nodes and counter.node not in self.nodes:
            return False
        workload = counter.workload
        namespace = workload.namespace if workload is not None else ""
        pod = workload.pod if workload is not None else ""
        if self.namespaces and namespace not in self.namespaces:
            return False
        if self.pods and pod not in self.pods and f"{namespace}/{pod}" not in self.pods:
            return False
        if self.apps and (workload.app if workload is not None else "") not in self.apps:
            return False
        if self.verdicts and counter.verdict not in self.verdicts:
            return False
        if self.directions and counter.key.direction.value not in self.directions:
            return False
        return not (self.policies and not (self.policies & policy_names()))

    @property
    def everything(self) -> bool:
        """No condition at all (the common ``observe --follow``): skip per-hit checks."""
        return not (
            self.nodes
            or self.namespaces
            or self.pods
            or self.apps
            or self.policies
            or self.verdicts
            or self.directions
            or self.min_packets
        )

    def matches_entry(self, entry: _Entry) -> bool:
        return self.matches(entry.increase.counter, entry.increase.packets, lambda: entry.policy_names)


# --- fan-out --------------------------------------------------------------------------------


class HitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "calico_accountant_hits_published", "Hits produced by applied snapshots.", registry=registry
        )
        self.lost = Counter(
            "calico_accountant_hits_lost",
            "Hits dropped for Watch consumers that fell behind (each consumer was told how many).",
            registry=registry,
        )
        self.watchers = Gauge(
            "calico_accountant_hits_watch_streams", "Open Watch streams.", registry=registry
        )
        self.window = Gauge(
            "calico_accountant_hits_window", "Hits kept for `since` replays right now.", registry=registry
        )


class _Subscriber:
    """One Watch stream's bounded buffer: batches of hits and lost-N markers, in order."""

    def __init__(self, spec: HitFilterSpec, capacity: int) -> None:
        self.spec = spec
        self.capacity = capacity
        self.items: deque[list[_Entry] | int] = deque()
        self.buffered = 0
        self.lost = 0
        self.wakeup = asyncio.Event()
        self.closed = False

    def offer(self, hits: list[_Entry]) -> int:
        """Buffer what fits; returns how many were lost."""
        room = self.capacity - self.buffered
        kept = hits[: max(room, 0)]
        dropped = len(hits) - len(kept)
        if kept:
            self.items.append(kept)
            self.buffered += len(kept)
        if dropped:
            if self.items and isinstance(self.items[-1], int):
                self.items[-1] += dropped
            else:
                self.items.append(dropped)
            self.lost += dropped
        if kept or dropped:
            self.wakeup.set()
        return dropped

    def drain(self) -> list[hpb.HitBatch]:
        """Everything buffered as messages (hits merged up to the batch size)."""
        out: list[hpb.HitBatch] = []
        pending: list[hpb.Hit] = []
        while self.items:
            item = self.items.popleft()
            if isinstance(item, int):
                if pending:
                    out.extend(_batches(pending))
                    pending = []
                out.append(hpb.HitBatch(lost=item))
            else:
                self.buffered -= len(item)
                pending.extend(entry.hit for entry in item)
        if pending:
            out.extend(_batches(pending))
        self.wakeup.clear()
        return out


def _batches(hits: Sequence[hpb.Hit]) -> Iterable[hpb.HitBatch]:
    for start in range(0, len(hits), MAX_HITS_PER_BATCH):
        yield hpb.HitBatch(hits=hits[start : start + MAX_HITS_PER_BATCH])


class HitHub:
    """Recent hits and the Watch subscribers; mutated only from the asyncio loop."""

    def __init__(
        self,
        *,
        window_seconds: float = 600.0,
        window_hits: int = 100_000,
        buffer_hits: int = 10_000,
        metrics: HitMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_seconds < 0 or window_hits < 0 or buffer_hits <= 0:
            raise ValueError("window bounds must be >= 0 and the buffer > 0")
        self.window_seconds = window_seconds
        self.window_hits = window_hits
        self.buffer_hits = buffer_hits
        self.metrics = metrics if metrics is not None else HitMetrics(CollectorRegistry())
        self._clock = clock
        self._window: deque[_Entry] = deque(maxlen=window_hits or None)
        self._subscribers: set[_Subscriber] = set()

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def publish(self, increases: Iterable[ResolvedIncrease]) -> int:
        """Turn increases into hits, keep them, offer them to every subscriber; never
        waits.  Returns the number of hits."""
        now = self._clock()
        entries = [
            _Entry(increase, now)
            for increase in increases
            if not increase.initial and (increase.packets or increase.bytes)
        ]
        if not entries:
            return 0
        if self.window_hits:
            self._window.extend(entries)
        self._prune(now)
        self.metrics.window.set(len(self._window))
        self.metrics.published.inc(len(entries))
        for subscriber in self._subscribers:
            spec = subscriber.spec
            matching = entries if spec.everything else [e for e in entries if spec.matches_entry(e)]
            if matching:
                lost = subscriber.offer(matching)
                if lost:
                    self.metrics.lost.inc(lost)
        return len(entries)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._window and self._window[0].received < horizon:
            self._window.popleft()

    def recent(self, spec: HitFilterSpec, since: float | None) -> list[hpb.Hit]:
        """Kept hits matching ``spec`` that arrived within ``since`` seconds (all kept
        hits when None)."""
        now = self._clock()
        self._prune(now)
        horizon = now - since if since is not None else float("-inf")
        return [e.hit for e in self._window if e.received >= horizon and spec.matches_entry(e)]

    def subscribe(self, spec: HitFilterSpec, capacity: int | None = None) -> _Subscriber:
        subscriber = _Subscriber(spec, capacity or self.buffer_hits)
        self._subscribers.add(subscriber)
        self.metrics.watchers.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.closed = True
        self.metrics.watchers.set(len(self._subscribers))

    async def watch(
        self, spec: HitFilterSpec, since: float | None, follow: bool
    ) -> AsyncIterator[hpb.HitBatch]:
        """The messages of one Watch: the replay, then (``follow``) live hits."""
        # Subscribe and copy the window with no await in between: no hit is both
        # replayed and delivered live, and none falls between the two.
        subscriber = self.subscribe(spec) if follow else None
        replay = self.recent(spec, since) if (since is not None or not follow) else []
        try:
            for batch in _batches(replay):
                yield batch
            if subscriber is None:
                return
            while True:
                await subscriber.wakeup.wait()
                for batch in subscriber.drain():
                    yield batch
        finally:
            if subscriber is not None:
                self.unsubscribe(subscriber)


# --- the servicer ---------------------------------------------------------------------------


class HitsState(Protocol):
    """What the read-only RPCs need (:class:`aggregator.accountant.Accountant`)."""

    def totals(self) -> list[ResolvedTotal]: ...

    def node_views(self, now: float) -> list[NodeView]: ...


class PolicyHitsServicer(hpb_grpc.PolicyHitsServicer):
    def __init__(
        self,
        hub: HitHub,
        state: HitsState,
        *,
        started: float | None = None,
        version: str = __version__,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hub = hub
        self._state = state
        self._clock = clock
        self._started = started if started is not None else clock()
        self._version = version

    async def Watch(
        self, request: hpb.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[hpb.HitBatch]:
        spec = await _filter_or_abort(request.filter, context)
        since: float | None = None
        if request.HasField("since"):
            since = request.since.ToTimedelta().total_seconds()
            if since < 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "since must not be negative")
        try:
            async for batch in self._hub.watch(spec, since, request.follow):
                yield batch
        except asyncio.CancelledError:
            return  # the consumer went away or the server is stopping

    async def Snapshot(
        self, request: hpb.SnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hpb.SnapshotResponse:
        spec = await _filter_or_abort(request.filter, context)
        now = datetime.now(UTC)
        totals = await asyncio.to_thread(self._state.totals)
        response = hpb.SnapshotResponse()
        response.time.FromDatetime(now)
        for total in totals:
            if spec.matches(total.counter, total.packets, functools.partial(_policy_names, total.counter)):
                response.totals.append(counter_to_hit(total.counter, total.packets, total.bytes, now))
        return response

    async def ListNodes(
        self, request: hpb.ListNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hpb.ListNodesResponse:
        response = hpb.ListNodesResponse()
        for view in await asyncio.to_thread(self._state.node_views, self._clock()):
            status = hpb.NodeStatus(
                node=view.node,
                connected=view.connected,
                agent_instance_id=view.instance_id,
                sequence=view.sequence,
                stale=view.stale,
            )
            if view.read_time:
                status.last_snapshot_time.FromDatetime(datetime.fromtimestamp(view.read_time, UTC))
            for code, count in view.diagnostic_totals.items():
                status.diagnostic_counts[code] = count
            response.nodes.append(status)
        return response

    async def ServerStatus(
        self, request: hpb.ServerStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hpb.ServerStatusResponse:
        views = await asyncio.to_thread(self._state.node_views, self._clock())
        response = hpb.ServerStatusResponse(
            agents_connected=sum(1 for v in views if v.connected),
            nodes_known=len(views),
            version=self._version,
            api_version=API_VERSION,
        )
        response.uptime.FromSeconds(int(max(0.0, self._clock() - self._started)))
        return response


async def _filter_or_abort(
    message: hpb.HitFilter, context: grpc.aio.ServicerContext[Any, Any]
) -> HitFilterSpec:
    try:
        return HitFilterSpec.from_pb(message)
    except ValueError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad filter: {error}")
        raise  # not reached: abort raises
