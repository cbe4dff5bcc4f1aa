"""What the accounting state hands out: resolved increases and totals, and the immutable
copies scrapes and the hit API read outside the lock."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import NamedTuple

from aggregator.metrics import Level, SeriesFamily
from aggregator.model import CounterNames, ResolvedCounter
from calico_accountant.records import CounterKey

__all__ = [
    "ColumnMapping",
    "FamilySeries",
    "FamilyView",
    "Hits",
    "NodeView",
    "ResolvedIncrease",
    "ResolvedTotal",
    "StateView",
]


class ResolvedIncrease(NamedTuple):
    """One counter's growth in one update, with names: a *hit*, what the hit API streams.

    Only traffic the aggregator saw happen is a hit: not a zero increase (a series being
    created) and not what a node's first snapshot since the aggregator started carries
    (``Increase.initial``: traffic since the rule was created, already history; its totals
    are in ``Snapshot`` and ``/metrics``).  A first snapshot's thousands of counters make
    no object here.  The counter's names are its run's (:class:`~aggregator.model.CounterNames`):
    its :attr:`counter` is made only when a consumer asks (most hits reach none).
    """

    names: CounterNames
    key: CounterKey
    packets: int
    bytes: int
    time: datetime
    """The agent's read time of the snapshot that carried it."""

    @property
    def counter(self) -> ResolvedCounter:
        return self.names.counter(self.key)


@dataclass(slots=True)
class Hits:
    """One snapshot's hits (:class:`ResolvedIncrease`), in columns: what applying a snapshot
    hands to the hit API.

    Columns, not a tuple per hit: a 5,000-node cluster makes ~200k hits a second, most of
    which no consumer ever asks for, and making a tuple and the hit API's entry for each,
    with the garbage collector's passes over the 100k kept for replays, took ~40 % of the
    aggregator's steady CPU (``bench/load_bench.py``, 1,000 simulated nodes: 0.48 core
    before, 0.29 after).  Appending to four lists makes no object the collector tracks.
    Iterating makes each :class:`ResolvedIncrease` on demand."""

    time: datetime
    """The agent's read time of the snapshot: every hit's."""
    names: list[CounterNames] = field(default_factory=list)
    keys: list[CounterKey] = field(default_factory=list)
    packets: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[ResolvedIncrease]:
        return map(ResolvedIncrease, self.names, self.keys, self.packets, self.bytes, repeat(self.time))


@dataclass(frozen=True, slots=True)
class ResolvedTotal:
    """A counter's monotonic total, with names: what the Snapshot API returns."""

    counter: ResolvedCounter
    packets: int
    bytes: int
    live: bool


Labels = tuple[str, ...]


class ColumnMapping(Mapping[Labels, tuple[int, int]]):
    """A family's series as a read-only mapping of label sets to (packets, bytes), over
    columns copied from its table: copying columns under the accountant's lock is a few
    C-level copies, where building a dictionary hashed every label tuple (a checkpoint's
    capture of a million series held the lock twice as long).  Iterating its items hashes
    nothing; the first lookup by labels builds an index."""

    __slots__ = ("_bytes", "_index", "_labels", "_packets")

    def __init__(self, labels: tuple[Labels, ...], packets: tuple[int, ...], octets: tuple[int, ...]) -> None:
        self._labels = labels
        self._packets = packets
        self._bytes = octets
        self._index: dict[Labels, int] | None = None

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[Labels]:
        return iter(self._labels)

    def __getitem__(self, labels: Labels) -> tuple[int, int]:
        if self._index is None:
            self._index = {series: position for position, series in enumerate(self._labels)}
        position = self._index[labels]
        return self._packets[position], self._bytes[position]

    def items(self) -> ItemsView[Labels, tuple[int, int]]:
        return _ColumnItems(self)

    def pairs(self) -> Iterator[tuple[Labels, tuple[int, int]]]:
        """(labels, (packets, bytes)) in column order, without lookups."""
        return zip(self._labels, zip(self._packets, self._bytes, strict=True), strict=True)


class _ColumnItems(ItemsView[Labels, tuple[int, int]]):
    _mapping: ColumnMapping

    def __iter__(self) -> Iterator[tuple[Labels, tuple[int, int]]]:
        return self._mapping.pairs()


@dataclass(frozen=True, slots=True)
class FamilySeries:
    """The series of one exported family, by its name and label names (what a checkpoint
    keeps: it must still mean the same series when the options that index families change)."""

    family: str
    label_names: tuple[str, ...]
    values: Mapping[tuple[str, ...], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class FamilyView:
    """One family's series, copied: label sets, label texts, packets and bytes as parallel
    tuples (copying a million series' columns is a few C-level copies; pairing them made a
    tuple per series under the accountant's lock, 1.5 s at a million)."""

    family: SeriesFamily
    label_names: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    texts: tuple[str, ...]
    """Each series' ``{name="value",...}`` (:mod:`aggregator.series.label_text`)."""
    packets: tuple[int, ...]
    bytes: tuple[int, ...]

    @property
    def values(self) -> tuple[tuple[int, int], ...]:
        """(packets, bytes) per series."""
        return tuple(zip(self.packets, self.bytes, strict=True))

    @property
    def series(self) -> tuple[tuple[tuple[str, ...], tuple[int, int]], ...]:
        """(label values, (packets, bytes)) per series."""
        return tuple(zip(self.labels, self.values, strict=True))


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
    dataplanes: tuple[int, ...] = ()
    """``Dataplane`` values the node's tables were last read from."""


@dataclass(frozen=True, slots=True)
class StateView:
    """An immutable copy of everything a scrape renders."""

    families: tuple[FamilyView, ...]
    nodes: tuple[NodeView, ...]
    series_count: int
    overflow: Mapping[str, int]
    resolution_errors: int
    expired_counters: int = 0
    forgotten_nodes: int = 0
    rebuilds: int = 0
    moved_counters: int = 0
    levels: frozenset[Level] = field(default_factory=frozenset)
