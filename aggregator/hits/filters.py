"""Which hits a consumer asked for: :class:`HitFilterSpec`, a validated ``HitFilter``.

Validation happens once, when a ``Watch`` or ``Snapshot`` arrives (a bad value is the
caller's INVALID_ARGUMENT, not a silent empty stream); matching then runs per hit on the
ingest path, so it is plain set look-ups, cheapest conditions first, and the policy names
(the costly part) are asked for only when a policy filter is set.  Verdicts are the
core's :class:`~calico_accountant.records.Verdict`, the same vocabulary the counters
carry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from aggregator.model import ResolvedCounter
from calico_accountant.records import Direction, Verdict
from calico_accountant.v1 import hits_pb2 as hpb

__all__ = ["DIRECTIONS", "HitFilterSpec", "ReplayWindow"]

_T = TypeVar("_T")
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
    excluding: tuple[HitFilterSpec, ...] = ()
    """A hit that matches any of these is left out (``observe --not``)."""

    @classmethod
    def from_request(cls, message: hpb.HitFilter, exclude: Sequence[hpb.HitFilter] = ()) -> HitFilterSpec:
        """The filter of a request with its exclusions; :class:`ValueError` says what is
        wrong.  An exclusion without a condition would leave out everything: refused."""
        excluding = tuple(cls.from_pb(item) for item in exclude)
        if any(item.everything for item in excluding):
            raise ValueError("an exclude filter needs at least one condition")
        return replace(cls.from_pb(message), excluding=excluding)

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
        if self.policies and not (self.policies & policy_names()):
            return False
        return not any(item.matches(counter, packets, policy_names) for item in self.excluding)

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
            or self.excluding
        )


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """Which kept hits a ``Watch`` replays before (or instead of) live ones.

    ``since`` is measured against the aggregator's receipt (seconds back from now), as
    it always was; ``since_time`` and ``until`` against the hit's read time, the time a
    user sees printed.  ``first``/``last`` keep the oldest/newest N of what matches."""

    since: float | None = None
    since_time: float | None = None
    until: float | None = None
    first: int = 0
    last: int = 0

    @classmethod
    def from_request(cls, request: hpb.WatchRequest) -> ReplayWindow:
        """Validates; :class:`ValueError` says which combination cannot work."""
        since = request.since.ToTimedelta().total_seconds() if request.HasField("since") else None
        if since is not None and since < 0:
            raise ValueError("since must not be negative")
        if since is not None and request.HasField("since_time"):
            raise ValueError("give since or since_time, not both")
        if request.first and request.last:
            raise ValueError("give first or last, not both")
        if request.follow and (request.first or request.HasField("until")):
            raise ValueError("first and until end a replay; they cannot be combined with follow")
        return cls(
            since=since,
            since_time=request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else None,
            until=request.until.ToNanoseconds() / 1e9 if request.HasField("until") else None,
            first=request.first,
            last=request.last,
        )

    @property
    def bounded(self) -> bool:
        """Whether the request asked for a replay explicitly."""
        return (
            self.since is not None
            or self.since_time is not None
            or self.until is not None
            or bool(self.first or self.last)
        )

    def trim(self, hits: list[_T]) -> list[_T]:
        """``hits`` (oldest first) cut to ``first``/``last``."""
        if self.first:
            return hits[: self.first]
        if self.last:
            return hits[-self.last :]
        return hits
