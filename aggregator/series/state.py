"""Every exported series and its (packets, bytes) value, kept up to date as counters grow.

A scrape must be cheap no matter how many counters the cluster has, so nothing is
computed at scrape time: every increase the :class:`~aggregator.ledger.Ledger` reports is
resolved once (interface -> pod, chain -> policy, through the catalog, see
:mod:`aggregator.resolution`) and added to every series it belongs to, at each exported
level.  The route of a counter (which series it feeds) is kept.  When the catalog
changes, :meth:`SeriesState.set_resolver` moves just the counters whose names changed
to their new series, with their full totals: a pod or policy learned late gets its
series, a renamed one leaves its old series.  :meth:`SeriesState.rebuilt` recomputes
everything from the ledger.  A series whose counters moved away is removed; one that
keeps other counters goes down by what left (a rename is seen by Prometheus as a counter
reset there, which it handles).

Series removal: per-workload series (and the compatibility names) leave once every
counter behind them expired (retired for the ledger's grace period: the pod is gone);
node and cluster series keep those totals (an archive survives rebuilds), so sums never
drop.  When the ledger forgets a whole node (it stopped reporting), the node's own
series leave too, and only the series that sum over nodes keep what it counted.

A cap on the number of series refuses new series beyond it and counts them; cluster and
node series are admitted before workload series when rebuilding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from aggregator.ledger import CounterState, ExpiredCounter, Increase, Ledger
from aggregator.metrics import FAMILIES, Level, SeriesFamily, series_makers
from aggregator.model import ResolvedCounter
from aggregator.resolution.memo import CounterPlace, Lookup, MemoResolver
from aggregator.resolution.resolve import RawName, RawNameKind, Resolver, resolve_counter, unresolved_names
from aggregator.series.options import SeriesOptions
from aggregator.series.views import ResolvedIncrease
from calico_accountant.records import CounterKey

__all__ = ["SeriesState"]

log = logging.getLogger(__name__)

_LEVEL_PRIORITY = (Level.CLUSTER, Level.NODE, Level.WORKLOAD, Level.COMPAT)

_SeriesRef = tuple[int, tuple[str, ...]]
"""(index of the family among the exported ones, label values after the allow-list)."""


class _Route(NamedTuple):
    counter: ResolvedCounter
    refs: tuple[_SeriesRef, ...]
    lookups: tuple[Lookup, ...]
    unresolved: tuple[RawName, ...]


class SeriesState:
    """Every exported series and its (packets, bytes) value.  Not thread-safe.

    A series exists while some counter routes to it (``_holders``) or it holds totals of
    expired counters (``_archive``, aggregate families only).
    """

    def __init__(self, resolver: Resolver, options: SeriesOptions | None = None) -> None:
        self.options = options or SeriesOptions()
        self._memo = MemoResolver(resolver)
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
        self._node_label: list[int | None] = [
            names.index("node") if "node" in names else None for names in self.label_names
        ]
        """Per family, the position of its ``node`` label (after the allow-list), if any."""
        self._holders: dict[_SeriesRef, int] = {}
        self._archive: dict[_SeriesRef, tuple[int, int]] = {}
        self._routes: dict[CounterPlace, _Route] = {}
        self._refused: set[_SeriesRef] = set()
        self._ever_refused: set[_SeriesRef] = set()
        """Every series ever refused, so a rebuild does not count it twice."""
        self.overflow: dict[Level, int] = {}
        """Series refused because of the cap, per level (each counted once)."""
        self.series_count = 0
        self._unresolved: dict[tuple[str, RawName], int] = {}
        """(node, raw name) -> counters exported under that raw name."""
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

    def forget_node(self, node: str, counters: Iterable[CounterState]) -> int:
        """The ledger forgot ``node``: its counters expire, and every series labelled with
        the node leaves (with its archive); series summed over nodes keep its totals.
        Returns the number of series removed."""
        removed = self.expire(ExpiredCounter(node, state) for state in counters)
        for index, position in enumerate(self._node_label):
            if position is None:
                continue
            values = self.values[index]
            for labels in [labels for labels in values if labels[position] == node]:
                ref = (index, labels)
                if self._holders.get(ref):
                    continue
                self._archive.pop(ref, None)
                del values[labels]
                self.series_count -= 1
                removed += 1
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
        pending: list[tuple[str, CounterState, ResolvedCounter, tuple[Lookup, ...], list[_SeriesRef]]] = []
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
        for node, raw in self._unresolved:
            entry = counts.setdefault(node, [0, 0])
            entry[0 if raw.kind is RawNameKind.INTERFACE else 1] += 1
        return {node: (c[0], c[1]) for node, c in counts.items()}

    # -- internals -----------------------------------------------------------------------

    def _resolve(
        self, node: str, state: CounterState, comments: Mapping[str, str]
    ) -> tuple[ResolvedCounter, tuple[Lookup, ...]]:
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
        where: CounterPlace,
        counter: ResolvedCounter,
        lookups: tuple[Lookup, ...],
        refs: tuple[_SeriesRef, ...],
    ) -> _Route:
        route = _Route(counter, refs, lookups, unresolved_names(counter))
        self._routes[where] = route
        holders = self._holders
        for ref in refs:
            holders[ref] = holders.get(ref, 0) + 1
        self._memo.use(where, lookups)
        for raw in route.unresolved:
            tag = (where[0], raw)
            self._unresolved[tag] = self._unresolved.get(tag, 0) + 1
        return route

    def _forget(self, where: CounterPlace, route: _Route) -> None:
        self._memo.release(where, route.lookups)
        for raw in route.unresolved:
            tag = (where[0], raw)
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
