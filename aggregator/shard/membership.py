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

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.shard.ring import Member, Ring

__all__ = ["Membership", "MembershipMetrics", "PolledMembership", "ViewKeeper"]

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


class PolledMembership(abc.ABC):
    """What every backend does the same way: one round at :meth:`start`, then one every
    ``interval`` seconds; a round that fails with one of :attr:`TRANSIENT` is counted,
    logged and retried at the next, the last view kept meanwhile."""

    TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(
        self, me: Member, ttl: int, interval: float | None, metrics: MembershipMetrics | None
    ) -> None:
        if ttl < 2:
            raise ValueError(f"the shard lease TTL must be at least 2 seconds, not {ttl}")
        self.ttl = ttl
        self.interval = interval if interval is not None else min(1.0, ttl / 3)
        self.view = ViewKeeper(me, metrics)
        self._task: asyncio.Task[None] | None = None

    @property
    def ring(self) -> Ring:
        return self.view.ring

    def add_listener(self, listener: Callable[[Ring, Ring], None]) -> None:
        self.view.add_listener(listener)

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the membership is kept, for logs."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Keep this replica registered and read the members into :attr:`view`."""

    async def recover(self, error: BaseException) -> None:
        """After a failed round, before the next (e.g. drop a broken connection)."""
        del error  # nothing to do by default

    def explain(self, error: BaseException) -> str:
        return str(error) or type(error).__name__

    async def start(self) -> None:
        """Register and read once (errors logged: the loop retries), then keep both current."""
        await self._round()
        self._task = asyncio.create_task(self._loop(), name="shard-membership")

    async def stop_polling(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._round()

    async def _round(self) -> None:
        try:
            await self.refresh()
        except self.TRANSIENT as error:
            self.view.metrics.errors.inc()
            log.warning("shard membership %s: %s", self.describe(), self.explain(error))
            await self.recover(error)
