"""Who takes part in sharding: the interface each backend implements, and its metrics.

A backend registers this replica (identity and advertised gRPC address) so that it stays
registered only while the replica lives (an etcd lease, a ``coordination.k8s.io`` Lease
renewed in time), and keeps a current view of every registered replica.  Each view is a
:class:`~aggregator.shard.ring.Ring`; listeners hear of every changed view, in the event
loop, and act on it (:class:`aggregator.shard.router.ShardRouter` hands over the nodes that
moved).

This replica is always part of its own view, registered yet or not: a replica never
redirects a node to nobody, and the others learn of it at its next registration.  When the
backend cannot be reached the last view stays (a partitioned replica keeps its nodes;
agents it cannot serve reconnect to the Service and are redirected by the others).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.shard.ring import Member, Ring

__all__ = ["Membership", "MembershipMetrics", "ViewKeeper"]

log = logging.getLogger(__name__)


class Membership(Protocol):
    @property
    def ring(self) -> Ring:
        """The current view (this replica included)."""

    def add_listener(self, listener: Callable[[Ring, Ring], None]) -> None:
        """Call ``listener(previous, current)`` at every change of the view."""

    async def start(self) -> None:
        """Register, read the first view, and keep both current until :meth:`close`."""

    async def close(self) -> None:
        """Deregister at once (the others take this replica's nodes) and release connections."""

    def describe(self) -> str:
        """Where the membership is kept, for logs."""


class MembershipMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.members = Gauge(
            "calico_accountant_shard_members",
            "Aggregator replicas in this replica's view of the shard membership (itself included).",
            registry=registry,
        )
        self.changes = Counter(
            "calico_accountant_shard_membership_changes_total",
            "Changes of this replica's view of the shard membership.",
            registry=registry,
        )
        self.errors = Counter(
            "calico_accountant_shard_membership_errors_total",
            "Failed registrations or membership reads (retried; the last view is kept).",
            registry=registry,
        )


class ViewKeeper:
    """The part every backend shares: the current ring, change detection, listeners."""

    def __init__(self, me: Member, metrics: MembershipMetrics | None = None) -> None:
        self.me = me
        self.metrics = metrics if metrics is not None else MembershipMetrics(CollectorRegistry())
        self.ring = Ring.of([me])
        self.metrics.members.set(1)
        self._listeners: list[Callable[[Ring, Ring], None]] = []

    def add_listener(self, listener: Callable[[Ring, Ring], None]) -> None:
        self._listeners.append(listener)

    def update(self, members: Iterable[Member], where: str) -> bool:
        """Take a freshly read member set (this replica added when missing); True when changed."""
        seen = {member.identity: member for member in members}
        seen[self.me.identity] = self.me
        if dict(self.ring.members) == seen:
            return False
        previous, self.ring = self.ring, Ring.of(seen.values())
        self.metrics.members.set(len(seen))
        self.metrics.changes.inc()
        log.info("shard membership %s: %s", where, self.ring.describe())
        for listener in self._listeners:
            try:
                listener(previous, self.ring)
            except Exception:  # a listener's bug must not stop the view from being kept
                log.exception("shard membership listener failed")
        return True
