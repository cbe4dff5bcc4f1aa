"""One node's counters as columns by row: what the ledger keeps per counter, without an
object per counter.

A 5,000-node cluster is ~23 M counters, and what each costs is what limits one aggregator.
A slotted object per counter with four integer objects (raw and total packets and bytes)
and a tuple of its rule ids was ~330 bytes before its key; here a counter is one row across
a few columns: raw values in unsigned 64-bit arrays (kernel counters are 64-bit: no integer
objects), totals in lists (they may outgrow 64 bits over a long life), rule-id tuples and
felix's comments shared between every counter and node that has the same ones, and the row
numbers themselves shared (:func:`row_number`).  ~100 bytes a counter besides its key.

Rows of removed counters are holes, reused by the next counter added.  Outside the ledger a
counter is seen as a :class:`~aggregator.ledger.state.CounterState` copied out of its row
(:meth:`CounterRows.state`): nothing outside changes a row.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator, Sequence
from sys import intern
from typing import overload

from aggregator.ledger.state import CounterState
from calico_accountant.records import CounterKey

__all__ = ["RAW_MAX", "CounterRows", "FrozenRows", "row_number", "shared_strings"]

RAW_MAX = 2**64 - 1
"""The largest raw value a row holds: kernel counters are unsigned 64-bit."""

_ROW_NUMBERS: list[int] = []
_ROW_NUMBERS_GROWING = threading.Lock()
"""Held while the shared numbers grow: two ledgers (two accountants in one process) growing
them at once would both append the same range, and a number would no longer be its index."""
_SHARED_NUMBERS_MAX = 1 << 20
_SHARED_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_TUPLES_MAX = 200_000


def row_number(row: int) -> int:
    """``row`` as an int object shared by every node (the index of every node's dict refers
    to the same ~5,000 objects instead of one 28-byte int per counter); the same for key ids,
    which agents number from 1.  Numbers from 2**20 on (a hostile key id) are not shared."""
    if row >= _SHARED_NUMBERS_MAX:
        return row
    numbers = _ROW_NUMBERS
    if row >= len(numbers):
        with _ROW_NUMBERS_GROWING:
            while len(numbers) <= row:
                numbers.extend(range(len(numbers), len(numbers) + 4096))
    return numbers[row]


def shared_strings(values: tuple[str, ...]) -> tuple[str, ...]:
    """``values`` as the one tuple of interned strings every counter with the same values
    holds (the rule ids of one policy's rules are the same on every node).  Rule ids change
    with every policy edit, so the table is bounded: when full it starts over (tuples in use
    stay valid, only not shared with later ones)."""
    if not values:
        return ()
    shared = _SHARED_TUPLES.get(values)
    if shared is None:
        if len(_SHARED_TUPLES) >= _SHARED_TUPLES_MAX:
            _SHARED_TUPLES.clear()
        shared = _SHARED_TUPLES[values] = tuple(map(intern, values))
    return shared


class CounterRows:
    """One node's counters by row.  Treat the columns as read-only outside the ledger."""

    __slots__ = (
        "_free",
        "chain_comment",
        "group_members",
        "keys",
        "raw_bytes",
        "raw_packets",
        "retired_at",
        "row_of",
        "rule_ids",
        "total_bytes",
        "total_packets",
    )

    def __init__(self) -> None:
        self.row_of: dict[CounterKey, int] = {}
        self.keys: list[CounterKey | None] = []
        """Per row its key; None for a hole."""
        self.raw_packets = array("Q")
        self.raw_bytes = array("Q")
        self.total_packets: list[int] = []
        self.total_bytes: list[int] = []
        self.rule_ids: list[tuple[str, ...]] = []
        self.chain_comment: list[str] = []
        self.group_members: list[tuple[str, ...]] = []
        self.retired_at: list[float | None] = []
        """When the key vanished from its node's snapshots; None while live."""
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.row_of)

    def add(
        self,
        key: CounterKey,
        raw_packets: int,
        raw_bytes: int,
        rule_ids: tuple[str, ...],
        total_packets: int,
        total_bytes: int,
        chain_comment: str = "",
        group_members: tuple[str, ...] = (),
        retired_at: float | None = None,
    ) -> int:
        """A new row holding a counter (``key`` not held yet; the fields are
        :class:`~aggregator.ledger.state.CounterState`'s, passed one by one so that no state
        object is made only to be taken apart); returns the row."""
        rule_ids, group_members = shared_strings(rule_ids), shared_strings(group_members)
        chain_comment = intern(chain_comment)
        free = self._free
        if free:
            row = free.pop()
            self.keys[row] = key
            self.raw_packets[row] = raw_packets
            self.raw_bytes[row] = raw_bytes
            self.total_packets[row] = total_packets
            self.total_bytes[row] = total_bytes
            self.rule_ids[row] = rule_ids
            self.chain_comment[row] = chain_comment
            self.group_members[row] = group_members
            self.retired_at[row] = retired_at
        else:
            row = row_number(len(self.keys))
            self.keys.append(key)
            self.raw_packets.append(raw_packets)
            self.raw_bytes.append(raw_bytes)
            self.total_packets.append(total_packets)
            self.total_bytes.append(total_bytes)
            self.rule_ids.append(rule_ids)
            self.chain_comment.append(chain_comment)
            self.group_members.append(group_members)
            self.retired_at.append(retired_at)
        self.row_of[key] = row
        return row

    def remove(self, row: int) -> CounterState:
        """Free ``row``; returns what it held."""
        state = self.state(row)
        del self.row_of[state.key]
        self.keys[row] = None
        self.total_packets[row] = self.total_bytes[row] = 0  # no big ints kept in a hole
        self.rule_ids[row] = self.group_members[row] = ()
        self.chain_comment[row] = ""
        self.retired_at[row] = None
        self._free.append(row)
        return state

    def state(self, row: int) -> CounterState:
        """A copy of ``row`` (which must hold a counter)."""
        key = self.keys[row]
        assert key is not None, "a hole has no counter"
        return CounterState(
            key,
            self.raw_packets[row],
            self.raw_bytes[row],
            self.rule_ids[row],
            self.total_packets[row],
            self.total_bytes[row],
            self.chain_comment[row],
            self.group_members[row],
            self.retired_at[row],
        )

    def get(self, key: CounterKey) -> CounterState | None:
        row = self.row_of.get(key)
        return None if row is None else self.state(row)

    def states(self) -> Iterator[tuple[int, CounterState]]:
        """Every row that holds a counter, with a copy of it, in row order."""
        for row, key in enumerate(self.keys):
            if key is not None:
                yield row, self.state(row)

    def frozen(self) -> FrozenRows:
        """A copy of every column (what a checkpoint keeps), made without a Python object
        per counter: ~10 C-level copies under the caller's lock, the counters made from it
        when it is read (outside)."""
        return FrozenRows(self)


