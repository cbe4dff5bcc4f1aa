"""Which series each counter feeds: its *route*, resolved once and kept.

A counter's route is the list of series (one per exported family it belongs to) its
increases are added to, by their slots in the families' tables
(:mod:`aggregator.series.table`).  Working it out means resolving the counter's names through
the catalog and asking every exported level which label set it has there; both are
done once per counter and kept until the catalog changes the answer
(:meth:`Router.refresh` names exactly those counters) or the counter expires.

Routes are kept per node by the counter's row in the ledger
(:mod:`aggregator.ledger.rows`): an increase names its row, so finding its route is two list
indexings, with no (node, key) tuple built, hashed or kept per counter.  The parts of a route
that repeat across counters are shared, not one copy per counter: its slots are the tables'
own ``(index, slot)`` tuples (:attr:`~aggregator.series.table.SeriesTable.refs`), its lookups
held in an :class:`~aggregator.series.interning.Interned` table.  The tuple of a counter's
slots is its own: interning those too paid only while a node's counters shared series sets,
which a node whose pods belong to different applications (the norm) does not (~200 bytes a
counter for an entry no other counter used).
The router also keeps what the aggregator's self-metrics report about resolution:
the raw names exported per node and the number of lookups that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from aggregator.metrics import FAMILIES, Level, SeriesFamily, series_makers
from aggregator.model import CounterNames
from aggregator.resolution.memo import Lookup, MemoResolver
from aggregator.resolution.resolve import RawName, RawNameKind, Resolver
from aggregator.resolution.runs import Resolution, RunResolver
from aggregator.series.interning import Interned
from aggregator.series.options import SeriesOptions
from calico_accountant.records import CounterKey

__all__ = ["NodeRoutes", "Route", "Router", "SeriesRef", "Slot"]

log = logging.getLogger(__name__)

SeriesRef = tuple[int, tuple[str, ...]]
"""(index of the family among the exported ones, label values after the allow-list)."""

Slot = tuple[int, int]
"""(index of the family among the exported ones, the series' slot in that family's table)."""


class Route(NamedTuple):
    """One counter's route, as :meth:`Router.route` hands it out (kept in columns)."""

    names: CounterNames
    slots: tuple[Slot, ...]
    lookups: tuple[Lookup, ...]
    unresolved: tuple[RawName, ...]


class NodeRoutes:
    """One node's routes in columns by ledger row; a row without a route holds None."""

    __slots__ = ("lookups", "names", "slots", "unresolved")

    def __init__(self) -> None:
        self.names: list[CounterNames | None] = []
        """The names of each row's counter: its run's (:class:`~aggregator.model.CounterNames`)."""
        self.slots: list[tuple[Slot, ...]] = []
        self.lookups: list[tuple[Lookup, ...]] = []
        self.unresolved: dict[int, tuple[RawName, ...]] = {}
        """Only the rows with raw names (few: names the catalog could not explain)."""

    def put(
        self,
        row: int,
        names: CounterNames,
        slots: tuple[Slot, ...],
        lookups: tuple[Lookup, ...],
        unresolved: tuple[RawName, ...],
    ) -> None:
        """The route of ``row`` (its fields one by one: no Route is made only to be taken apart)."""
        missing = row - len(self.names)
        if missing == 0:  # the next row (a new node's counters come in row order)
            self.names.append(names)
            self.slots.append(slots)
            self.lookups.append(lookups)
        else:
            if missing > 0:  # rows between: holes
                self.names.extend([None] * (missing + 1))
                self.slots.extend([()] * (missing + 1))
                self.lookups.extend([()] * (missing + 1))
            self.names[row] = names
            self.slots[row] = slots
            self.lookups[row] = lookups
        if unresolved:
            self.unresolved[row] = unresolved

    def get(self, row: int) -> Route | None:
        names = self.names[row] if row < len(self.names) else None
        if names is None:
            return None
        return Route(names, self.slots[row], self.lookups[row], self.unresolved.get(row, ()))

    def pop(self, row: int) -> Route | None:
        route = self.get(row)
        if route is not None:
            self.names[row] = None
            self.slots[row] = self.lookups[row] = ()
            self.unresolved.pop(row, None)
        return route

    def rows(self) -> Iterator[int]:
        return (row for row, names in enumerate(self.names) if names is not None)


