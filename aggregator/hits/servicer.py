"""The ``PolicyHits`` gRPC service: ``Watch``, ``Snapshot``, ``ListNodes``, ``ServerStatus``.

Only the RPC edge lives here: validating requests (a bad filter or a negative ``since``
is INVALID_ARGUMENT), and turning the hub's batches and the accountant's totals and node
views into responses.  The reads of the accountant take its lock, so they run in a worker
thread: a large ``Snapshot`` never stalls the loop that ingests snapshots and feeds
``Watch`` streams.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
import grpc.aio

from aggregator.hits.convert import counter_to_hit, policy_names
from aggregator.hits.filters import HitFilterSpec, ReplayWindow
from aggregator.hits.hub import HitHub
from aggregator.series.views import NodeView, ResolvedTotal
from aggregator.trust.access import AccessRules
from aggregator.trust.identity import Identify, PeerIdentity, no_identity
from calico_accountant import __version__
from calico_accountant.contract import HITS_API_VERSION, HITS_FEATURES
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc

__all__ = ["HitsState", "PolicyHitsServicer"]


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
        access: AccessRules | None = None,
        identify: Identify = no_identity,
    ) -> None:
        self._access = access or AccessRules()
        self._identify = identify
        self._hub = hub
        self._state = state
        self._clock = clock
        self._started = started if started is not None else clock()
        self._version = version

    async def Watch(
        self, request: hpb.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[hpb.HitBatch]:
        await self._admit(context)
        spec = await _filter_or_abort(request.filter, request.exclude, context)
        try:
            window = ReplayWindow.from_request(request)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise  # not reached: abort raises
        try:
            async for batch in self._hub.watch(spec, window, request.follow):
                yield batch
        except asyncio.CancelledError:
            return  # the consumer went away or the server is stopping

    async def Snapshot(
        self, request: hpb.SnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hpb.SnapshotResponse:
        await self._admit(context)
        spec = await _filter_or_abort(request.filter, request.exclude, context)
        now = datetime.now(UTC)
        totals = await asyncio.to_thread(self._state.totals)
        response = hpb.SnapshotResponse()
        response.time.FromDatetime(now)
        for total in totals:
            if spec.matches(total.counter, total.packets, functools.partial(policy_names, total.counter)):
                response.totals.append(counter_to_hit(total.counter, total.packets, total.bytes, now))
        return response

    async def ListNodes(
        self, request: hpb.ListNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> hpb.ListNodesResponse:
        identity = await self._admit(context)
        show_instances = self._access.shows_instance_ids(identity)
        response = hpb.ListNodesResponse()
        for view in await asyncio.to_thread(self._state.node_views, self._clock()):
            status = hpb.NodeStatus(
                node=view.node,
                connected=view.connected,
                agent_instance_id=view.instance_id if show_instances else "",
                sequence=view.sequence,
                stale=view.stale,
                dataplanes=list(view.dataplanes),  # type: ignore[arg-type]
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
        await self._admit(context)
        views = await asyncio.to_thread(self._state.node_views, self._clock())
        response = hpb.ServerStatusResponse(
            agents_connected=sum(1 for v in views if v.connected),
            nodes_known=len(views),
            version=self._version,
            api_version=HITS_API_VERSION,
            features=HITS_FEATURES,
        )
        response.uptime.FromSeconds(int(max(0.0, self._clock() - self._started)))
        return response

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> PeerIdentity | None:
        """The caller's identity, or the call ends ``PERMISSION_DENIED`` when it may not
        use the consumer API (``UNAUTHENTICATED`` for an invalid credential)."""
        try:
            identity = self._identify(context)
        except PermissionError as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
            raise  # not reached: abort raises
        if not self._access.may_consume(identity):
            who = str(identity) if identity is not None else "a caller without a verified identity"
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who} may not use the policy-hit API")
        return identity


async def _filter_or_abort(
    message: hpb.HitFilter, exclude: Sequence[hpb.HitFilter], context: grpc.aio.ServicerContext[Any, Any]
) -> HitFilterSpec:
    try:
        return HitFilterSpec.from_request(message, exclude)
    except ValueError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad filter: {error}")
        raise  # not reached: abort raises
