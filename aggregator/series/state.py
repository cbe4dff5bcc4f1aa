"""Every exported series and its (packets, bytes) value, kept up to date as counters grow.

A scrape must be cheap no matter how many counters the cluster has, so nothing is
computed at scrape time: every increase the :class:`~aggregator.ledger.ledger.Ledger` reports is
routed once (:mod:`aggregator.series.routes`) and added to every series it belongs to,
at each exported level.

The rule that keeps Prometheus right: **a series is the sum of the increases routed to
it, and never decreases while the process lives.**

* When the catalog changes a counter's names (a pod or policy learned late, renamed,
  deleted, an interface reused), only the counter's *future* increases go to its new
  series (:meth:`SeriesState.set_resolver`); what it counted stays where it was counted.
  Moving totals would make the old series fall, or the new one jump by history, and
  ``increase()`` would report traffic that never happened.
* Per-workload series (and the compatibility names) leave once no counter routes to
  them (the pod's counters expired); node and cluster series stay, so sums never drop;
  when the ledger forgets a whole node, the series labelled with it leave too.
* A series that leaves is remembered as a *tombstone* (its last value); if the same
  label set comes back (a StatefulSet pod re-created, a node returning) it continues
  from there.  At most ``max_tombstones`` are kept (oldest forgotten first): a label
  set that comes back after that starts from zero, which Prometheus reads as a reset.
* :meth:`SeriesState.rebuilt` routes every counter afresh (the cap's priorities:
  cluster, node, workload series) without changing any value; it is also how a
  checkpoint is restored: the checkpoint's values are the tombstones the rebuild revives.

A cap on the number of series refuses new series beyond it and counts each once.

Each family's series are kept in columns by slot (:mod:`aggregator.series.table`), with
each series' label text (:mod:`aggregator.series.label_text`) made when the series is
created: routes hold slots, so an increase is added without hashing label tuples, and a
scrape copies whole columns and looks nothing up.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import CounterState, ExpiredCounter, Increases
from aggregator.metrics import Level, SeriesFamily
from aggregator.model import CounterNames, ResolvedCounter
from aggregator.resolution.resolve import Resolver
from aggregator.resolution.runs import Resolution
from aggregator.series.label_text import label_text
from aggregator.series.options import SeriesOptions
from aggregator.series.routes import Router, SeriesRef, Slot
from aggregator.series.table import Columns, SeriesTable
from aggregator.series.views import ColumnMapping, FamilySeries, Hits
from calico_accountant.records import CounterKey

__all__ = ["DEFAULT_MAX_TOMBSTONES", "SeriesState"]

_LEVEL_PRIORITY = (Level.CLUSTER, Level.APP, Level.NODE, Level.WORKLOAD, Level.COMPAT)
DEFAULT_MAX_TOMBSTONES = 200_000
"""Removed series remembered for continuation (~200 bytes each)."""

SeriesValues = Mapping[SeriesRef, tuple[int, int]]


class SeriesState:
    """Every exported series and its value.  Not thread-safe."""

    def __init__(
        self,
        resolver: Resolver,
        options: SeriesOptions | None = None,
        *,
        max_tombstones: int = DEFAULT_MAX_TOMBSTONES,
    ) -> None:
        self.options = options or SeriesOptions()
        self.router = Router(resolver, self.options)
        self.families: tuple[SeriesFamily, ...] = self.router.families
        self.label_names = self.router.label_names
        self.tables: list[SeriesTable] = [SeriesTable(index) for index in range(len(self.families))]
        """Per family, its series by slot."""
        self.max_tombstones = max_tombstones
        self._tombstones: dict[SeriesRef, tuple[int, int]] = {}
        self._refused: set[SeriesRef] = set()
        self._ever_refused: set[SeriesRef] = set()
        """Every series ever refused, so a rebuild does not count it twice."""
        self.overflow: dict[Level, int] = {}
        """Series refused because of the cap, per level (each counted once)."""
        self.series_count = 0

    @property
    def resolver(self) -> Resolver:
        return self.router.memo.resolver

    @property
    def resolution_errors(self) -> int:
        return self.router.resolution_errors

    # -- as counters grow ------------------------------------------------------------------

    def apply(self, increases: Increases, ledger: Ledger, hits: Hits) -> None:
        """Add ``increases`` (one node's) to their series (routing new counters); the hits
        among them are added to ``hits``."""
        self.router.new_batch()
        node = increases.node
        node_routes = self.router.routes.get(node)
        names_of, slots_of = (node_routes.names, node_routes.slots) if node_routes else ([], [])
        routed = len(names_of)
        packets_of = [table.packets for table in self.tables]
        bytes_of = [table.bytes for table in self.tables]
        comments = ledger.chain_comments(node)  # a live view
        keys, chain_comments, group_members = (
            increases.keys,
            increases.chain_comments,
            increases.group_members,
        )
        hit_names, hit_keys = hits.names.append, hits.keys.append
        all_hits = increases.all_hits
        initial = increases.initial
        hits_before = len(hits.names)  # (another step of the snapshot may have added some)
        for row, packets, octets in zip(increases.rows, increases.packets, increases.bytes, strict=True):
            names = names_of[row] if row < routed else None
            if names is None:
                key = keys[row] if row < len(keys) else None
                if key is None:  # not possible through Accountant; tolerate anyway
                    if all_hits:  # hit by hit from here: the hits so far take their values
                        done = len(hits.names) - hits_before
                        hits.packets.extend(increases.packets[:done])
                        hits.bytes.extend(increases.bytes[:done])
                        all_hits = False
                    continue
                names, slots = self._route(node, row, key, chain_comments[row], group_members[row], comments)
                node_routes = self.router.routes[node]  # the lists may have been made or grown
                names_of, slots_of = node_routes.names, node_routes.slots
                routed = len(names_of)
            else:
                slots = slots_of[row]
            for index, slot in slots:
                packets_of[index][slot] += packets
                bytes_of[index][slot] += octets
            if all_hits or ((packets or octets) and row not in initial):  # a hit (see Hits)
                hit_names(names)
                hit_keys(keys[row])  # type: ignore[arg-type]  # a routed row holds a counter
                if not all_hits:
                    hits.packets.append(packets)
                    hits.bytes.append(octets)
        if all_hits:
            hits.packets.extend(increases.packets)
            hits.bytes.extend(increases.bytes)

    def expire(self, expired: Iterable[ExpiredCounter]) -> int:
        """Expired counters stop holding their series: per-workload series without another
        holder leave; aggregate series stay.  Returns the number of series removed."""
        removed = 0
        for item in expired:
            route = self.router.forget(item.node, item.row)
            if route is not None:
                removed += sum(self._release(slot) for slot in route.slots)
        return removed

    def forget_nodes(self, nodes: Collection[str]) -> int:
        """The ledger forgot ``nodes``: their counters expire, and every series labelled with
        one of them leaves; series summed over nodes keep what they counted.  One pass over
        the node-labelled series for all of them: a shard handing over half its nodes
        forgets thousands at once, and a pass each was ~50 ms a node at 5,000 nodes."""
        removed = 0
        for node in nodes:
            for route in self.router.forget_node(node):
                removed += sum(self._release(slot) for slot in route.slots)
        if not nodes:
            return removed
        for index, position in enumerate(self.router.node_label):
            if position is None:
                continue
            table = self.tables[index]
            for labels in [labels for labels in table.slots if labels[position] in nodes]:
                slot = table.slots[labels]
                if not table.holders[slot]:
                    removed += self._remove(table.refs[slot])
        return removed

    def set_resolver(self, resolver: Resolver, ledger: Ledger) -> int:
        """The catalog changed: the counters whose names changed get new routes, for
        their future increases.  Returns how many counters were re-routed."""
        moved = 0
        self.router.new_batch()
        for node, row in self.router.memo.refresh(resolver):
            route = self.router.forget(node, row)
            state = ledger.counter_at(node, row)
            if route is None or state is None:
                continue
            for slot in route.slots:
                self._release(slot)
            self._route(
                node, row, state.key, state.chain_comment, state.group_members, ledger.chain_comments(node)
            )
            moved += 1
        return moved

    # -- routing everything afresh ---------------------------------------------------------

    def rebuilt(
        self,
        ledger: Ledger,
        resolver: Resolver | None = None,
        *,
        values: SeriesValues | None = None,
        tombstones: SeriesValues | None = None,
    ) -> SeriesState:
        """A new state with the same options, every counter routed afresh and every series
        value carried over.  Under a cap aggregate series are admitted first, which needs
        every counter's series before any is made; without one (the default) each counter is
        routed as it comes, as a first snapshot's are (a restore ~13 % faster,
        ``bench/checkpoint_bench.py``).  Values: this state's series and tombstones, or
        ``values`` and ``tombstones`` (a restored checkpoint's) when given."""
        fresh = SeriesState(resolver or self.resolver, self.options, max_tombstones=self.max_tombstones)
        fresh.router.inherit(self.router)
        fresh.overflow = dict(self.overflow)  # exported as counters: must not go down
        fresh._ever_refused = set(self._ever_refused)
        carried = self.series_values() if values is None else dict(values)
        fresh._tombstones = dict(self._tombstones if tombstones is None else tombstones)
        fresh._tombstones.update(carried)
        if fresh.options.max_series is None:  # no cap: no priorities, each counter routed as it comes
            for node in ledger.node_names():
                fresh._route_node(node, ledger)
            for ref in carried:  # exported aggregate series stay even without a holder
                if not fresh.families[ref[0]].per_workload:
                    fresh._admit(ref)
            fresh._prune_tombstones()
            return fresh
        pending: list[tuple[str, int, Resolution, list[SeriesRef]]] = []
        for node in ledger.node_names():
            comments = ledger.chain_comments(node)
            for row, state in ledger.node_rows(node):
                key = state.key
                resolution = fresh.router.resolve(
                    node, key, state.chain_comment, state.group_members, comments
                )
                pending.append((node, row, resolution, fresh.router.candidate_refs(resolution.names, key)))
        by_level: dict[Level, list[SeriesRef]] = {level: [] for level in _LEVEL_PRIORITY}
        for ref in carried:  # exported aggregate series stay even without a holder
            if not fresh.families[ref[0]].per_workload:
                by_level[fresh.families[ref[0]].level].append(ref)
        for *_, refs in pending:
            for ref in refs:
                by_level[fresh.families[ref[0]].level].append(ref)
        admitted: dict[SeriesRef, Slot] = {}
        for level in _LEVEL_PRIORITY:
            for ref in by_level[level]:
                if ref not in admitted:
                    slot = fresh._admit(ref)
                    if slot is not None:
                        admitted[ref] = slot
        for node, row, resolution, refs in pending:
            kept = tuple([admitted[ref] for ref in refs if ref in admitted])  # a list: no generator frame
            fresh.router.register(node, row, resolution, kept)
            fresh._hold(kept)
        fresh._prune_tombstones()
        return fresh

    # -- reading ---------------------------------------------------------------------------

    def series_values(self) -> dict[SeriesRef, tuple[int, int]]:
        """Every exported series' value."""
        return {
            (index, labels): value
            for index, table in enumerate(self.tables)
            for labels, value in table.items()
        }

    def family_series(self) -> list[FamilySeries]:
        """The exported series per family, copied (what a checkpoint keeps): their columns,
        so that the copy under the lock hashes nothing (:class:`ColumnMapping`)."""
        copies: list[FamilySeries] = []
        for index, family in enumerate(self.families):
            labels, _, packets, octets = self.columns(index)
            values = ColumnMapping(labels, packets, octets)
            copies.append(FamilySeries(family.packets_name, self.label_names[index], values))
        return copies

    def family_tombstones(self) -> list[FamilySeries]:
        """The tombstones per family, copied (what a checkpoint keeps)."""
        per_family: list[dict[tuple[str, ...], tuple[int, int]]] = [{} for _ in self.families]
        for (index, labels), value in self._tombstones.items():
            per_family[index][labels] = value
        return [
            FamilySeries(family.packets_name, self.label_names[index], per_family[index])
            for index, family in enumerate(self.families)
            if per_family[index]
        ]

    def refs_of(self, families: Iterable[FamilySeries]) -> tuple[dict[SeriesRef, tuple[int, int]], int]:
        """Checkpointed series as this state's refs, and how many could not be placed (a
        family no longer exported, or exported with other labels: options changed)."""
        index_of = {family.packets_name: index for index, family in enumerate(self.families)}
        placed: dict[SeriesRef, tuple[int, int]] = {}
        dropped = 0
        for family in families:
            index = index_of.get(family.family)
            if index is None or self.label_names[index] != family.label_names:
                dropped += len(family.values)
                continue
            for labels, value in family.values.items():
                placed[(index, labels)] = value
        return placed, dropped

    def resolved(self, node: str, row: int, key: CounterKey) -> ResolvedCounter | None:
        """The counter ``key`` in ``row`` of ``node``, with the names it was routed by."""
        route = self.router.route(node, row)
        return route.names.counter(key) if route else None

    def resolve_state(self, node: str, state: CounterState, comments: Mapping[str, str]) -> ResolvedCounter:
        """Resolve a counter without routing it (e.g. for the Snapshot API)."""
        self.router.new_batch()
        key = state.key
        return self.router.resolve(
            node, key, state.chain_comment, state.group_members, comments
        ).names.counter(key)

    def unresolved_counts(self) -> dict[str, tuple[int, int]]:
        return self.router.unresolved_counts()

    # -- internals -------------------------------------------------------------------------

    def _route(
        self,
        node: str,
        row: int,
        key: CounterKey,
        chain_comment: str,
        group_members: tuple[str, ...],
        comments: Mapping[str, str],
    ) -> tuple[CounterNames, tuple[Slot, ...]]:
        """Route the new counter ``key`` in ``row`` (``chain_comment`` and ``group_members``:
        its own, as the ledger keeps them): its names and the series it adds to."""
        router = self.router
        resolution = router.resolve(node, key, chain_comment, group_members, comments)
        tables = self.tables
        slots: list[Slot] = []
        for ref in router.candidate_refs(resolution.names, key):  # _admit and _hold, inline: the hot path
            table = tables[ref[0]]
            slot = table.slots.get(ref[1])
            held = table.refs[slot] if slot is not None else self._create(ref)
            if held is not None:
                table.holders[held[1]] += 1
                slots.append(held)
        route = tuple(slots)
        router.register(node, row, resolution, route)
        return resolution.names, route

    def _route_node(self, node: str, ledger: Ledger) -> None:
        """Route every counter of ``node`` (none routed yet), in row order."""
        keys, chain_comments, group_members = ledger.routing_columns(node)
        comments = ledger.chain_comments(node)
        route = self._route
        for row, key in enumerate(keys):
            if key is not None:
                route(node, row, key, chain_comments[row], group_members[row], comments)

    def _hold(self, slots: Iterable[Slot]) -> None:
        tables = self.tables
        for index, slot in slots:
            tables[index].holders[slot] += 1

    def _release(self, slot: Slot) -> int:
        """One counter less behind ``slot``; a per-workload series without holders leaves."""
        holders = self.tables[slot[0]].holders
        holders[slot[1]] -= 1
        if holders[slot[1]] > 0 or not self.families[slot[0]].per_workload:
            return 0
        return self._remove(slot)

    def _remove(self, slot: Slot) -> int:
        labels, value = self.tables[slot[0]].remove(slot[1])
        self.series_count -= 1
        self._tombstones[(slot[0], labels)] = value
        self._prune_tombstones()
        return 1

    def _prune_tombstones(self) -> None:
        tombstones = self._tombstones
        while len(tombstones) > self.max_tombstones:
            del tombstones[next(iter(tombstones))]  # the oldest: dicts keep insertion order

    def _admit(self, ref: SeriesRef) -> Slot | None:
        """The slot of ``ref``'s series, created if it may be (at its tombstone's value,
        else zero); None when the cap refuses it."""
        table = self.tables[ref[0]]
        slot = table.slots.get(ref[1])
        return table.refs[slot] if slot is not None else self._create(ref)

    def _create(self, ref: SeriesRef) -> Slot | None:
        """A new series for ``ref`` (not live), at its tombstone's value, else zero; None when
        the cap refuses it."""
        index, labels = ref
        table = self.tables[index]
        if ref in self._refused:
            return None
        cap = self.options.max_series
        if cap is not None and self.series_count >= cap:
            self._refused.add(ref)
            if ref not in self._ever_refused:
                self._ever_refused.add(ref)
                level = self.families[index].level
                self.overflow[level] = self.overflow.get(level, 0) + 1
            return None
        packets, octets = self._tombstones.pop(ref, (0, 0))
        self.series_count += 1
        return table.refs[table.add(labels, label_text(self.label_names[index], labels), packets, octets)]

    def columns(self, index: int, start: int = 0, stop: int | None = None) -> Columns:
        """A copy of family ``index``'s live series in slots ``start`` to ``stop`` (what a
        scrape renders)."""
        return self.tables[index].columns(start, stop)

    def slot_count(self, index: int) -> int:
        """The slots of family ``index``'s table (live series and holes)."""
        return self.tables[index].size
