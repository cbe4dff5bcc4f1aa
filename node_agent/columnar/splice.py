"""Plans, records and jumps of the previous read moved to where their chains now
are, and merged with those of the re-planned chains, for the re-parse after churn
(:mod:`node_agent.columnar.incremental`).

Why it works: every plan, jump and ``deny_not_exact`` diagnostic of the columnar parse sits at
the slots of one chain, and each group of plans (accepts, drops and profiles, policy rules,
denies) is in slot order; a chain's slots move by the same offset, so moving is a mapping of
slots and merging is inserting the re-planned chains' plans where their slots fall.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES
from calico_accountant.records import CounterRecord, Diagnostic
from node_agent.attribution.compiled import PlanColumns
from node_agent.columnar.chain_diff import Layout
from node_agent.columnar.jumps import Jumps

__all__ = [
    "Block",
    "Group",
    "Records",
    "Splicer",
    "merged_jumps",
    "moved_diagnostics",
    "reused_blocks",
    "slot_map",
]


Block = tuple[int, int, int]
"""(old start, new start, length): rules of chains reused from the previous read that
follow each other in both reads, so their slots move by one offset."""


def reused_blocks(layout: Layout, replanned: list[int], old_starts: list[int]) -> list[Block]:
    """The blocks of the matched runs but those re-planned (``replanned``, ascending): the
    reused chains' rules, a few stretches per table."""
    blocks: list[Block] = []
    starts, lengths, old = layout.starts, layout.lengths, layout.old
    for span in layout.spans:
        low = bisect.bisect_left(replanned, span.start)
        high = bisect.bisect_left(replanned, span.stop, low)
        for first, stop in zip(
            [span.start, *(index + 1 for index in replanned[low:high])],
            [*replanned[low:high], span.stop],
            strict=True,
        ):
            if stop > first:
                end = starts[stop - 1] + lengths[stop - 1]
                blocks.append((old_starts[old[first]], starts[first], end - starts[first]))
    return blocks


def slot_map(size: int, blocks: list[Block]) -> list[int]:
    """Old slot -> new slot for the blocks, -1 elsewhere; one more entry (-1) at the end,
    read for slot -1 ("no next rule")."""
    mapping = [-1] * (size + 1)
    for old, new, length in blocks:
        mapping[old : old + length] = range(new, new + length)
    return mapping


Records = list[CounterRecord | None]


@dataclass(slots=True)
class Group:
    """Plans of one group (accepts, drops and profiles, policy rules, denies) in slot order,
    with the record of each as the previous read had it (None: to evaluate)."""

    columns: PlanColumns
    records: Records
    position_map: list[int]
    """The previous read's plan at each position -> its position here, -1 if it went; one
    more entry (-1) at the end, read for position -1."""
    fresh: list[int]
    """The positions of the re-planned chains' plans."""

    @classmethod
    def empty(cls, width: int, previous: int) -> Group:
        """No plans yet, of ``width`` slots each; the previous read had ``previous``."""
        columns = PlanColumns([], tuple([] for _ in range(width)), [], [], [], [], [])
        return cls(columns, [], [-1] * (previous + 1), [])


