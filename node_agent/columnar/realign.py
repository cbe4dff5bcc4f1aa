"""A re-read table's rule lines matched against the previous read's by comparing text, for
the re-parse after churn (:mod:`node_agent.columnar.incremental`).

Why not split the text again: taking a 24 MB table apart into counters and rule lines
(``re.split``) makes ~320k new strings, and dropping the previous read's as many again,
most of the cost of a churn read; yet ~99% of the rule lines are those of the previous read.
So only the counters are taken out (``findall``, as the steady path does), and the previous
read's text is put back together with them, a chunk of rules at a time (``str.join``) and
compared with the new text where it should sit (``str.startswith``): where it matches, the
previous read's rule-line strings are the new ones.  Only the rule lines of changed or new
chains are cut out of the text.

Exactly what splitting the text on its counter prefixes would give (the test's reference,
``tests/test_parser_realign.py``), and each chain matched with the previous read's run of
the same name when its rule lines are the same: a counter prefix (``\\n[p:b] ``)
found in the text is a match of the pattern wherever it stands (so the first occurrence of
the next counter's prefix after a rule line is where ``findall`` found it), and a rule line
ends where the next prefix starts (the last one at its newline).
"""

from __future__ import annotations

import bisect
import itertools

from node_agent.columnar import ColumnarParse
from node_agent.columnar.chain_diff import COUNTER_PREFIX, Layout, chain_of
from node_agent.columnar.rows import Irregular

__all__ = ["counters_of", "realign"]

_CHUNK = 512
"""Rules put back together and compared at a time (~80 KB of text), before the first
difference in a chunk is found by halving."""


_MOSTLY_CHANGED = 16
"""Once more than one rule line in this many (and more than :data:`_FEW`) was cut out of the
text one by one, the table is mostly new (felix rewrote it): the cold parse, one split of the
whole text, is then cheaper than going on rule by rule."""
_FEW = 1024


