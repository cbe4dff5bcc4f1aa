"""What the ledger keeps per node and counter, and what it hands out: increases,
expired counters, forgotten nodes, and copies for a checkpoint."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from sys import intern
from typing import NamedTuple, Protocol

from calico_accountant.records import CounterKey, CounterRecord
from calico_accountant.wire.keyed import KeyedColumns
from calico_accountant.wire.snapshots import SourceInfo

__all__ = [
    "ApplyStep",
    "CounterState",
    "ExpiredCounter",
    "FirstSnapshot",
    "ForgottenNode",
    "Increase",
    "Increases",
    "NodeRecord",
    "NodeState",
    "NodeUpdate",
    "ResetReason",
    "RoutingColumns",
    "copy_state",
    "interned_key",
]


class NodeUpdate(Protocol):
    """One whole node snapshot as the ledger applies it: what
    :func:`calico_accountant.wire.snapshots.decode_snapshot` returns (``DecodedSnapshot``)."""

    @property
    def node(self) -> str: ...
    @property
    def agent_instance_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def read_time(self) -> datetime: ...
    @property
    def full(self) -> bool: ...
    @property
    def records(self) -> Sequence[CounterRecord]: ...
    @property
    def removed(self) -> Sequence[CounterKey]: ...
    @property
    def diagnostic_counts(self) -> Mapping[str, int]: ...
    @property
    def agent_version(self) -> str: ...
    @property
    def invalid_counters(self) -> int: ...
    @property
    def sources(self) -> Sequence[SourceInfo]: ...
    @property
    def key_ids(self) -> Sequence[int]: ...
    @property
    def values(self) -> KeyedColumns: ...
    @property
    def removed_ids(self) -> Sequence[int]: ...


class FirstSnapshot(enum.Enum):
    """What a node's first snapshot (since start, or since the node was forgotten) adds."""

    BASELINE = "baseline"
    """Nothing: its raw values are the baseline later snapshots are differenced against."""
    COUNT = "count"
    """Its raw values: all traffic since each rule was created (for a one-shot report)."""


class ResetReason(enum.StrEnum):
    """Why a counter's raw value could not simply be differenced."""

    DECREASED = "decreased"
    RULES_REWRITTEN = "rules_rewritten"
    INEXACT = "inexact"


class Increase(NamedTuple):
    """How much one counter grew in one update: one item of :class:`Increases`.

    Zero increases are reported once for every key the ledger sees for the first time,
    so that series exist for policies that never matched; the hit API skips them.
    """

    node: str
    key: CounterKey
    row: int
    """The counter's row in its node's columns (:mod:`aggregator.ledger.rows`): where the
    series keep its route."""
    packets: int
    bytes: int
    initial: bool = False
    """Counted from the node's first snapshot since the aggregator started: traffic since
    the rule was created, not traffic since the previous read."""
    new_key: bool = False


@dataclass(slots=True, eq=False)
class Increases:
    """One step's increases (:class:`Increase`), all of one node, in columns: rows and
    differences.

    Columns, not a tuple per changed counter: at 5,000 nodes the ledger reports ~230k
    increases a second, and each tuple (made, read field by field by the series, then
    dropped) cost more than the three appends that replace it; each was also an object
    for the cyclic collector, whose young collections ran every ~700 of them.  A counter's
    key is not copied either: it is ``keys[row]``, the ledger's own column, valid while the
    step is applied (a row is reused only by a later snapshot); nor are the other columns a
    new counter is resolved by."""

    node: str
    keys: Sequence[CounterKey | None]
    """The node's keys by row (the ledger's column: read-only)."""
    chain_comments: Sequence[str]
    """Each row's own chain comment (the ledger's column: read-only; what resolving a new
    counter reads besides its key, so routing it needs no copy of its row)."""
    group_members: Sequence[tuple[str, ...]]
    """Each row's group members (the ledger's column: read-only)."""
    rows: list[int] = field(default_factory=list)
    packets: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    initial: set[int] = field(default_factory=set)
    """The rows counted from the node's first snapshot (:attr:`Increase.initial`)."""
    new_keys: set[int] = field(default_factory=set)
    """The rows of keys seen for the first time (their increase may be zero)."""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Increase]:
        """The increases one by one (tests and one-shot callers; not the hot path)."""
        node, keys, initial, new_keys = self.node, self.keys, self.initial, self.new_keys
        for row, packets, octets in zip(self.rows, self.packets, self.bytes, strict=True):
            key = keys[row]
            assert key is not None, "an increase names a row that holds a counter"
            yield Increase(node, key, row, packets, octets, row in initial, row in new_keys)

    @property
    def all_hits(self) -> bool:
        """Every increase is a hit (none zero, none initial): the series may take the
        packets and bytes columns whole (what a delta by key id always is)."""
        return not self.new_keys and not self.initial


