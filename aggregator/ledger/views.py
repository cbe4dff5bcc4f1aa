"""A node's counters seen from outside the ledger: a read-only mapping over its rows
(:mod:`aggregator.ledger.rows`) that copies a counter out when it is read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aggregator.ledger.rows import CounterRows
from aggregator.ledger.state import CounterState
from calico_accountant.records import CounterKey

__all__ = ["CounterView"]


class CounterView(Mapping[CounterKey, CounterState]):
    """``key -> CounterState`` over one node's rows.  Each read is a copy, as of that moment:
    changing it changes nothing in the ledger."""

    __slots__ = ("_rows",)

    def __init__(self, rows: CounterRows) -> None:
        self._rows = rows

    def __getitem__(self, key: CounterKey) -> CounterState:
        return self._rows.state(self._rows.row_of[key])

    def get(self, key: CounterKey, default: CounterState | None = None) -> CounterState | None:  # type: ignore[override]
        state = self._rows.get(key)
        return default if state is None else state

    def __contains__(self, key: object) -> bool:
        return key in self._rows.row_of

    def __iter__(self) -> Iterator[CounterKey]:
        """In row order, as :meth:`CounterRows.states` (what a checkpoint keeps): a rebuild and
        a restore route the counters in the same order, so their series come in one order."""
        return (key for key in self._rows.keys if key is not None)

    def __len__(self) -> int:
        return len(self._rows)
