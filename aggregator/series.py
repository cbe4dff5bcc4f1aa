"""Resolved, pre-aggregated series: what a scrape renders, kept up to date as snapshots arrive.

A scrape must be cheap no matter how many counters the cluster has, so nothing here is
computed at scrape time: every increase the :class:`~aggregator.ledger.Ledger` reports is
resolved once (interface → pod, chain → policy, through the catalog), and added to every
series it belongs to, at each exported level.  The route of a counter (which series it
feeds) is cached, and so is every catalog lookup, together with the counters that used
it.  When the catalog changes, :meth:`Accountant.set_resolver` asks the new catalog only
the distinct lookups (a few per pod and policy), and moves just the counters whose
answer changed to their new series, with their full totals: a pod or policy learned
late gets its series, a renamed one leaves its old series.  :meth:`Accountant.rebuild`
recomputes everything from the ledger.  A series whose counters moved away is removed;
one that keeps other counters goes down by what left (a rename is seen by Prometheus as
a counter reset there, which it handles).

Series removal: per-workload series (and the compatibility names) leave once every
counter behind them expired (retired for the ledger's grace period: the pod is gone);
node and cluster series keep those totals forever (an archive survives rebuilds), so
sums never drop.

Options: which levels are exported, a label allow-list (labels not allowed are dropped
from the workload/node/cluster families and the series that then coincide are summed),
and a cap on the number of series (new series beyond it are refused and counted; cluster
and node series are created before workload series when rebuilding).

Threading: :class:`Accountant` is mutated by one thread (the asyncio ingest loop) and
read by scrapes from others; every method takes its lock, and :meth:`Accountant.view`
returns an immutable copy that is rendered outside the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from aggregator.ledger import CounterState, ExpiredCounter, Increase, Ledger, NodeUpdate
from aggregator.metrics import FAMILIES, Level, SeriesFamily, series_makers
from aggregator.model import PolicyGroup, PolicyIdentity, ProfileIdentity, ResolvedCounter, WorkloadIdentity
from calico_accountant.felix.chains import is_group_chain
from calico_accountant.records import CounterKey, Kind

__all__ = [
    "DEFAULT_LEVELS",
    "Accountant",
    "FamilyView",
    "NodeView",
    "ResolvedIncrease",
    "ResolvedTotal",
    "Resolver",
    "SeriesOptions",
    "SeriesState",
    "StateView",
    "parse_labels",
    "parse_levels",
    "resolve_counter",
]

log = logging.getLogger(__name__)

DEFAULT_LEVELS: frozenset[Level] = frozenset({Level.WORKLOAD, Level.NODE, Level.CLUSTER})
_LEVEL_PRIORITY = (Level.CLUSTER, Level.NODE, Level.WORKLOAD, Level.COMPAT)


class Resolver(Protocol):
    """What the series need from :class:`aggregator.catalog.Catalog`."""

    def workload(self, node: str, interface: str) -> WorkloadIdentity: ...

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity: ...

    def group(
        self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]
    ) -> PolicyGroup: ...

    def profile(self, chain: str) -> ProfileIdentity: ...


@dataclass(frozen=True, slots=True)
class SeriesOptions:
    """What is exported."""

    levels: frozenset[Level] = DEFAULT_LEVELS
    compat: bool = False
    """Also export the monzo/calico-accountant names (per workload)."""
    allowed_labels: frozenset[str] | None = None
    """Labels kept on the workload/node/cluster families; None keeps all.  The
    compatibility families keep their historic shape regardless."""
    max_series: int | None = None
    """At most this many label sets in all counter families together; None: no cap."""

    def exports(self, family: SeriesFamily) -> bool:
        if family.level is Level.COMPAT:
            return self.compat
        return family.level in self.levels


def parse_levels(text: str) -> frozenset[Level]:
    """``workload,node,cluster`` (any subset, comma separated) as levels; ValueError if unknown."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    allowed = {level.value: level for level in DEFAULT_LEVELS}
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(f"levels must be a comma-separated subset of workload,node,cluster, got {text!r}")
    return frozenset(allowed[name] for name in names)