@dataclass(slots=True)
class Splicer:
    """Builds a re-parsed table's plan groups: the reused chains' plans from the previous
    read, a slice per block (their slots and lines moved by the block's offset; those of
    blocks that did not move taken as they are), with the re-planned chains' plans
    inserted where their slots fall.  Every group is in slot order in both parses and a
    chain's plans are consecutive in it, so this is the order the cold parse gives."""

    blocks: list[Block]
    old_to_new: list[int]
    """:func:`slot_map` of the blocks (for plans whose slots moved)."""
    reduced_to_new: list[int]
    """Slot of the re-planned table -> slot of the whole (-1 -> -1)."""
    old_first_line: int
    first_line: int

    def add(
        self,
        out: Group,
        old: PlanColumns,
        old_range: tuple[int, int],
        old_records: Sequence[CounterRecord] | None,
        new: PlanColumns,
        new_range: tuple[int, int],
    ) -> None:
        """Append to ``out`` the group ``old_range`` of the previous read's plans (with
        ``old_records``, None: not known) merged with ``new_range`` of the re-planned
        table's."""
        start, stop = old_range
        new_start, new_stop = new_range
        get_new = self.reduced_to_new.__getitem__
        new_slots = tuple(list(map(get_new, column[new_start:new_stop])) for column in new.slots)
        new_first = new_slots[0]
        first = old.slots[0]
        taken = 0
        for old_start, new_slot, length in self.blocks:
            low = bisect.bisect_left(first, old_start, start, stop)
            high = bisect.bisect_left(first, old_start + length, low, stop)
            if high == low:
                continue
            shift = new_slot - old_start
            cut = bisect.bisect_left(new_first, first[low] + shift, taken)
            if cut > taken:
                self._add_new(out, new, new_start, new_slots, taken, cut)
                taken = cut
            self._add_old(out, old, low, high, shift, old_records)
        if taken < len(new_first):
            self._add_new(out, new, new_start, new_slots, taken, len(new_first))

    def _add_old(
        self,
        out: Group,
        old: PlanColumns,
        low: int,
        high: int,
        shift: int,
        records: Sequence[CounterRecord] | None,
    ) -> None:
        columns = out.columns
        out.position_map[low:high] = range(len(columns.keys), len(columns.keys) + high - low)
        columns.keys.extend(old.keys[low:high])
        get = self.old_to_new.__getitem__
        for column, more in zip(columns.slots, old.slots, strict=True):
            column.extend(more[low:high] if not shift else map(get, more[low:high]))
        columns.rule_ids.extend(old.rule_ids[low:high])
        columns.comments.extend(old.comments[low:high])
        columns.members.extend(old.members[low:high])
        moved = shift + self.first_line - self.old_first_line
        columns.lines.extend(old.lines[low:high] if not moved else map(moved.__add__, old.lines[low:high]))
        columns.sources.extend(old.sources[low:high])
        if records is None:
            out.records.extend(itertools.repeat(None, high - low))
        else:
            out.records.extend(records[low:high])

    def _add_new(
        self, out: Group, new: PlanColumns, offset: int, slots: tuple[list[int], ...], low: int, high: int
    ) -> None:
        columns = out.columns
        out.fresh += range(len(columns.keys), len(columns.keys) + high - low)
        columns.keys.extend(new.keys[offset + low : offset + high])
        for column, more in zip(columns.slots, slots, strict=True):
            column.extend(more[low:high])
        columns.rule_ids.extend(new.rule_ids[offset + low : offset + high])
        columns.comments.extend(new.comments[offset + low : offset + high])
        columns.members.extend(new.members[offset + low : offset + high])
        columns.lines.extend(map(self.first_line.__add__, slots[0][low:high]))
        columns.sources.extend(new.sources[offset + low : offset + high])
        out.records.extend(itertools.repeat(None, high - low))


def moved_diagnostics(
    diagnostics: Sequence[Diagnostic], old_first: int, mapping: list[int], new_first: int
) -> list[Diagnostic]:
    moved = []
    for diagnostic in diagnostics:
        slot = mapping[diagnostic.line - old_first]
        if slot != -1:
            moved.append(Diagnostic(diagnostic.code, diagnostic.message, new_first + slot, diagnostic.source))
    return moved


def merged_jumps(old: Jumps, blocks: list[Block], new: Jumps, reduced_to_new: list[int]) -> Jumps:
    """Every endpoint chain's jumps in slot order: the reused chains' from ``old``, a block
    at a time (as :class:`Splicer` moves plans), the re-planned ones' from ``new``."""
    new_slots = list(map(reduced_to_new.__getitem__, new.slots))
    slots: list[int] = []
    targets: list[str] = []
    tiers: list[str] = []
    taken = 0
    for old_start, new_start, length in blocks:
        low = bisect.bisect_left(old.slots, old_start)
        high = bisect.bisect_left(old.slots, old_start + length, low)
        if high == low:
            continue
        shift = new_start - old_start
        cut = bisect.bisect_left(new_slots, old.slots[low] + shift, taken)
        slots += new_slots[taken:cut]
        targets += new.targets[taken:cut]
        tiers += new.tiers[taken:cut]
        taken = cut
        slots += old.slots[low:high] if not shift else map(shift.__add__, old.slots[low:high])
        targets += old.targets[low:high]
        tiers += old.tiers[low:high]
    slots += new_slots[taken:]
    targets += new.targets[taken:]
    tiers += new.tiers[taken:]
    distinct = list(dict.fromkeys(targets))
    groups = any(target.startswith(GROUP_CHAIN_PREFIXES) for target in distinct)
    return Jumps(slots, targets, tiers, distinct, groups)
