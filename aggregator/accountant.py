"""The aggregator's accounting state: ledger and series behind one lock.

Threading: :class:`Accountant` is mutated by the asyncio ingest loop and the workers it
hands large snapshots to, and read by scrapes and the hit API from other threads; every
method takes its lock, and :meth:`Accountant.view` returns an immutable copy that is
rendered outside the lock.

A snapshot is applied in steps of at most ``chunk`` counters
(:meth:`~aggregator.ledger.ledger.Ledger.applying`), the lock held per step, not for the
whole snapshot: a 160k-counter full snapshot took the lock for seconds, and everything
else waited that long -- other nodes' deltas (applied on the event loop, which then
stopped answering health checks and keepalives too), scrapes, checkpoints.  Between steps
readers see part of the snapshot's increases (series only ever grow, so a scrape is still
right); two snapshots of one node never interleave (a per-node lock).  A scrape's copy is
taken in steps too (:data:`VIEW_STEP` series each): every value in it is one its series
had, but two series may be read a step apart, as when each is read at its own time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain

from aggregator.ledger.admission import Refusal
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import NodeRecord, NodeUpdate
from aggregator.resolution.resolve import Resolver
from aggregator.series.options import SeriesOptions
from aggregator.series.state import SeriesState
from aggregator.series.table import Columns
from aggregator.series.views import (
    FamilySeries,
    FamilyView,
    Hits,
    NodeView,
    ResolvedTotal,
    StateView,
)

__all__ = ["APPLY_CHUNK", "Accountant", "SnapshotRefused"]

APPLY_CHUNK = 1000
"""Counters applied per step under the lock (~10 ms)."""

VIEW_STEP = 100_000
"""Series slots a scrape's copy takes per step under the lock.  Copied in one go, the
state's columns held the lock for ~0.2 us a series (a cache miss on each value's reference
count): 1.38 s at 5,000 simulated nodes with ``app,node,cluster`` (6.5 M series,
``bench/levels_bench.py``), and the event loop, applying small deltas itself, waited as long."""


class SnapshotRefused(Exception):
    """The snapshot was not applied: out of sequence for its agent instance, or over one
    of the ledger's limits (:attr:`refusal` says which)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


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
        chunk: int = APPLY_CHUNK,
    ) -> None:
        self._lock = threading.Lock()
        self.chunk = chunk
        self._appliers: dict[str, tuple[threading.Lock, list[int]]] = {}
        """node -> its apply lock and how many applies use it (dropped at zero)."""
        self.ledger = ledger or Ledger()
        self._series = SeriesState(resolver, options)
        self._expired_counters = 0
        self._forgotten_nodes = 0
        self._rebuilds = 0
        self._moved = 0

    @property
    def options(self) -> SeriesOptions:
        return self._series.options

    def apply(self, update: NodeUpdate, now: float) -> Hits:
        """Apply one snapshot; returns its hits (:class:`~aggregator.series.views.Hits`:
        no zero increases, nothing from a node's first snapshot).  Raises :class:`SnapshotRefused` (after
        the ledger counted it) when the ledger refuses the snapshot.  Takes the lock once
        per step of :attr:`chunk` counters (see the module docstring)."""
        with self._applying(update.node):
            steps = self.ledger.applying(update, now, self.chunk)
            hits = Hits(update.read_time)
            with self._lock:
                try:
                    step = next(steps)
                except StopIteration as refused:  # no step: the ledger refused it (and counted it)
                    assert refused.value is not None, "a snapshot the ledger applies has a step"
                    raise SnapshotRefused(refused.value) from None
                self._series.apply(step.increases, self.ledger, hits)
            while not step.last:  # the ledger's last step is marked
                time.sleep(0)  # let a thread waiting for the lock (the event loop's) take it
                with self._lock:
                    step = next(steps)
                    self._series.apply(step.increases, self.ledger, hits)
            return hits

    @contextmanager
    def _applying(self, node: str) -> Iterator[None]:
        """Hold ``node``'s apply lock: one snapshot of a node at a time."""
        with self._lock:
            lock, users = self._appliers.get(node) or self._appliers.setdefault(node, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._lock:
                users[0] -= 1
                if not users[0]:
                    del self._appliers[node]

    def capture(self) -> tuple[list[NodeRecord], list[FamilySeries], list[FamilySeries]]:
        """A consistent copy of what a checkpoint keeps: the ledger's nodes and counters,
        the series, the tombstones."""
        with self._lock:
            return self.ledger.export(), self._series.family_series(), self._series.family_tombstones()

    def restore(
        self, nodes: Iterable[NodeRecord], series: Iterable[FamilySeries], tombstones: Iterable[FamilySeries]
    ) -> int:
        """Continue from a checkpoint: the ledger's raw values and totals, every series at
        its checkpointed value, re-routed through the current catalog.  Returns how many
        series could not be placed (their family is not exported with the same labels
        any more)."""
        with self._lock:
            self.ledger.restore(nodes)
            values, dropped = self._series.refs_of(series)
            buried, dropped_tombstones = self._series.refs_of(tombstones)
            self._series = self._series.rebuilt(self.ledger, values=values, tombstones=buried)
            return dropped + dropped_tombstones

    def nodes_reported_since(self, since: float) -> set[str]:
        """The nodes with a snapshot applied at or after ``since`` (the ingest clock)."""
        with self._lock:
            return {state.node for state in self.ledger.nodes() if state.received_at >= since}

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
        """Forget counters retired longer than the grace period, and nodes that stopped
        reporting longer ago than the node expiry; returns series removed."""
        with self._lock:
            expired = self.ledger.expire(now)
            self._expired_counters += len(expired)
            removed = self._series.expire(expired)
            gone = set()
            for forgotten in self.ledger.forget_nodes(now):
                self._expired_counters += len(forgotten.counters)
                self._forgotten_nodes += 1
                gone.add(forgotten.node)
            return removed + self._series.forget_nodes(gone)

    def node_names(self) -> list[str]:
        """The nodes the ledger holds."""
        with self._lock:
            return self.ledger.node_names()

    def forget_nodes(self, nodes: Iterable[str]) -> int:
        """Forget ``nodes`` at once (they moved to another shard): their series leave, what
        they counted stays in the series summed over nodes.  Returns series removed."""
        with self._lock:
            gone = {node for node in nodes if self.ledger.forget(node) is not None}
            return self._series.forget_nodes(gone)

    def totals(self) -> list[ResolvedTotal]:
        """Every counter the ledger remembers, resolved, with its total."""
        with self._lock:
            out: list[ResolvedTotal] = []
            for node, row, state in self.ledger.rows():
                counter = self._series.resolved(node, row, state.key)
                if counter is None:
                    counter = self._series.resolve_state(node, state, self.ledger.chain_comments(node))
                out.append(ResolvedTotal(counter, state.total_packets, state.total_bytes, state.live))
            return out

    def node_views(self, now: float) -> list[NodeView]:
        with self._lock:
            return self._node_views(now)

    def view(self, now: float) -> StateView:
        """A copy for rendering outside the lock, taken :data:`VIEW_STEP` series at a time
        (see the module docstring)."""
        series = self._series
        families = tuple(
            FamilyView(family, series.label_names[index], *self._family_columns(index))
            for index, family in enumerate(series.families)
        )
        with self._lock:
            return StateView(
                families=families,
                nodes=tuple(self._node_views(now)),
                series_count=series.series_count,
                overflow={level.value: count for level, count in series.overflow.items()},
                resolution_errors=series.resolution_errors,
                expired_counters=self._expired_counters,
                forgotten_nodes=self._forgotten_nodes,
                rebuilds=self._rebuilds,
                moved_counters=self._moved,
                levels=series.options.levels,
            )

    def busy(self) -> bool:
        """Whether some thread holds the lock now (the event loop then hands even a small
        snapshot to the ingest worker rather than wait for it)."""
        return self._lock.locked()

    def _family_columns(self, index: int) -> Columns:
        """Family ``index``'s columns, copied a step at a time under the lock and joined
        outside it."""
        steps: list[Columns] = []
        start = 0
        while True:
            with self._lock:
                if steps and start >= self._series.slot_count(index):
                    break
                steps.append(self._series.columns(index, start, start + VIEW_STEP))
            start += VIEW_STEP
        if len(steps) == 1:
            return steps[0]
        labels, texts, packets, octets = zip(*steps, strict=True)
        return (
            tuple(chain.from_iterable(labels)),
            tuple(chain.from_iterable(texts)),
            tuple(chain.from_iterable(packets)),
            tuple(chain.from_iterable(octets)),
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
                    dataplanes=state.dataplanes,
                )
            )
        return views
