"""One exported family's series in columns: a slot per series, values in flat lists.

Every increase is added to a few series (one per exported level), millions of times a
minute in a large cluster.  Keyed by their label tuples, each addition hashed a tuple of up
to eight strings twice (Python does not cache a tuple's hash: ~250 ns each) and made a new
``(packets, bytes)`` tuple; the counters' routes hold the series' *slots* instead
(``(family index, slot)``, see :mod:`aggregator.series.routes`), so an addition is two list
items updated in place.  The label tuple is hashed once, when a series is created or looked
up by labels (admission, a checkpoint, a node forgotten).

A removed series leaves a hole (its label is None) that the next new series takes; a
scrape's copy (:meth:`SeriesTable.columns`) leaves holes out, in slot order.  Not
thread-safe: :class:`~aggregator.series.state.SeriesState` is used under the accountant's
lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import compress, islice, repeat
from operator import is_not
from typing import cast

__all__ = ["Columns", "SeriesTable"]

Labels = tuple[str, ...]
Columns = tuple[tuple[Labels, ...], tuple[str, ...], tuple[int, ...], tuple[int, ...]]
"""Label sets, label texts, packets and bytes of the live series, in slot order."""


class SeriesTable:
    """The series of one family: label sets, label texts, values and holder counts by slot."""

    __slots__ = ("_free", "bytes", "holders", "index", "labels", "packets", "refs", "slots", "texts")

    def __init__(self, index: int) -> None:
        self.index = index
        """The family's index among the exported ones."""
        self.slots: dict[Labels, int] = {}
        """label values -> slot, for the live series."""
        self.labels: list[Labels | None] = []
        self.texts: list[str] = []
        self.packets: list[int] = []
        self.bytes: list[int] = []
        self.holders: list[int] = []
        """Counters routed to the series (they keep it alive when it is per workload)."""
        self.refs: list[tuple[int, int]] = []
        """``(index, slot)`` for every slot, made once: what the counters' routes hold, one
        shared tuple per slot whichever series lives in it."""
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, labels: Labels, text: str, packets: int, octets: int) -> int:
        """A new series (``labels`` must not be live), in a hole if there is one."""
        if self._free:
            slot = self._free.pop()
            self.labels[slot] = labels
            self.texts[slot] = text
            self.packets[slot] = packets
            self.bytes[slot] = octets
            self.holders[slot] = 0
        else:
            slot = len(self.labels)
            self.refs.append((self.index, slot))
            self.labels.append(labels)
            self.texts.append(text)
            self.packets.append(packets)
            self.bytes.append(octets)
            self.holders.append(0)
        self.slots[labels] = slot
        return slot

    def remove(self, slot: int) -> tuple[Labels, tuple[int, int]]:
        """Remove the series in ``slot``; returns its labels and last value."""
        labels = self.labels[slot]
        assert labels is not None, "removing an empty slot"
        value = (self.packets[slot], self.bytes[slot])
        del self.slots[labels]
        self.labels[slot] = None
        self.texts[slot] = ""
        self.packets[slot] = self.bytes[slot] = self.holders[slot] = 0
        self._free.append(slot)
        return labels, value

    def items(self) -> Iterator[tuple[Labels, tuple[int, int]]]:
        """(labels, (packets, bytes)) of every live series."""
        packets, octets = self.packets, self.bytes
        for labels, slot in self.slots.items():
            yield labels, (packets[slot], octets[slot])

    @property
    def size(self) -> int:
        """Slots in use or free (the bound of :meth:`columns`' ``stop``)."""
        return len(self.labels)

    def columns(self, start: int = 0, stop: int | None = None) -> Columns:
        """A copy of the live series' columns among slots ``start`` to ``stop`` (C-level
        copies, one per column: taken under the lock; ``islice`` skips to ``start`` over the
        list's pointers without the copy a slice would make first)."""
        if not self._free:  # no holes: every slot is a live series
            return (
                cast(tuple[Labels, ...], tuple(islice(self.labels, start, stop))),
                tuple(islice(self.texts, start, stop)),
                tuple(islice(self.packets, start, stop)),
                tuple(islice(self.bytes, start, stop)),
            )
        live = list(map(is_not, islice(self.labels, start, stop), repeat(None)))
        return (
            cast(tuple[Labels, ...], tuple(compress(islice(self.labels, start, stop), live))),
            tuple(compress(islice(self.texts, start, stop), live)),
            tuple(compress(islice(self.packets, start, stop), live)),
            tuple(compress(islice(self.bytes, start, stop), live)),
        )
