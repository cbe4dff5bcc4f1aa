"""One shared copy of equal immutable values held by many counters.

An aggregator keeps one route per counter (millions), but the values in routes repeat: a
lookup is shared by every counter of the same workload or chain.  Built per counter, each
equal tuple was a separate object.  An
:class:`Interned` table hands out the copy it already holds, and counts its holders so
that a value no counter holds any more is dropped (memory stays bounded under churn).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Interned"]

T = TypeVar("T", bound=Hashable)


class Interned(Generic[T]):
    """Canonical copies of equal values, with holder counts.  Not thread-safe."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[T, list[Any]] = {}
        """value -> [its shared copy, holders]: one lookup per acquire."""

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, value: T) -> T:
        """The shared copy of ``value`` (``value`` itself the first time), held once more."""
        entry = self._entries.get(value)
        if entry is None:
            self._entries[value] = [value, 1]
            return value
        entry[1] += 1
        copy: T = entry[0]
        return copy

    def held(self, value: T) -> T | None:
        """The shared copy of ``value``, held once more, or None (nothing taken) when
        there is none yet: so a caller can build a new value's parts only when needed."""
        entry = self._entries.get(value)
        if entry is None:
            return None
        entry[1] += 1
        copy: T = entry[0]
        return copy

    def release(self, value: T) -> bool:
        """One holder of ``value`` less; returns True when that was the last one (it is
        forgotten)."""
        entry = self._entries.get(value)
        if entry is None:
            return False
        entry[1] -= 1
        if entry[1] > 0:
            return False
        del self._entries[value]
        return True
