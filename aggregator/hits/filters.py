"""Which hits a consumer asked for: :class:`HitFilterSpec`, a validated ``HitFilter``.

Validation happens once, when a ``Watch`` or ``Snapshot`` arrives (a bad value is the
caller's INVALID_ARGUMENT, not a silent empty stream); matching then runs per hit on the
ingest path, so it is plain set look-ups, cheapest conditions first, and the policy names
(the costly part) are asked for only when a policy filter is set.  Verdicts are the
core's :class:`~calico_accountant.records.Verdict`, the same vocabulary the counters
carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aggregator.model import ResolvedCounter
from calico_accountant.records import Direction, Verdict
from calico_accountant.v1 import hits_pb2 as hpb

__all__ = ["DIRECTIONS", "HitFilterSpec"]

DIRECTIONS = frozenset(direction.value for direction in Direction)


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