def parse_labels(text: str) -> frozenset[str]:
    """A comma-separated label allow-list; ValueError for names no family has."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    known = {label for family in FAMILIES if family.level is not Level.COMPAT for label in family.labels}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"unknown labels {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return names


# -- resolution ----------------------------------------------------------------------------


def resolve_counter(
    resolver: Resolver,
    node: str,
    key: CounterKey,
    *,
    chain_comment: str = "",
    group_members: Sequence[str] = (),
    comments: Mapping[str, str] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> ResolvedCounter:
    """Attach the datastore's names to one counter.

    ``comments`` maps policy chains to felix's identity comment on the node (used for
    group members).  A resolver that raises never loses the counter: the raw names are
    used (as for anything the catalog does not know) and ``on_error`` is told.
    """
    workload: WorkloadIdentity | None = None
    policy: PolicyIdentity | None = None
    group: PolicyGroup | None = None
    profile: ProfileIdentity | None = None
    chain = key.chain
    if key.interface:
        try:
            workload = resolver.workload(node, key.interface)
        except Exception as error:
            if on_error is not None:
                on_error(key.interface, error)
            workload = WorkloadIdentity(node, key.interface, "", key.interface, "", resolved=False)
    kind = key.kind
    if kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY:
        if group_members or is_group_chain(chain):
            members = tuple(group_members)
            member_comments = tuple((comments or {}).get(member, "") for member in members)
            try:
                group = resolver.group(chain, members, member_comments)
            except Exception as error:
                if on_error is not None:
                    on_error(chain, error)
                group = PolicyGroup(chain, tuple(PolicyIdentity.unresolved(m, key.tier) for m in members))
            policy = (
                group.as_identity(key.tier) if group.policies else PolicyIdentity.unresolved(chain, key.tier)
            )
        else:
            policy = _policy(
                resolver, chain, chain_comment or (comments or {}).get(chain, ""), key.tier, on_error
            )
    elif kind is Kind.POLICY_RULE:
        policy = _policy(
            resolver, chain, chain_comment or (comments or {}).get(chain, ""), key.tier, on_error
        )
    elif kind is Kind.PROFILE_ACCEPT:
        try:
            profile = resolver.profile(chain)
        except Exception as error:
            if on_error is not None:
                on_error(chain, error)
            profile = ProfileIdentity(chain, resolved=False)
    return ResolvedCounter(
        node=node,
        key=key,
        workload=workload,
        policy=policy,
        group=group,
        profile=profile,
        chain_comment=chain_comment or (comments or {}).get(chain, ""),
    )


def _policy(
    resolver: Resolver,
    chain: str,
    comment: str,
    tier: str,
    on_error: Callable[[str, Exception], None] | None,
) -> PolicyIdentity:
    try:
        return resolver.policy(chain, comment)
    except Exception as error:
        if on_error is not None:
            on_error(chain, error)
        return PolicyIdentity.unresolved(chain, tier)


def _unresolved_names(counter: ResolvedCounter) -> tuple[tuple[str, str], ...]:
    """("interface", name) / ("chain", name) for everything the catalog did not explain."""
    names: list[tuple[str, str]] = []
    if counter.workload is not None and not counter.workload.resolved:
        names.append(("interface", counter.workload.interface))
    if counter.group is not None:
        names.extend(("chain", p.stored_name or p.name) for p in counter.group.policies if not p.resolved)
        if not counter.group.policies:
            names.append(("chain", counter.key.chain))
    elif counter.policy is not None and not counter.policy.resolved:
        names.append(("chain", counter.key.chain))
    if counter.profile is not None and not counter.profile.resolved:
        names.append(("chain", counter.key.chain))
    return tuple(names)


_RouteKey = tuple[str, CounterKey]
_Lookup = tuple[str, ...]
"""("w", node, interface), ("p", chain, comment), ("r", chain) or ("g", chain, *members, "", *comments)."""


class _MemoResolver:
    """Caches catalog lookups and remembers which counters used which lookup, so that a
    catalog change re-routes only the counters whose names changed."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._workloads: dict[_Lookup, WorkloadIdentity] = {}
        self._policies: dict[_Lookup, PolicyIdentity] = {}
        self._groups: dict[_Lookup, PolicyGroup] = {}
        self._profiles: dict[_Lookup, ProfileIdentity] = {}
        self._users: dict[_Lookup, set[_RouteKey]] = {}
        self._last_known: dict[_Lookup, object] = {}
        """Per workload or policy lookup, the last answer that resolved (see _remembering)."""
        self.touched: list[_Lookup] = []
        """Lookups made since the caller last cleared it (one counter's resolution)."""

    def workload(self, node: str, interface: str) -> WorkloadIdentity:
        lookup = ("w", node, interface)
        self.touched.append(lookup)
        found = self._workloads.get(lookup)
        if found is None:
            answer = self._ask(lookup)
            assert isinstance(answer, WorkloadIdentity)
            found = self._workloads[lookup] = answer
        return found

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
        lookup = ("p", chain, comment)
        self.touched.append(lookup)
        found = self._policies.get(lookup)
        if found is None:
            answer = self._ask(lookup)
            assert isinstance(answer, PolicyIdentity)
            found = self._policies[lookup] = answer
        return found

    def group(self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]) -> PolicyGroup:
        lookup = ("g", chain, *member_chains, "", *member_comments)
        self.touched.append(lookup)
        found = self._groups.get(lookup)
        if found is None:
            found = self._groups[lookup] = self.resolver.group(chain, member_chains, member_comments)
        return found

    def profile(self, chain: str) -> ProfileIdentity:
        lookup = ("r", chain)
        self.touched.append(lookup)
        found = self._profiles.get(lookup)
        if found is None:
            found = self._profiles[lookup] = self.resolver.profile(chain)
        return found

    def use(self, route: _RouteKey, lookups: Iterable[_Lookup]) -> None:
        for lookup in lookups:
            users = self._users.get(lookup)
            if users is None:
                users = self._users[lookup] = set()
            users.add(route)

    def release(self, route: _RouteKey, lookups: Iterable[_Lookup]) -> None:
        for lookup in lookups:
            users = self._users.get(lookup)
            if users is None:
                continue
            users.discard(route)
            if not users:
                del self._users[lookup]
                self._cache(lookup).pop(lookup, None)

    def refresh(self, resolver: Resolver) -> set[_RouteKey]:
        """Switch to ``resolver``; returns the counters whose lookups now answer differently."""
        self.resolver = resolver
        dirty: set[_RouteKey] = set()
        for lookup, users in self._users.items():
            cache = self._cache(lookup)
            old = cache.get(lookup)
            try:
                new = self._ask(lookup)
            except Exception:
                new = None
            if new != old:
                dirty |= users
            if new is None:
                cache.pop(lookup, None)
            else:
                cache[lookup] = new
        return dirty

    def inherit(self, previous: _MemoResolver) -> None:
        """Keep ``previous``'s last known names, so a rebuild routes the counters of deleted
        pods and policies exactly as the incremental path does."""
        self._last_known.update(previous._last_known)

    def _remembering(self, lookup: _Lookup, answer: object) -> object:
        """The resolver's answer, or, when a pod or policy that resolved before has left
        the datastore, the names it had: its counters (live until its chains go, then
        retired) stay under its namespace, app and policy in the sums."""
        known = self._last_known.get(lookup)
        if known is not None and not _resolves(answer):
            return known
        if _resolves(answer):
            self._last_known[lookup] = answer
        return answer

    def _cache(self, lookup: _Lookup) -> dict[_Lookup, Any]:
        tag = lookup[0]
        if tag == "w":
            return self._workloads
        if tag == "p":
            return self._policies
        return self._groups if tag == "g" else self._profiles

    def _ask(self, lookup: _Lookup) -> object:
        tag = lookup[0]
        if tag == "w":
            return self._remembering(lookup, self.resolver.workload(lookup[1], lookup[2]))
        if tag == "p":
            return self._remembering(lookup, self.resolver.policy(lookup[1], lookup[2]))
        if tag == "r":
            return self.resolver.profile(lookup[1])
        rest = lookup[2:]
        split = rest.index("")
        return self.resolver.group(lookup[1], rest[:split], rest[split + 1 :])