class RoutingColumns(NamedTuple):
    """A node's counters by row as a route is worked out from them: the ledger's own columns
    (read-only, valid until the ledger next changes; a hole's key is None)."""

    keys: Sequence[CounterKey | None]
    chain_comments: Sequence[str]
    group_members: Sequence[tuple[str, ...]]


class ApplyStep(NamedTuple):
    """One step of :meth:`~aggregator.ledger.ledger.Ledger.applying`: its increases, and
    whether it is the last (the snapshot is then applied whole: a caller taking turns with
    other threads between steps has no turn to give after it)."""

    increases: Increases
    last: bool


@dataclass(slots=True)
class CounterState:
    """One counter as the ledger hands it out: a copy of its row
    (:class:`aggregator.ledger.rows.CounterRows`, where the ledger keeps it), or a
    checkpoint's counter on its way in."""

    key: CounterKey
    raw_packets: int
    raw_bytes: int
    rule_ids: tuple[str, ...]
    total_packets: int
    total_bytes: int
    chain_comment: str = ""
    group_members: tuple[str, ...] = ()
    retired_at: float | None = None
    """When the key vanished from its node's snapshots; None while live."""

    @property
    def live(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True, slots=True)
class ExpiredCounter:
    """A retired counter whose grace period ended: the ledger forgot it (and freed ``row``)."""

    node: str
    row: int
    state: CounterState


@dataclass(frozen=True, slots=True)
class ForgottenNode:
    """A node that stopped reporting long ago: the ledger forgot it and its counters."""

    node: str
    counters: Sequence[CounterState]


@dataclass(slots=True)
class NodeState:
    """What the aggregator knows about one node's agent."""

    node: str
    instance_id: str = ""
    sequence: int = 0
    read_time: float = 0.0
    received_at: float = 0.0
    connected: bool = False
    agent_version: str = ""
    snapshots: int = 0
    diagnostic_counts: dict[str, int] = field(default_factory=dict)
    """As last reported by the current agent instance."""
    diagnostic_totals: dict[str, int] = field(default_factory=dict)
    """Monotonic across agent restarts (what the ``_total`` metric exports)."""
    resets: dict[str, int] = field(default_factory=dict)
    """Counter resets seen, per :class:`ResetReason` value."""
    sequence_gaps: int = 0
    """Deltas refused because they did not follow the previous sequence of their instance
    (or no full snapshot of it was applied); a full resync follows."""
    out_of_order: int = 0
    """Snapshots refused because their sequence was not newer than the last applied one."""
    invalid_counters: int = 0
    """Counters the wire decoder dropped because they did not validate."""
    limit_refusals: int = 0
    """Snapshots refused whole because they would exceed a :class:`Limits` cap."""
    counters_known: int = 0
    """Counters ever seen on the node and not yet forgotten (live + retired)."""
    counters_retired: int = 0
    dataplanes: tuple[int, ...] = ()
    """Distinct ``Dataplane`` values of the last snapshot's table sources (not checkpointed:
    the next snapshot brings them back)."""

    @property
    def counters_live(self) -> int:
        return self.counters_known - self.counters_retired

    @property
    def inexact_resets(self) -> int:
        return self.resets.get(ResetReason.INEXACT.value, 0)

    def stale(self, now: float, timeout: float) -> bool:
        """No snapshot received for longer than ``timeout`` seconds (or never)."""
        return self.snapshots == 0 or now - self.received_at > timeout


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node's part of the ledger, copied out (what a checkpoint keeps): nothing in it
    changes when the ledger does."""

    state: NodeState
    counters: Sequence[CounterState]
    """In row order (:class:`aggregator.ledger.rows.FrozenRows` from the ledger, a tuple from a
    checkpoint)."""
    chain_comments: Mapping[str, str]


def copy_state(state: NodeState, *, connected: bool) -> NodeState:
    copied = replace(state, connected=connected)
    copied.diagnostic_counts = dict(state.diagnostic_counts)
    copied.diagnostic_totals = dict(state.diagnostic_totals)
    copied.resets = dict(state.resets)
    return copied


def interned_key(key: CounterKey) -> CounterKey:
    """``key`` with its names interned: the ledger keeps a key for as long as its counter
    lives, and every snapshot decodes its own copies of the same interface, chain and tier
    names (~100 bytes a counter, shared instead of kept once per counter).  Field by field
    (a loop over the fields with a type test cost twice as much, once per new counter).
    Rule ids and group members are shared by :func:`aggregator.ledger.rows.shared_strings`.
    Built with ``tuple.__new__``, as the wire decoder builds keys: a named tuple's own
    ``__new__`` is a Python frame (named tuples' frames were ~5 % of the ingest worker's time
    in a 500-node start-up, ``py-spy``)."""
    return tuple.__new__(
        CounterKey,
        (
            key.kind,
            key.family,
            key.direction,
            intern(key.interface),
            intern(key.chain),
            intern(key.tier),
            key.rule_index,
            intern(key.action) if type(key.action) is str else key.action,  # a RuleAction member is shared
            key.endpoint,
        ),
    )
