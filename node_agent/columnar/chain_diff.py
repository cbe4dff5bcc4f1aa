"""The chains of a table's text and what changed since the previous read, for the re-parse
after churn (:mod:`node_agent.columnar.incremental`).

Why apart: taking the text apart (counters and rule lines, one ``re.split``), matching the
previous read's chains against it and finding the chains that depend on a changed one is the
part of a re-parse that reads text; the rest moves plans (:mod:`node_agent.columnar.splice`).
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

from calico_accountant.felix.chains import POLICY_CHAIN_PREFIXES
from calico_accountant.felix.endpoints import ENDPOINT_PREFIXES
from node_agent.columnar import ColumnarParse
from node_agent.columnar.rows import Irregular, is_odd

__all__ = [
    "COUNTER_PREFIX",
    "POLICY_PREFIXES",
    "Run",
    "Span",
    "check_plain",
    "dependents",
    "referrers",
    "segment",
    "split_pieces",
]

COUNTER_PREFIX = re.compile(r"\n\[([0-9]+:[0-9]+)\] ")
"""A rule line's ``[packets:bytes]`` prefix (the fast path's, ``node_agent.parsing``)."""


def split_pieces(framed: str) -> tuple[str, list[str], list[str], str]:
    """A framed table as (text before the rules, counters, rule lines without counters,
    text after the last rule line from its newline on)."""
    parts = COUNTER_PREFIX.split(framed)
    last, newline, tail = parts[-1].partition("\n")
    pieces = parts[2::2]
    if pieces:
        pieces[-1] = last
    return parts[0], parts[1::2], pieces, newline + tail


def _chain_of(piece: str) -> str:
    if not piece.startswith("-A "):
        raise Irregular
    end = piece.find(" ", 3)
    if end == -1:
        raise Irregular
    return piece[3:end]


@dataclass(slots=True)
class Run:
    name: str
    start: int
    length: int
    old: int
    """The previous read's run with the same rules, or -1 (changed or new)."""


@dataclass(slots=True)
class Span:
    """Runs ``start:stop`` of a re-read table: matched runs that follow each other in the
    previous read too, so that their rules moved by one offset (a few per table: moving
    and comparing them is a slice each, not a step per chain)."""

    start: int
    stop: int


def segment(
    pieces: list[str], previous: ColumnarParse, old_pieces: list[str]
) -> tuple[list[Run], list[Span]]:
    """The chains of ``pieces`` as runs, each matched with the previous read's run of the
    same name when its rule lines are the same, and the spans of matched runs that follow
    each other in both reads (their rules moved by one offset); :class:`Irregular` when a
    chain is split or the chains come in another order.

    Unchanged chains are matched many at a time (a span of the previous read's runs
    against the same number of rule lines here, doubling the span while it matches), so
    the Python steps are per change, not per chain; only changed or new chains are read
    line by line."""
    runs: list[Run] = []
    spans: list[Span] = []
    names, starts, lengths = previous.names, previous.starts, previous.lengths
    order = {name: run for run, name in enumerate(names)}
    seen: set[str] = set()
    count = len(pieces)
    cursor = 0
    run = 0
    span = 1
    while cursor < count:
        if run < len(names):
            last = min(run + span, len(names)) - 1
            start = starts[run]
            stop = starts[last] + lengths[last]
            end = cursor + stop - start
            if (
                end <= count
                and pieces[cursor:end] == old_pieces[start:stop]
                and (end == count or not pieces[end].startswith("-A " + names[last] + " "))
            ):
                first = len(runs)
                shift = cursor - start
                runs += map(
                    Run,
                    names[run : last + 1],
                    map(shift.__add__, starts[run : last + 1]),
                    lengths[run : last + 1],
                    range(run, last + 1),
                )
                seen.update(names[run : last + 1])
                if spans and spans[-1].stop == first and runs[first - 1].old == run - 1:
                    spans[-1].stop = len(runs)
                else:
                    spans.append(Span(first, len(runs)))
                cursor = end
                run = last + 1
                span *= 2
                continue
            if span > 1:
                span = 1
                continue
        found = _chain_of(pieces[cursor])
        if found in seen:
            raise Irregular  # a chain in two runs: the general path's business
        later = order.get(found)
        if later is not None and later > run:
            run = later  # the chains in between are gone
            continue
        if later is not None and later < run:
            raise Irregular  # chains in another order
        prefix = "-A " + found + " "
        end = cursor + 1
        while end < count and pieces[end].startswith(prefix):
            end += 1
        runs.append(Run(found, cursor, end - cursor, -1))
        seen.add(found)
        cursor = end
        if later is not None:
            run += 1
    return runs, spans


def referrers(framed: str, names: set[str], runs: list[Run], head: str) -> set[int]:
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
    starts = [run.start for run in runs]
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


def dependents(pieces: list[str], runs: list[Run], endpoint: list[bool], changed: set[str]) -> set[str]:
    """The chains other than endpoint chains that jump or go to a chain in ``changed``, or to
    one of those, and so on (a longer name starting with one counts too: that only re-plans
    more).  Searched in those chains' text only (a few percent of the table)."""
    others = [run for run, flag in zip(runs, endpoint, strict=True) if not flag]
    texts = ["\n".join(pieces[run.start : run.start + run.length]) for run in others]
    joined = "\n".join(texts)
    starts = list(itertools.accumulate(map((1).__add__, map(len, texts)), initial=0))
    found: set[str] = set()
    frontier = set(changed)
    while frontier:
        hits: set[str] = set()
        for name in frontier:
            for needle in ("-j " + name, "-g " + name):
                at = joined.find(needle)
                while at != -1:
                    hits.add(others[bisect.bisect_right(starts, at) - 1].name)
                    at = joined.find(needle, at + 1)
        frontier = hits - changed - found
        found |= frontier
    return found