def _resolves(answer: object) -> bool:
    """True for a workload or policy the datastore knows (not a raw-name fallback)."""
    if isinstance(answer, WorkloadIdentity):
        return answer.resolved
    if isinstance(answer, PolicyIdentity):
        return answer.resolved
    return False


# -- what increases and totals look like once resolved ---------------------------------------


class ResolvedIncrease(NamedTuple):
    """One counter's growth in one update, with names: what the hit API streams."""

    counter: ResolvedCounter
    packets: int
    bytes: int
    time: datetime
    """The agent's read time of the snapshot that carried it."""
    initial: bool = False
    """From the node's first snapshot since the aggregator started (traffic since the
    rule was created, not since the previous read): usually not a "hit"."""


@dataclass(frozen=True, slots=True)
class ResolvedTotal:
    """A counter's monotonic total, with names: what the Snapshot API returns."""

    counter: ResolvedCounter
    packets: int
    bytes: int
    live: bool


# -- the series -------------------------------------------------------------------------------

_SeriesRef = tuple[int, tuple[str, ...]]
"""(index of the family among the exported ones, label values after the allow-list)."""


class _Route(NamedTuple):
    counter: ResolvedCounter
    refs: tuple[_SeriesRef, ...]
    lookups: tuple[_Lookup, ...]
    unresolved: tuple[tuple[str, str], ...]


