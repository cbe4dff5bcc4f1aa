"""What moved since the previous read, for the re-parse after churn
(:mod:`node_agent.columnar.incremental`): the counters (their values, and which slots
changed) and the records that must be evaluated again.

Why apart: most counters do not move between reads (one workload in ten on a busy node),
so, as in the steady path, only the changed counters are converted and only the records
reading one are evaluated; the reused chains' others are the previous read's.  Finding those
records is where the cost is: looking at every plan's slots is a few C-level passes over
~250k slots (~13 ms on a node of 1,000 pods x 40 policies), while the steady path's index of
which plans read each slot (:class:`~node_agent.attribution.compiled.ReaderIndex`, built by
the first steady read after a full parse) answers it from the changed counters alone, whose
slots map back to the previous read's a block at a time.  Without that index every plan is
looked at.
"""

from __future__ import annotations

import bisect
import itertools
import operator

from node_agent.attribution.compiled import CompiledPlans, PlanColumns
from node_agent.columnar.chain_diff import Layout
from node_agent.columnar.rows import Irregular
from node_agent.columnar.splice import Block, Group, Records
from node_agent.iptables_save import MAX_COUNTER

__all__ = ["read_counters", "stale", "stale_positions"]


def read_counters(
    counters: list[str],
    layout: Layout,
    old_starts: list[int],
    old: tuple[list[str], list[int], list[int]],
) -> tuple[list[int], list[int], list[int]]:
    """Packets and octets of every slot: the previous read's (``old``: its template parts,
    ``["\\n[", counter, "] ", rule line, ...]``, packets, octets) where the counter text is
    the same, converted where it changed (:class:`Irregular` past u64); and the slots whose
    counter changed or is new, ascending.  A span of matched runs at a time."""
    old_parts, old_packets, old_octets = old
    packets: list[int] = []
    octets: list[int] = []
    changed: list[int] = []
    done = 0
    starts, lengths, old_runs = layout.starts, layout.lengths, layout.old
    for span in [*layout.spans, None]:
        first = len(counters) if span is None else starts[span.start]
        if first > done:
            packets += itertools.repeat(0, first - done)
            octets += itertools.repeat(0, first - done)
            changed += range(done, first)
        if span is None:
            break
        end = starts[span.stop - 1] + lengths[span.stop - 1]
        start = old_starts[old_runs[span.start]]
        stop = start + end - first
        packets += old_packets[start:stop]
        octets += old_octets[start:stop]
        moved = map(operator.ne, counters[first:end], old_parts[4 * start + 1 : 4 * stop : 4])
        changed += itertools.compress(range(first, end), moved)
        done = end
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
    return packets, octets, changed


def stale_positions(
    previous: CompiledPlans,
    previous_size: int,
    blocks: list[Block],
    changed: list[int],
    groups: tuple[Group, Group],
) -> tuple[list[int], list[int]] | None:
    """The positions of the single-slot and deny plans to evaluate: those re-planned and
    the reused ones reading a counter that changed (``changed`` slots, ascending), found
    through the previous read's index; None when it has none."""
    readers = previous.readers
    if readers is None or readers[0] != previous_size:
        return None
    old_slots: list[int] = []
    for old_start, new_start, length in blocks:
        low = bisect.bisect_left(changed, new_start)
        high = bisect.bisect_left(changed, new_start + length, low)
        old_slots += map((old_start - new_start).__add__, changed[low:high])
    found: list[list[int]] = []
    for index, group in zip(readers[1:], groups, strict=True):
        found.append(group.position(index.positions(old_slots)) + group.fresh)
    return found[0], found[1]


def stale(group: PlanColumns, records: Records, changed: list[int], size: int) -> list[int]:
    """Positions of the plans whose record must be evaluated, looking at every plan: new,
    or reading a slot whose counter changed (of ``size`` slots)."""
    moved = bytearray(size + 1)  # the last entry, read for slot -1, stays 0
    for slot in changed:
        moved[slot] = 1
    flags = map(operator.is_, records, itertools.repeat(None))
    for column in group.slots:
        flags = map(operator.or_, flags, map(moved.__getitem__, column))
    return list(itertools.compress(range(len(records)), flags))