class FrozenRows(Sequence[CounterState]):
    """The counters of :meth:`CounterRows.frozen`, in row order: a sequence of copies that
    nothing the ledger does later changes."""

    __slots__ = ("_columns", "_count", "_held")

    def __init__(self, rows: CounterRows) -> None:
        self._columns = CounterRows()
        columns = self._columns
        columns.keys = rows.keys[:]
        columns.raw_packets = rows.raw_packets[:]
        columns.raw_bytes = rows.raw_bytes[:]
        columns.total_packets = rows.total_packets[:]
        columns.total_bytes = rows.total_bytes[:]
        columns.rule_ids = rows.rule_ids[:]
        columns.chain_comment = rows.chain_comment[:]
        columns.group_members = rows.group_members[:]
        columns.retired_at = rows.retired_at[:]
        self._count = len(rows)
        self._held: list[int] | None = None
        """Rows that hold a counter, made on the first access by position (iterating needs none)."""

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[CounterState]:
        columns = self._columns
        return (columns.state(row) for row, key in enumerate(columns.keys) if key is not None)

    @overload
    def __getitem__(self, index: int) -> CounterState: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[CounterState]: ...
    def __getitem__(self, index: int | slice) -> CounterState | Sequence[CounterState]:
        if self._held is None:
            self._held = [row for row, key in enumerate(self._columns.keys) if key is not None]
        if isinstance(index, slice):
            return [self._columns.state(row) for row in self._held[index]]
        return self._columns.state(self._held[index])
