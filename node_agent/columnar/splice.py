"""Plans, records, jumps and counters of the previous read moved to where their chains now
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
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES
from calico_accountant.records import CounterRecord, Diagnostic
from node_agent.attribution.compiled import PlanColumns
from node_agent.columnar.chain_diff import Run
from node_agent.columnar.jumps import Jumps
from node_agent.columnar.rows import Irregular
from node_agent.columnar.rules import positions
from node_agent.iptables_save import MAX_COUNTER

__all__ = [
    "Group",
    "Records",
    "merged",
    "merged_jumps",
    "moved",
    "moved_diagnostics",
    "read_counters",
    "slot_map",
    "stale",
]

_T = TypeVar("_T")


def slot_map(size: int, moves: Iterator[tuple[int, int, int]]) -> list[int]:
    """Old slot -> new slot for the (old start, new start, length) moves, -1 elsewhere; one
    more entry (-1) at the end, read for slot -1 ("no next rule")."""
    mapping = [-1] * (size + 1)
    for old, new, length in moves:
        mapping[old : old + length] = range(new, new + length)
    return mapping


Records = list[CounterRecord | None]


@dataclass(slots=True)
class Group:
    """Plans of one group (accepts, drops and profiles, policy rules, denies) in slot order,
    with the record of each as the previous read had it (None: to evaluate)."""

    columns: PlanColumns
    records: Records


def moved(
    columns: PlanColumns,
    start: int,
    stop: int,
    mapping: list[int],
    first_line: int,
    records: Sequence[CounterRecord] | None,
) -> Group:
    """The plans ``start:stop`` of ``columns`` with their slots through ``mapping``, those
    whose first slot maps to -1 left out, lines those of their new first slot; with their
    ``records`` (None: the plans are new)."""
    get = mapping.__getitem__
    slots = tuple(list(map(get, column[start:stop])) for column in columns.slots)
    # The plans left out are those of a few chains: blocks of positions.  The others are
    # taken as the slices between them (C-level copies, no per-plan mask).
    kept: list[tuple[int, int]] = []
    done = 0
    for position in positions(slots[0], -1):
        if position > done:
            kept.append((done, position))
        done = position + 1
    if done < stop - start:
        kept.append((done, stop - start))

    def pick(column: Sequence[_T], offset: int = start) -> list[_T]:
        out: list[_T] = []
        for low, high in kept:
            out += column[offset + low : offset + high]
        return out

    slots = tuple(pick(column, 0) for column in slots)
    moved = PlanColumns(
        pick(columns.keys),
        slots,
        pick(columns.rule_ids),
        pick(columns.comments),
        pick(columns.members),
        list(map(first_line.__add__, slots[0])),
        pick(columns.sources),
    )
    return Group(
        moved, [None] * len(moved.keys) if records is None else list[CounterRecord | None](pick(records))
    )


def _woven(at: list[int], first: list[_T], second: list[_T]) -> list[_T]:
    """``first`` with each of ``second`` inserted before ``first[at[i]]`` (``at`` ascending)."""
    out: list[_T] = []
    done = 0
    for position, item in zip(at, second, strict=True):
        out += first[done:position]
        out.append(item)
        done = position
    out += first[done:]
    return out


def merged(base: Group, more: Group) -> Group:
    """``base`` and ``more`` (each in slot order, of disjoint chains) in slot order."""
    if not more.records:
        return base
    if not base.records:
        return more
    first, second = base.columns, more.columns
    at = list(map(bisect.bisect_left, itertools.repeat(first.slots[0]), second.slots[0]))
    columns = PlanColumns(
        _woven(at, first.keys, second.keys),
        tuple(_woven(at, a, b) for a, b in zip(first.slots, second.slots, strict=True)),
        _woven(at, first.rule_ids, second.rule_ids),
        _woven(at, first.comments, second.comments),
        _woven(at, first.members, second.members),
        _woven(at, first.lines, second.lines),
        _woven(at, first.sources, second.sources),
    )
    return Group(columns, _woven(at, base.records, more.records))


def stale(group: PlanColumns, records: Records, moved: bytearray) -> list[int]:
    """Positions of the plans whose record must be evaluated: new, or reading a slot whose
    counter moved (``moved[slot]``; its last entry, read for slot -1, is 0)."""
    flags = map(operator.is_, records, itertools.repeat(None))
    for column in group.slots:
        flags = map(operator.or_, flags, map(moved.__getitem__, column))
    return list(itertools.compress(range(len(records)), flags))


def moved_diagnostics(
    diagnostics: Sequence[Diagnostic], old_first: int, mapping: list[int], new_first: int
) -> list[Diagnostic]:
    moved = []
    for diagnostic in diagnostics:
        slot = mapping[diagnostic.line - old_first]
        if slot != -1:
            moved.append(Diagnostic(diagnostic.code, diagnostic.message, new_first + slot, diagnostic.source))
    return moved


def merged_jumps(old: Jumps, old_to_new: list[int], new: Jumps, reduced_to_new: list[int]) -> Jumps:
    """Every endpoint chain's jumps in slot order: the reused chains' from ``old``, the
    re-planned ones' from ``new``."""
    old_slots = list(map(old_to_new.__getitem__, old.slots))
    keep = list(map((-1).__ne__, old_slots))
    slots = list(itertools.compress(old_slots, keep))
    targets = list(itertools.compress(old.targets, keep))
    tiers = list(itertools.compress(old.tiers, keep))
    new_slots = list(map(reduced_to_new.__getitem__, new.slots))
    at = list(map(bisect.bisect_left, itertools.repeat(slots), new_slots))
    slots = _woven(at, slots, new_slots)
    targets = _woven(at, targets, new.targets)
    tiers = _woven(at, tiers, new.tiers)
    distinct = list(dict.fromkeys(targets))
    groups = any(target.startswith(GROUP_CHAIN_PREFIXES) for target in distinct)
    return Jumps(slots, targets, tiers, distinct, groups)


