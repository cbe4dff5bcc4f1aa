"""Plans, records and jumps of the previous read moved to where their chains now are, and
merged with those of the re-planned chains, for the re-parse after churn
(:mod:`node_agent.columnar.incremental`).

Why it works: every plan, jump and ``deny_not_exact`` diagnostic of the columnar parse sits at
the slots of one chain, and each group of plans (accepts, drops and profiles, policy rules,
denies) is in slot order; a chain's slots move by the same offset, and the reused chains
come in blocks that move together (:data:`Block`: a few per table), so moving is a slice
per block (nothing to do for a block that did not move) and merging is putting the
re-planned chains' plans where their slots fall.
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
    """One column group of plans (single-slot or denies) being re-parsed: the previous
    read's columns and records, edited in place into the new read's, in slot order."""

    columns: PlanColumns
    records: Records
    """Each plan's record as the previous read had it (None: to evaluate)."""
    moves: list[tuple[int, int, int]]
    """(low, high, shift): the previous read's plans ``low:high`` are now ``shift`` on."""
    fresh: list[int]
    """The positions of the re-planned chains' plans."""
    grown: int = 0
    """How many more plans the group has now than the previous read's (so far)."""

    @classmethod
    def of(cls, columns: PlanColumns, records: Sequence[CounterRecord] | None) -> Group:
        """The previous read's ``columns`` (edited in place: the caller gives them up) and
        ``records`` (None: not known)."""
        known: Records = [None] * len(columns.keys) if records is None else list(records)
        # Lines are not kept: each plan's is its first slot's (CompiledPlans.from_columns).
        return cls(columns._replace(lines=[]), known, [], [])

    def position(self, old: list[int]) -> list[int]:
        """The positions now of the previous read's plans at ``old`` (those re-planned left out)."""
        old = sorted(old)
        found: list[int] = []
        for low, high, shift in self.moves:
            first = bisect.bisect_left(old, low)
            found += map(shift.__add__, old[first : bisect.bisect_left(old, high, first)])
        return found


_Gap = tuple[int, int, int, int]
"""(low, high, first, stop): the plans ``low:high`` (positions in the edited lists) give
way to the re-planned ones ``first:stop``."""
_Kept = tuple[int, int, int]
"""(low, high, shift): the plans ``low:high`` stay, their slots ``shift`` on."""


@dataclass(slots=True)
class Splicer:
    """Edits the previous read's plan groups into the re-parsed table's: the reused
    chains' plans stay where they are in the lists (their slots and lines moved by their
    block's offset; those of blocks that did not move left alone), the plans of chains
    that went or were re-planned give way to the re-planned chains' plans, inserted where
    their slots fall.  Every group is in slot order in both parses and a chain's plans are
    consecutive in it, so this is the order the cold parse gives; editing in place (the
    lists change length only where chains came or went) copies nothing else.  Lines are not
    kept (see :meth:`~node_agent.attribution.compiled.CompiledPlans.from_columns`)."""

    blocks: list[Block]
    old_to_new: list[int]
    """:func:`slot_map` of the blocks (for plans whose slots moved)."""
    reduced_to_new: list[int]
    """Slot of the re-planned table -> slot of the whole (-1 -> -1)."""

    def edit(
        self, group: Group, old_range: tuple[int, int], new: PlanColumns, new_range: tuple[int, int]
    ) -> None:
        """Turn the previous read's plans ``old_range`` of ``group`` (subgroups are edited
        in order: accepts, drops and profiles, policy rules) into the new read's, with the
        re-planned table's ``new_range``."""
        start, stop = old_range[0] + group.grown, old_range[1] + group.grown
        new_start, new_stop = new_range
        get_new = self.reduced_to_new.__getitem__
        slots = tuple(list(map(get_new, column[new_start:new_stop])) for column in new.slots)
        first = group.columns.slots[0]
        items: list[_Gap | _Kept] = []
        at, taken = start, 0
        for old_start, new_slot, length in self.blocks:
            low = bisect.bisect_left(first, old_start, at, stop)
            high = bisect.bisect_left(first, old_start + length, low, stop)
            if high == low:
                continue
            shift = new_slot - old_start
            cut = bisect.bisect_left(slots[0], first[low] + shift, taken)
            items.append((at, low, taken, cut))
            items.append((low, high, shift))
            at, taken = high, cut
        items.append((at, stop, taken, len(slots[0])))
        # Where everything ends up (for the records to evaluate), then the edits from the
        # end back, so that the positions of those before stay valid.
        position = start
        for item in items:
            if len(item) == 4:
                _, _, taken, cut = item
                group.fresh += range(position, position + cut - taken)
                position += cut - taken
            else:
                low, high, _ = item
                group.moves.append((low - group.grown, high - group.grown, position - low + group.grown))
                position += high - low
        for item in reversed(items):
            if len(item) == 4:
                self._replace(group, item, new, new_start, slots)
            else:
                self._move(group, item)
        group.grown += position - stop

    def _move(self, group: Group, kept: _Kept) -> None:
        low, high, shift = kept
        columns = group.columns
        if shift:
            get = self.old_to_new.__getitem__
            for column in columns.slots:
                column[low:high] = map(get, column[low:high])

    def _replace(
        self, group: Group, gap: _Gap, new: PlanColumns, offset: int, slots: tuple[list[int], ...]
    ) -> None:
        low, high, first, stop = gap
        if low == high and first == stop:
            return
        columns = group.columns
        columns.keys[low:high] = new.keys[offset + first : offset + stop]
        for column, more in zip(columns.slots, slots, strict=True):
            column[low:high] = more[first:stop]
        columns.rule_ids[low:high] = new.rule_ids[offset + first : offset + stop]
        columns.comments[low:high] = new.comments[offset + first : offset + stop]
        columns.members[low:high] = new.members[offset + first : offset + stop]
        columns.sources[low:high] = new.sources[offset + first : offset + stop]
        group.records[low:high] = itertools.repeat(None, stop - first)


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
