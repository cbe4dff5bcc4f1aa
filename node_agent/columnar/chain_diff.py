"""The chains of a table's text and what changed since the previous read, for the re-parse
after churn (:mod:`node_agent.columnar.incremental`).

Why apart: the chains of a re-read table as matched with the previous read's
(:class:`Layout`, made by :mod:`node_agent.columnar.realign`) and finding the chains that
depend on a changed one are the part of a re-parse that reads rule lines; the rest moves
plans (:mod:`node_agent.columnar.splice`).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from dataclasses import dataclass

from calico_accountant.felix.chains import POLICY_CHAIN_PREFIXES
from calico_accountant.felix.endpoints import ENDPOINT_PREFIXES
from node_agent.columnar import ColumnarParse
from node_agent.columnar.rows import Irregular, is_odd

__all__ = [
    "COUNTER_PREFIX",
    "POLICY_PREFIXES",
    "Layout",
    "Span",
    "chain_of",
    "check_plain",
    "dependents",
    "referrers",
]

COUNTER_PREFIX = re.compile(r"\n\[([0-9]+:[0-9]+)\] ")
"""A rule line's ``[packets:bytes]`` prefix (the fast path's, ``node_agent.parsing``)."""


def chain_of(piece: str) -> str:
    """The chain of a rule line (``-A CHAIN ...``); :class:`Irregular` if it is not one."""
    if not piece.startswith("-A "):
        raise Irregular
    end = piece.find(" ", 3)
    if end == -1:
        raise Irregular
    return piece[3:end]


@dataclass(slots=True)
class Span:
    """Runs ``start:stop`` of a re-read table: matched runs that follow each other in the
    previous read too, so that their rules moved by one offset (a few per table: moving
    and comparing them is a slice each, not a step per chain)."""

    start: int
    stop: int


@dataclass(slots=True)
class Layout:
    """The chains of a re-read table as runs (one per chain, in table order), column-wise."""

    names: list[str]
    starts: list[int]
    lengths: list[int]
    old: list[int]
    """The previous read's run with the same rules, or -1 (changed or new)."""
    spans: list[Span]
    """The matched runs (``old`` not -1), as spans."""
    fresh: list[int]
    """The other runs (changed or new), ascending."""

    def add_matched(self, first: int, stop: int, shift: int, previous: ColumnarParse) -> None:
        """The previous read's runs ``first:stop``, their rules ``shift`` slots on."""
        index = len(self.names)
        self.names += previous.names[first:stop]
        self.starts += map(shift.__add__, previous.starts[first:stop])
        self.lengths += previous.lengths[first:stop]
        self.old += range(first, stop)
        spans = self.spans
        if spans and spans[-1].stop == index and self.old[index - 1] == first - 1:
            spans[-1].stop = len(self.names)
        else:
            spans.append(Span(index, len(self.names)))

    def add_fresh(self, name: str, start: int, length: int) -> None:
        self.fresh.append(len(self.names))
        self.names.append(name)
        self.starts.append(start)
        self.lengths.append(length)
        self.old.append(-1)


def referrers(framed: str, names: set[str], starts: list[int], head: str) -> set[int]:
    """The runs with a rule that jumps (``-j``) or goes (``-g``) to any of ``names`` (or to
    a longer name starting with one, which only re-plans more): a chain depends on another
    only through such rules."""
    positions: list[int] = []
    for name in names:
        for needle in ("-j " + name, "-g " + name):
            found = framed.find(needle, len(head))
            while found != -1:
                positions.append(found)
                found = framed.find(needle, found + 1)
    positions.sort()
    hit: set[int] = set()
    rules_before = 0
    previous = len(head)
    for position in positions:
        rules_before += framed.count("\n[", previous, position)
        previous = position
        if rules_before:
            hit.add(bisect.bisect_right(starts, rules_before - 1) - 1)
    return hit


POLICY_PREFIXES = tuple(POLICY_CHAIN_PREFIXES)


def check_plain(name: str, lines: list[str], declared: set[str]) -> None:
    """:class:`Irregular` where the cold parse would turn the lines of a chain down (see
    :func:`~node_agent.columnar.runs.chain_runs` and
    :func:`~node_agent.columnar.rules.rule_columns`): an odd name, a newline, escapes or odd
    quoting in a line."""
    if is_odd(name) or '"' in name or name[:1] == "-" or name not in declared or name in ENDPOINT_PREFIXES:
        raise Irregular
    joined = "".join(lines)
    if "\n" in joined or "\\" in joined or "'" in joined:
        raise Irregular
    if any(map((1).__and__, map(str.count, lines, itertools.repeat('"')))):
        raise Irregular


def dependents(pieces: list[str], layout: Layout, endpoint: list[bool], changed: set[str]) -> set[str]:
    """The chains other than endpoint chains that jump or go to a chain in ``changed``, or to
    one of those, and so on (a longer name starting with one counts too: that only re-plans
    more).  Searched in those chains' text only (a few percent of the table)."""
    others = list(itertools.compress(range(len(endpoint)), map(operator.not_, endpoint)))
    names, starts, lengths = layout.names, layout.starts, layout.lengths
    texts = ["\n".join(pieces[starts[run] : starts[run] + lengths[run]]) for run in others]
    joined = "\n".join(texts)
    offsets = list(itertools.accumulate(map((1).__add__, map(len, texts)), initial=0))
    found: set[str] = set()
    frontier = set(changed)
    while frontier:
        hits: set[str] = set()
        for name in frontier:
            for needle in ("-j " + name, "-g " + name):
                at = joined.find(needle)
                while at != -1:
                    hits.add(names[others[bisect.bisect_right(offsets, at) - 1]])
                    at = joined.find(needle, at + 1)
        frontier = hits - changed - found
        found |= frontier
    return found
