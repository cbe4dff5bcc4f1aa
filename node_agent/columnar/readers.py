"""Which records of a re-parse after churn must be evaluated, found through the previous
read's index of each counter's readers (:mod:`node_agent.columnar.incremental`).

Why: a reused chain's records are the previous read's unless one of their counters moved;
most did not (one workload in ten moves between reads on a busy node).  Looking at every
plan's slots for a moved one is a few C-level passes over ~250k slots (~13 ms on a node of
1,000 pods x 40 policies); the steady path's index of which plans read each slot
(:class:`~node_agent.attribution.compiled.ReaderIndex`, built by the first steady read)
answers it from the moved counters alone, whose slots map back to the previous read's a
block at a time.  Without it the caller looks at every plan.
"""

from __future__ import annotations

import itertools

from node_agent.attribution.compiled import CompiledPlans
from node_agent.columnar.splice import Block, Group

__all__ = ["stale_positions"]


def stale_positions(
    previous: CompiledPlans,
    previous_size: int,
    blocks: list[Block],
    moved: bytearray,
    groups: tuple[Group, Group],
) -> tuple[list[int], list[int]] | None:
    """The positions of the single-slot and deny plans to evaluate: those re-planned and
    the reused ones reading a counter that moved (``moved[slot]``), found through the
    previous read's index; None when it has none (no steady read since it was parsed)."""
    readers = previous.readers
    size = len(moved) - 1
    if readers is None or readers[0] != previous_size:
        return None
    new_to_old = [-1] * (size + 1)
    for old_start, new_start, length in blocks:
        new_to_old[new_start : new_start + length] = range(old_start, old_start + length)
    changed = list(itertools.compress(range(size), moved))
    old_slots = list(filter((-1).__ne__, map(new_to_old.__getitem__, changed)))
    found: list[list[int]] = []
    for index, group in zip(readers[1:], groups, strict=True):
        positions = map(group.position_map.__getitem__, index.positions(old_slots))
        found.append([*filter((-1).__ne__, positions), *group.fresh])
    return found[0], found[1]
