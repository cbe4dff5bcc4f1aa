"""What ingest does about nodes under sharding: redirect what it does not own, hand over
what moved away.

:meth:`ShardRouter.redirect_for` answers, per incoming snapshot, whether this replica owns
its node (then None) or which member does (a :class:`Redirect`: the ingest servicer acks
with ``redirect_address`` and ends the stream, and the agent reconnects there).

When the membership changes, the nodes this replica holds that now belong to another
member are handed over at once (:meth:`ShardRouter.on_change`): their streams are
released (the next snapshot on them is redirected) and the accountant forgets them, so
their node- and workload-level series leave this shard's ``/metrics``; what they counted
stays in this shard's series summed over nodes (cluster level), which therefore never
decrease.  On the new owner a moved node starts like a new one: its first snapshot there is
a baseline, and its own series start from zero (a counter reset for Prometheus, per
``instance``, which ``rate()``/``increase()`` handle).  The increase between the node's
last snapshot on the old owner and its first on the new one is not counted anywhere (one
read interval per move).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.shard.membership import Membership
from aggregator.shard.ring import Ring

__all__ = ["Redirect", "ShardMetrics", "ShardRouter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where the snapshot's node belongs."""

    address: str
    owner: str


class ShardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.redirects = Counter(
            "calico_accountant_shard_redirects",
            "Ingest streams redirected to the replica that owns their node, by owner.",
            ["owner"],
            registry=registry,
        )
        self.handed_over = Counter(
            "calico_accountant_shard_handed_over_nodes",
            "Nodes this replica held and forgot because a membership change gave them to another replica.",
            registry=registry,
        )
        self.nodes = Gauge(
            "calico_accountant_shard_nodes",
            "Nodes this replica holds (it owns them on the ring).",
            registry=registry,
        )


class ShardRouter:
    """Redirects and hand-overs for one replica (see the module docstring)."""

    def __init__(
        self,
        membership: Membership,
        identity: str,
        *,
        known_nodes: Callable[[], Iterable[str]],
        release: Callable[[Iterable[str]], None],
        metrics: ShardMetrics | None = None,
    ) -> None:
        self.membership = membership
        self.identity = identity
        self._known_nodes = known_nodes
        self._release = release
        self.metrics = metrics if metrics is not None else ShardMetrics(CollectorRegistry())
        self.metrics.nodes.set_function(lambda: sum(1 for _ in self._known_nodes()))
        membership.add_listener(self.on_change)

    def redirect_for(self, node: str) -> Redirect | None:
        """None when this replica owns ``node``; else where it belongs (counted)."""
        owner = self.membership.ring.owner(node)
        if owner is None or owner.identity == self.identity:
            return None
        self.metrics.redirects.labels(owner.identity).inc()
        return Redirect(owner.address, owner.identity)

    def owns(self, node: str) -> bool:
        owner = self.membership.ring.owner(node)
        return owner is None or owner.identity == self.identity

    def on_change(self, previous: Ring, current: Ring) -> None:
        """Hand over every held node the new view gives to another member."""
        del previous  # what moved is what this replica holds and no longer owns
        self.hand_over_strays()

    def hand_over_strays(self) -> int:
        """Release every held node this replica does not own; returns how many.  Also
        called after a checkpoint is restored and after an apply that raced a change."""
        strays = [node for node in self._known_nodes() if not self.owns(node)]
        if strays:
            self._release(strays)
            self.metrics.handed_over.inc(len(strays))
            log.info("shards: handed over %d nodes to their new owners", len(strays))
        return len(strays)