class SeriesState:
    """Every exported series and its (packets, bytes) value.  Not thread-safe.

    A series exists while some counter routes to it (``_holders``) or it holds totals of
    expired counters (``_archive``, aggregate families only).
    """

    def __init__(self, resolver: Resolver, options: SeriesOptions | None = None) -> None:
        self.options = options or SeriesOptions()
        self._memo = _MemoResolver(resolver)
        self.families: tuple[SeriesFamily, ...] = tuple(f for f in FAMILIES if self.options.exports(f))
        self._family_index = {family: index for index, family in enumerate(self.families)}
        self._makers = series_makers(self.options.exports)
        self._projections: list[tuple[int, ...] | None] = []
        self.label_names: list[tuple[str, ...]] = []
        for family in self.families:
            allowed = self.options.allowed_labels
            if allowed is None or family.level is Level.COMPAT:
                self._projections.append(None)
                self.label_names.append(family.labels)
            else:
                keep = tuple(i for i, name in enumerate(family.labels) if name in allowed)
                self._projections.append(None if len(keep) == len(family.labels) else keep)
                self.label_names.append(tuple(family.labels[i] for i in keep))
        self.values: list[dict[tuple[str, ...], tuple[int, int]]] = [{} for _ in self.families]
        self._holders: dict[_SeriesRef, int] = {}
        self._archive: dict[_SeriesRef, tuple[int, int]] = {}
        self._routes: dict[_RouteKey, _Route] = {}
        self._refused: set[_SeriesRef] = set()
        self._ever_refused: set[_SeriesRef] = set()
        """Every series ever refused, so a rebuild does not count it twice."""
        self.overflow: dict[Level, int] = {}
        """Series refused because of the cap, per level (each counted once)."""
        self.series_count = 0
        self._unresolved: dict[tuple[str, str, str], int] = {}
        """(node, "interface"|"chain", name) -> counters exported under that raw name."""
        self.resolution_errors = 0

    @property
    def resolver(self) -> Resolver:
        return self._memo.resolver

    # -- incremental ---------------------------------------------------------------------

    def apply(self, increases: Iterable[Increase], ledger: Ledger, time: datetime) -> list[ResolvedIncrease]:
        resolved: list[ResolvedIncrease] = []
        routes = self._routes
        values = self.values
        for increase in increases:
            node, key, packets, octets = increase.node, increase.key, increase.packets, increase.bytes
            route = routes.get((node, key))
            if route is None:
                state = ledger.counters(node).get(key)
                if state is None:  # not possible through Accountant; tolerate anyway
                    continue
                route = self._route(node, state, ledger.chain_comments(node))
            for index, labels in route.refs:
                series = values[index]
                old_packets, old_bytes = series[labels]
                series[labels] = (old_packets + packets, old_bytes + octets)
            resolved.append(ResolvedIncrease(route.counter, packets, octets, time, increase.initial))
        return resolved

    def expire(self, expired: Iterable[ExpiredCounter]) -> int:
        """Drop expired counters: per-workload series lose a holder (and leave at zero
        holders); aggregate series keep their totals in the archive.  Returns the number
        of series removed."""
        removed = 0
        for item in expired:
            where = (item.node, item.state.key)
            route = self._routes.pop(where, None)
            if route is None:
                continue
            for ref in route.refs:
                if not self.families[ref[0]].per_workload:
                    packets, octets = self._archive.get(ref, (0, 0))
                    self._archive[ref] = (packets + item.state.total_packets, octets + item.state.total_bytes)
                removed += self._release_series(ref)
            self._forget(where, route)
        return removed

    def set_resolver(self, resolver: Resolver, ledger: Ledger) -> int:
        """The catalog changed: re-route the counters whose names changed, moving their
        totals to their new series.  Returns how many counters moved."""
        dirty = self._memo.refresh(resolver)
        moved = 0
        for where in dirty:
            route = self._routes.pop(where, None)
            state = ledger.counters(where[0]).get(where[1])
            if route is None or state is None:
                continue
            for ref in route.refs:
                self._add(ref, -state.total_packets, -state.total_bytes)
                self._release_series(ref)
            self._forget(where, route)
            new_route = self._route(where[0], state, ledger.chain_comments(where[0]))
            for ref in new_route.refs:
                self._add(ref, state.total_packets, state.total_bytes)
            moved += 1
        return moved

    # -- rebuild -------------------------------------------------------------------------

    def rebuilt(self, ledger: Ledger, resolver: Resolver | None = None) -> SeriesState:
        """A new state with the same options and archive, every counter resolved afresh
        and aggregate series admitted first under the cap."""
        fresh = SeriesState(resolver or self.resolver, self.options)
        fresh._memo.inherit(self._memo)
        fresh._archive = dict(self._archive)
        # exported as counters: they must not go down because of a rebuild
        fresh.resolution_errors = self.resolution_errors
        fresh.overflow = dict(self.overflow)
        fresh._ever_refused = self._ever_refused
        admitted: set[_SeriesRef] = set()
        for ref, (packets, octets) in self._archive.items():
            if fresh._admit(ref):
                admitted.add(ref)
                fresh._add(ref, packets, octets)
        pending: list[tuple[str, CounterState, ResolvedCounter, tuple[_Lookup, ...], list[_SeriesRef]]] = []
        for node in ledger.node_names():
            comments = ledger.chain_comments(node)
            for state in ledger.counters(node).values():
                counter, lookups = fresh._resolve(node, state, comments)
                pending.append((node, state, counter, lookups, fresh._candidate_refs(counter)))
        for level in _LEVEL_PRIORITY:
            for *_, refs in pending:
                for ref in refs:
                    if fresh.families[ref[0]].level is level and ref not in admitted and fresh._admit(ref):
                        admitted.add(ref)
        for node, state, counter, lookups, refs in pending:
            kept = tuple(ref for ref in refs if ref in admitted)
            fresh._register((node, state.key), counter, lookups, kept)
            for ref in kept:
                fresh._add(ref, state.total_packets, state.total_bytes)
        return fresh

    # -- reading -------------------------------------------------------------------------

    def resolved(self, node: str, key: CounterKey) -> ResolvedCounter | None:
        route = self._routes.get((node, key))
        return route.counter if route else None

    def resolve_state(self, node: str, state: CounterState, comments: Mapping[str, str]) -> ResolvedCounter:
        """Resolve a counter without routing it (e.g. for the Snapshot API)."""
        counter, _ = self._resolve(node, state, comments)
        return counter

    def unresolved_counts(self) -> dict[str, tuple[int, int]]:
        """node -> (unresolved interfaces, unresolved chains) currently exported raw."""
        counts: dict[str, list[int]] = {}
        for node, what, _ in self._unresolved:
            entry = counts.setdefault(node, [0, 0])
            entry[0 if what == "interface" else 1] += 1
        return {node: (c[0], c[1]) for node, c in counts.items()}

    # -- internals -----------------------------------------------------------------------

    def _resolve(
        self, node: str, state: CounterState, comments: Mapping[str, str]
    ) -> tuple[ResolvedCounter, tuple[_Lookup, ...]]:
        memo = self._memo
        memo.touched = []
        counter = resolve_counter(
            memo,
            node,
            state.key,
            chain_comment=state.chain_comment,
            group_members=state.group_members,
            comments=comments,
            on_error=self._count_error,
        )
        return counter, tuple(memo.touched)

    def _count_error(self, what: str, error: Exception) -> None:
        self.resolution_errors += 1
        if self.resolution_errors <= 10 or self.resolution_errors % 1000 == 0:
            log.warning("resolving %s failed (%s errors so far): %r", what, self.resolution_errors, error)

    def _candidate_refs(self, counter: ResolvedCounter) -> list[_SeriesRef]:
        refs: list[_SeriesRef] = []
        for make in self._makers:
            for family, labels in make(counter):
                index = self._family_index.get(family)
                if index is None:
                    continue
                projection = self._projections[index]
                ref = (index, labels if projection is None else tuple(labels[i] for i in projection))
                if ref not in refs:
                    refs.append(ref)
        return refs

    def _route(self, node: str, state: CounterState, comments: Mapping[str, str]) -> _Route:
        counter, lookups = self._resolve(node, state, comments)
        refs = tuple(ref for ref in self._candidate_refs(counter) if self._admit(ref))
        return self._register((node, state.key), counter, lookups, refs)

    def _register(
        self,
        where: _RouteKey,
        counter: ResolvedCounter,
        lookups: tuple[_Lookup, ...],
        refs: tuple[_SeriesRef, ...],
    ) -> _Route:
        route = _Route(counter, refs, lookups, _unresolved_names(counter))
        self._routes[where] = route
        holders = self._holders
        for ref in refs:
            holders[ref] = holders.get(ref, 0) + 1
        self._memo.use(where, lookups)
        for what, name in route.unresolved:
            tag = (where[0], what, name)
            self._unresolved[tag] = self._unresolved.get(tag, 0) + 1
        return route

    def _forget(self, where: _RouteKey, route: _Route) -> None:
        self._memo.release(where, route.lookups)
        for what, name in route.unresolved:
            tag = (where[0], what, name)
            left = self._unresolved.get(tag, 0) - 1
            if left > 0:
                self._unresolved[tag] = left
            else:
                self._unresolved.pop(tag, None)

    def _release_series(self, ref: _SeriesRef) -> int:
        """One counter less behind ``ref``; removes the series when nothing holds it."""
        holders = self._holders.get(ref, 0) - 1
        if holders > 0:
            self._holders[ref] = holders
            return 0
        self._holders.pop(ref, None)
        if ref in self._archive:
            return 0
        if self.values[ref[0]].pop(ref[1], None) is None:
            return 0
        self.series_count -= 1
        return 1

    def _admit(self, ref: _SeriesRef) -> bool:
        """Whether ``ref`` exists or may be created (creating it at zero)."""
        values = self.values[ref[0]]
        if ref[1] in values:
            return True
        if ref in self._refused:
            return False
        cap = self.options.max_series
        if cap is not None and self.series_count >= cap:
            self._refused.add(ref)
            if ref not in self._ever_refused:
                self._ever_refused.add(ref)
                level = self.families[ref[0]].level
                self.overflow[level] = self.overflow.get(level, 0) + 1
            return False
        values[ref[1]] = (0, 0)
        self.series_count += 1
        return True

    def _add(self, ref: _SeriesRef, packets: int, octets: int) -> None:
        values = self.values[ref[0]]
        old = values.get(ref[1])
        if old is not None:
            values[ref[1]] = (old[0] + packets, old[1] + octets)