class _Text:
    """The new text, its counters, and the previous read's rule lines with their separators
    (``old_parts``: ``["\\n[", counter, "] ", rule line, ...]``, a read's template)."""

    __slots__ = ("counters", "framed", "old_parts")

    def __init__(self, framed: str, counters: list[str], old_parts: list[str]) -> None:
        self.framed = framed
        self.counters = counters
        self.old_parts = old_parts

    def expected(self, new: int, old: int, rules: int) -> str:
        """The previous read's rules ``old:old + rules`` with the new counters ``new:...``."""
        chunk = self.old_parts[4 * old : 4 * (old + rules)]
        chunk[1::4] = self.counters[new : new + rules]
        return "".join(chunk)

    def same(self, new: int, at: int, old: int) -> tuple[int, int]:
        """How many rules from the new ``new`` (its prefix at ``at``) on are the previous
        read's from ``old`` on, and where the text after them starts."""
        framed = self.framed
        limit = min(len(self.counters) - new, len(self.old_parts) // 4 - old)
        done = 0
        while done < limit:
            size = min(_CHUNK, limit - done)
            text = self.expected(new + done, old + done, size)
            if framed.startswith(text, at):
                done += size
                at += len(text)
                continue
            low, high = done, done + size  # the same before low; the first difference before high
            while high - low > 1:
                middle = (low + high) // 2
                text = self.expected(new + low, old + low, middle - low)
                if framed.startswith(text, at):
                    low = middle
                    at += len(text)
                else:
                    high = middle
            done = low
            break
        # The last rule line matched may be the start of a longer one: only if the next
        # counter prefix (or, after the last rule, the newline ending it) follows is it whole.
        if done and not self._ends_at(new + done, old + done - 1, at):
            done -= 1
            at -= len(self.expected(new + done, old + done, 1))
        return done, at

    def _ends_at(self, new: int, old: int, at: int) -> bool:
        """Whether the new rule ``new`` starts at ``at`` (after the previous read's rule line
        ``old``), or the rules end there."""
        if new < len(self.counters):
            return self.framed.startswith("\n[" + self.counters[new] + "] ", at)
        ends = at == len(self.framed) or self.framed.startswith("\n", at)
        return ends and "\n" not in self.old_parts[4 * old + 3]

    def piece(self, new: int, at: int) -> tuple[str, int]:
        """The new rule ``new``'s line (its prefix at ``at``), cut out of the text, and where
        the next rule's prefix (or the text after the last rule line) starts."""
        framed, counters = self.framed, self.counters
        if not framed.startswith("\n[" + counters[new] + "] ", at):
            raise Irregular
        start = at + len(counters[new]) + 4
        if new + 1 < len(counters):
            end = framed.find("\n[" + counters[new + 1] + "] ", start)
        else:
            end = framed.find("\n", start)
            end = len(framed) if end == -1 else end
        if end == -1:
            raise Irregular
        return framed[start:end], end


def counters_of(framed: str) -> list[str]:
    """The ``packets:bytes`` of every rule line of a framed table (what ``re.split`` would
    give as its counters, without the strings between them)."""
    return COUNTER_PREFIX.findall(framed)


def _matched_runs(
    text: _Text, previous: ColumnarParse, cursor: int, at: int, run: int
) -> tuple[int, int, int] | None:
    """The previous read's runs from ``run`` on that are the new rules from ``cursor`` on
    (its prefix at ``at``), up to the first difference, as (the run after them, how many
    rules, where the text after them starts); None if not even ``run`` is."""
    names, starts, lengths = previous.names, previous.starts, previous.lengths
    start = starts[run]
    same, after = text.same(cursor, at, start)
    # The runs wholly before the first difference, but the last if its chain goes on.
    if start + same == len(text.old_parts) // 4:
        stop = len(names)
    else:
        stop = bisect.bisect_right(starts, start + same) - 1
    counters = text.counters
    while stop > run:
        rules = starts[stop - 1] + lengths[stop - 1] - start
        end = after - len(text.expected(cursor + rules, start + rules, same - rules))
        if cursor + rules == len(counters) or not text.framed.startswith(
            "-A " + names[stop - 1] + " ", end + 4 + len(counters[cursor + rules])
        ):
            return stop, rules, end
        stop -= 1
    return None


def realign(
    framed: str, counters: list[str], previous: ColumnarParse, old_parts: list[str]
) -> tuple[str, list[str], Layout, str]:
    """The table ``framed`` (its ``counters`` found) as (text before the rules, rule lines
    without counters, its chains matched with the previous read's, text after the rules);
    :class:`Irregular` when a chain is split or the chains come in another order."""
    count = len(counters)
    first = framed.find("\n[" + counters[0] + "] ")
    text = _Text(framed, counters, old_parts)
    layout = Layout([], [], [], [], [], [])
    pieces: list[str] = []
    names, starts = previous.names, previous.starts
    order = dict(zip(names, itertools.count()))
    seen: set[str] = set()
    cursor, at, run, walked = 0, first, 0, 0
    while cursor < count:
        if run < len(names):
            matched = _matched_runs(text, previous, cursor, at, run)
            if matched is not None:
                stop, rules, at = matched
                start = starts[run]
                layout.add_matched(run, stop, cursor - start, previous)
                pieces += old_parts[4 * start + 3 : 4 * (start + rules) : 4]
                seen.update(names[run:stop])
                cursor += rules
                run = stop
                continue
        piece, after = text.piece(cursor, at)
        found = chain_of(piece)
        if found in seen:
            raise Irregular  # a chain in two runs: the general path's business
        later = order.get(found)
        if later is not None and later > run:
            run = later  # the chains in between are gone
            continue
        if later is not None and later < run:
            raise Irregular  # chains in another order
        prefix = "-A " + found + " "
        chain = [piece]
        end, at = cursor + 1, after
        while end < count:
            piece, after = text.piece(end, at)
            if not piece.startswith(prefix):
                break
            chain.append(piece)
            end, at = end + 1, after
        layout.add_fresh(found, cursor, end - cursor)
        pieces += chain
        walked += len(chain)
        if walked > _FEW and walked * _MOSTLY_CHANGED > count:
            raise Irregular
        seen.add(found)
        cursor = end
        if later is not None:
            run += 1
    return framed[:first], pieces, layout, framed[at:]