class _RunHolds(NamedTuple):
    """What a run's counters hold, taken once (:meth:`Router.register`)."""

    resolution: Resolution
    node: str
    lookups: tuple[Lookup, ...]
    user_rows: list[list[int]]
    """The memo's lists of the node's rows routed by each of ``lookups``."""


class Router:
    """The exported families, and every counter's resolved route.  Not thread-safe."""

    def __init__(self, resolver: Resolver, options: SeriesOptions) -> None:
        self.options = options
        self.memo = MemoResolver(resolver)
        self._runs = RunResolver(self.memo)
        self.families: tuple[SeriesFamily, ...] = tuple(f for f in FAMILIES if options.exports(f))
        self._family_index = {family: index for index, family in enumerate(self.families)}
        self._makers = series_makers(options.exports)
        self._projections: list[tuple[int, ...] | None] = []
        self.label_names: list[tuple[str, ...]] = []
        for family in self.families:
            allowed = options.allowed_labels
            if allowed is None or family.level is Level.COMPAT:
                self._projections.append(None)
                self.label_names.append(family.labels)
            else:
                keep = tuple(i for i, name in enumerate(family.labels) if name in allowed)
                self._projections.append(None if len(keep) == len(family.labels) else keep)
                self.label_names.append(tuple(family.labels[i] for i in keep))
        self.node_label: list[int | None] = [
            names.index("node") if "node" in names else None for names in self.label_names
        ]
        """Per family, the position of its ``node`` label (after the allow-list), if any."""
        self.routes: dict[str, NodeRoutes] = {}
        """Per node, its counters' routes by ledger row."""
        self._lookups: Interned[Lookup] = Interned()
        self._run: _RunHolds | None = None
        """What the counter registered last holds: the next counters of its run (one workload
        and chain, one after another) share its lookups' tuple (a tuple a counter was ~56
        bytes) and append to the same rows of the memo."""
        self._unresolved: dict[tuple[str, RawName], int] = {}
        """(node, raw name) -> counters exported under that raw name."""
        self._unresolved_by_node: dict[str, list[int]] = {}
        """node -> [raw interfaces, raw chains] among ``_unresolved``'s keys, kept as they
        change: a scrape reads it under the accountant's lock, and counting the keys there
        was where the lock was held in event loop pauses of 0.17-0.21 s at 2,000 nodes whose
        names all stayed raw (``bench/load_bench.py --scrape-every``)."""
        self.resolution_errors = 0

    def inherit(self, previous: Router) -> None:
        """Carry over what must outlive a rebuild: last known names, exported error counts."""
        self.memo.inherit(previous.memo)
        self.resolution_errors = previous.resolution_errors

    def resolve(
        self,
        node: str,
        key: CounterKey,
        chain_comment: str,
        group_members: tuple[str, ...],
        comments: Mapping[str, str],
    ) -> Resolution:
        """The names of the counter ``key`` (its chain comment and group members as the ledger
        keeps them), and the lookups that gave them (see :attr:`memo`); once per run of
        counters of one workload and chain (:mod:`aggregator.resolution.runs`) since the last
        :meth:`new_batch`."""
        return self._runs.resolve(node, key, chain_comment, group_members, comments, self._count_error)

    def new_batch(self) -> None:
        """What the next counters are resolved with may have changed (a node's chain
        comments, the catalog): no run continues past here."""
        self._runs.restart()

    def candidate_refs(self, names: CounterNames, key: CounterKey) -> list[SeriesRef]:
        """Every exported series the counter ``key`` of ``names`` belongs to (admission is the
        caller's)."""
        refs: list[SeriesRef] = []
        family_index, projections = self._family_index, self._projections
        for make in self._makers:
            series = make(names, key)
            if series is None:
                continue
            index = family_index.get(series[0])
            if index is None:  # a family of an exported level that is not exported itself
                continue
            labels, projection = series[1], projections[index]
            # No two refs are the same: each level gives at most one series, of its own families.
            refs.append((index, labels if projection is None else tuple([labels[i] for i in projection])))
        return refs

    def route(self, node: str, row: int) -> Route | None:
        """The route of the counter in ``row`` of ``node``, if it has one."""
        routes = self.routes.get(node)
        return routes.get(row) if routes is not None else None

    def register(self, node: str, row: int, resolution: Resolution, slots: tuple[Slot, ...]) -> None:
        """Keep the route of ``row`` of ``node``: ``resolution``'s names and lookups, ``slots``."""
        acquire = self._lookups.acquire
        run = self._run
        if run is not None and run.resolution is resolution and run.node == node:  # the norm
            held = run.lookups
            for lookup in held:
                acquire(lookup)
            user_rows = run.user_rows
        else:
            held = tuple([acquire(lookup) for lookup in resolution.lookups])
            if run is not None and held == run.lookups:  # another kind of the same workload and chain
                held = run.lookups
            user_rows = self.memo.user_rows(node, held)
            self._run = _RunHolds(resolution, node, held, user_rows)
        for rows in user_rows:
            rows.append(row)
        routes = self.routes.get(node)
        if routes is None:
            routes = self.routes[node] = NodeRoutes()
        unresolved = resolution.unresolved
        routes.put(row, resolution.names, slots, held, unresolved)
        for raw in unresolved:
            tag = (node, raw)
            counters = self._unresolved.get(tag, 0)
            self._unresolved[tag] = counters + 1
            if not counters:
                counts = self._unresolved_by_node.setdefault(node, [0, 0])
                counts[_raw_column(raw)] += 1

    def forget(self, node: str, row: int) -> Route | None:
        """Drop the route of ``row`` of ``node`` (returned, or None when it had none)."""
        self._run = None  # the memo's rows it holds may go
        routes = self.routes.get(node)
        route = routes.pop(row) if routes is not None else None
        if route is None:
            return None
        self._release(node, row, route)
        return route

    def forget_node(self, node: str) -> list[Route]:
        """Drop every route of ``node`` (returned)."""
        self._run = None
        routes = self.routes.pop(node, None)
        if routes is None:
            return []
        dropped = [route for row in routes.rows() if (route := routes.get(row)) is not None]
        self.memo.release_node(node, (lookup for route in dropped for lookup in route.lookups))
        for route in dropped:
            self._release_shared(node, route)
        return dropped

    def unresolved_counts(self) -> dict[str, tuple[int, int]]:
        """node -> (unresolved interfaces, unresolved chains) currently exported raw."""
        return {node: (c[0], c[1]) for node, c in self._unresolved_by_node.items()}

    def _release(self, node: str, row: int, route: Route) -> None:
        self.memo.release(node, row, route.lookups)
        self._release_shared(node, route)

    def _release_shared(self, node: str, route: Route) -> None:
        """``route``'s holds on shared lookups, and its raw-name counts, released."""
        for lookup in route.lookups:
            self._lookups.release(lookup)
        for raw in route.unresolved:
            tag = (node, raw)
            left = self._unresolved.get(tag, 0) - 1
            if left > 0:
                self._unresolved[tag] = left
            elif self._unresolved.pop(tag, None) is not None:
                counts = self._unresolved_by_node[node]
                counts[_raw_column(raw)] -= 1
                if counts == [0, 0]:
                    del self._unresolved_by_node[node]

    def _count_error(self, what: str, error: Exception) -> None:
        self.resolution_errors += 1
        if self.resolution_errors <= 10 or self.resolution_errors % 1000 == 0:
            log.warning("resolving %s failed (%s errors so far): %r", what, self.resolution_errors, error)


def _raw_column(raw: RawName) -> int:
    """0 for a raw interface, 1 for a raw chain (the order of :meth:`Router.unresolved_counts`)."""
    return 0 if raw.kind is RawNameKind.INTERFACE else 1