# -- the read side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FamilyView:
    family: SeriesFamily
    label_names: tuple[str, ...]
    series: tuple[tuple[tuple[str, ...], tuple[int, int]], ...]


@dataclass(frozen=True, slots=True)
class NodeView:
    node: str
    connected: bool
    stale: bool
    instance_id: str
    agent_version: str
    sequence: int
    read_time: float
    received_at: float
    diagnostic_totals: Mapping[str, int]
    diagnostic_counts: Mapping[str, int]
    resets: Mapping[str, int]
    sequence_gaps: int
    out_of_order: int
    invalid_counters: int
    unresolved_interfaces: int
    unresolved_chains: int
    counters_live: int
    counters_retired: int


@dataclass(frozen=True, slots=True)
class StateView:
    """An immutable copy of everything a scrape renders."""

    families: tuple[FamilyView, ...]
    nodes: tuple[NodeView, ...]
    series_count: int
    overflow: Mapping[str, int]
    resolution_errors: int
    expired_counters: int = 0
    rebuilds: int = 0
    moved_counters: int = 0
    levels: frozenset[Level] = field(default_factory=frozenset)


class Accountant:
    """Ledger + series behind one lock: the aggregator's accounting state.

    Feed it with :meth:`apply` (one decoded snapshot), tell it about streams with
    :meth:`set_connected`, about a changed catalog with :meth:`set_resolver`, and call
    :meth:`expire` periodically.  Read it with :meth:`view` (scrapes), :meth:`totals`
    (Snapshot API) and :meth:`node_views` (ListNodes).  Writers must be one thread (the
    ingest event loop); readers may be any thread.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        options: SeriesOptions | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.ledger = ledger or Ledger()
        self._series = SeriesState(resolver, options)
        self._expired_counters = 0
        self._rebuilds = 0
        self._moved = 0

    @property
    def options(self) -> SeriesOptions:
        return self._series.options

    def apply(self, update: NodeUpdate, now: float) -> list[ResolvedIncrease]:
        """Apply one snapshot; returns the resolved increases (zero ones included, see
        :class:`~aggregator.ledger.Increase`)."""
        with self._lock:
            increases = self.ledger.apply(update, now)
            return self._series.apply(increases, self.ledger, update.read_time)

    def set_connected(self, node: str, connected: bool) -> None:
        with self._lock:
            self.ledger.set_connected(node, connected)

    def set_resolver(self, resolver: Resolver) -> None:
        """The catalog changed: counters whose names changed move to their new series
        with their full totals (:attr:`moved_counters` counts them).  Suits a catalog
        listener: cheap when little changed."""
        with self._lock:
            self._moved += self._series.set_resolver(resolver, self.ledger)
            self._rebuilds += 1

    @property
    def moved_counters(self) -> int:
        """Counters re-routed by catalog changes so far."""
        return self._moved

    def rebuild(self) -> None:
        """Recompute every series from the ledger (aggregate series first under the cap)."""
        with self._lock:
            self._series = self._series.rebuilt(self.ledger)
            self._rebuilds += 1

    def expire(self, now: float) -> int:
        """Forget counters retired longer than the grace period; returns series removed."""
        with self._lock:
            expired = self.ledger.expire(now)
            self._expired_counters += len(expired)
            return self._series.expire(expired)

    def totals(self) -> list[ResolvedTotal]:
        """Every counter the ledger remembers, resolved, with its total."""
        with self._lock:
            out: list[ResolvedTotal] = []
            for node, state in self.ledger.items():
                counter = self._series.resolved(node, state.key)
                if counter is None:
                    counter = self._series.resolve_state(node, state, self.ledger.chain_comments(node))
                out.append(ResolvedTotal(counter, state.total_packets, state.total_bytes, state.live))
            return out

    def node_views(self, now: float) -> list[NodeView]:
        with self._lock:
            return self._node_views(now)

    def view(self, now: float) -> StateView:
        """A consistent copy for rendering outside the lock."""
        with self._lock:
            series = self._series
            families = tuple(
                FamilyView(family, series.label_names[index], tuple(series.values[index].items()))
                for index, family in enumerate(series.families)
            )
            return StateView(
                families=families,
                nodes=tuple(self._node_views(now)),
                series_count=series.series_count,
                overflow={level.value: count for level, count in series.overflow.items()},
                resolution_errors=series.resolution_errors,
                expired_counters=self._expired_counters,
                rebuilds=self._rebuilds,
                moved_counters=self._moved,
                levels=series.options.levels,
            )

    def _node_views(self, now: float) -> list[NodeView]:
        unresolved = self._series.unresolved_counts()
        views: list[NodeView] = []
        for state in self.ledger.nodes():
            interfaces, chains = unresolved.get(state.node, (0, 0))
            views.append(
                NodeView(
                    node=state.node,
                    connected=state.connected,
                    stale=state.stale(now, self.ledger.stale_after),
                    instance_id=state.instance_id,
                    agent_version=state.agent_version,
                    sequence=state.sequence,
                    read_time=state.read_time,
                    received_at=state.received_at,
                    diagnostic_totals=dict(state.diagnostic_totals),
                    diagnostic_counts=dict(state.diagnostic_counts),
                    resets=dict(state.resets),
                    sequence_gaps=state.sequence_gaps,
                    out_of_order=state.out_of_order,
                    invalid_counters=state.invalid_counters,
                    unresolved_interfaces=interfaces,
                    unresolved_chains=chains,
                    counters_live=state.counters_live,
                    counters_retired=state.counters_retired,
                )
            )
        return views