def read_counters(
    counters: list[str],
    runs: list[Run],
    old_starts: list[int],
    old: tuple[list[str], list[int], list[int]],
) -> tuple[list[int], list[int], bytearray]:
    """Packets and octets of every slot: the previous read's (``old``: its counters as text,
    packets, octets) where the counter text is the same, converted where it changed
    (:class:`Irregular` past u64); and per slot whether it
    changed (or is new), with a 0 at the end for slot -1."""
    old_counters, old_packets, old_octets = old
    before: list[str] = []
    packets: list[int] = []
    octets: list[int] = []
    for run in runs:
        if run.old != -1:
            start = old_starts[run.old]
            stop = start + run.length
            before += old_counters[start:stop]
            packets += old_packets[start:stop]
            octets += old_octets[start:stop]
        else:
            before += itertools.repeat("", run.length)
            packets += itertools.repeat(0, run.length)
            octets += itertools.repeat(0, run.length)
    moved = bytearray(map(operator.ne, counters, before))
    moved.append(0)
    changed = list(itertools.compress(range(len(counters)), moved))
    halves = list(map(str.partition, map(counters.__getitem__, changed), itertools.repeat(":")))
    try:
        new_packets = list(map(int, map(operator.itemgetter(0), halves)))
        new_octets = list(map(int, map(operator.itemgetter(2), halves)))
    except ValueError:  # over int()'s 4300-digit limit: the general path says so
        raise Irregular from None
    if max(new_packets, default=0) > MAX_COUNTER or max(new_octets, default=0) > MAX_COUNTER:
        raise Irregular
    for slot, packet_count, octet_count in zip(changed, new_packets, new_octets, strict=True):
        packets[slot] = packet_count
        octets[slot] = octet_count
    return packets, octets, moved
