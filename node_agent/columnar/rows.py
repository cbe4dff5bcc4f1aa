"""Stage 1 of the columnar parse: the table's text split into flat columns, one entry per rule line.

A Python loop per line costs more than the whole target time of a parse, so the text is
taken apart by one regular-expression ``split``; everything after it works on the
resulting lists with C-level ``map``/``zip``/``compress``.  What the split cannot vouch
for (the lines around the rules, counters past u64) is checked here, and anything out
of the ordinary raises :class:`Irregular`: the general path handles it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from node_agent.iptables_save import MAX_COUNTER, detect_family

__all__ = [
    "FIELDS",
    "ROW",
    "Field",
    "Irregular",
    "Rows",
    "body_of",
    "check_tail",
    "declarations",
    "is_odd",
    "split_rows",
]


class Irregular(Exception):
    """The input is not the regular shape this path handles; use the general path."""


ROW = re.compile(
    r"\n\[([0-9]+):([0-9]+)\] -A (\S+)"
    r' (?:-m comment --comment "cali:([^"\\\' \n]*)")?',
    re.ASCII,
)
"""One rule line's head, split off as four columns: packets, octets (bytes), chain and felix's
leading ``cali:`` rule id (None when the line does not start that way).  What ``split``
leaves between two heads is the rest of a line (its "rest"), so a rule line this pattern
does not match shows up as a newline inside a rest.  A big table has ~150k rule lines
but only a few thousand distinct rests: everything else a line says (its target, whether
it is odd) is worked out once per distinct rest (:mod:`node_agent.columnar.rules`).

The chain is ``\\S+`` (ASCII: no space, tab, CR, LF, VT or FF), a category the engine tests
faster than the set ``[^ \\n]`` (60 -> 52 ms for 147k lines): a line whose chain holds other
whitespace is then not taken apart, which sends the table to the general path."""


class Field(enum.IntEnum):
    """Where each column of a rule line sits in a group of :data:`FIELDS` strings that
    ``ROW.split`` yields (``parts[Field.CHAIN::FIELDS]`` is the chain of every line;
    ``parts[0]`` is the text before the first rule)."""

    PACKETS = 1
    OCTETS = 2
    CHAIN = 3
    LEADING_ID = 4
    REST = 5


FIELDS = len(Field)


@dataclass(slots=True)
class Rows:
    """The rule lines of one table as columns; a rule's index in them is its counter slot."""

    packets: list[int]
    octets: list[int]
    chains: list[str]
    leading_ids: list[str | None]
    """Felix's ``cali:`` rule id when the line starts with it (nearly all lines), else None."""
    rests: list[str]
    """Each line after its chain and leading id comment (without a newline: checked by
    :func:`~node_agent.columnar.rules.rule_columns`)."""
    declared: set[str]
    """Chains declared (``:NAME ...``) before the first rule."""
    count: int
    first_line: int
    """The line number of the first rule line (the others follow it, one per line)."""
    line_count: int
    family: int


def is_odd(text: str) -> bool:
    """Escapes or odd quoting: what the general scan re-tokenizes (so this path does not)."""
    return "\\" in text or "'" in text or text.count('"') % 2 == 1


Head = tuple[str, set[str], bool]
"""The text before a table's first rule with what :func:`declarations` gives for it."""


def split_rows(text: str, family: int | None, known: Head | None = None) -> Rows:
    """The columns of ``text``'s rule lines, or :class:`Irregular`.

    Why here: the split and the integer conversions are the only steps that touch every
    line, so they are done once, C-level, and the lines around the rules (few) are
    checked line by line.  ``known``: the declarations of a head already read (the
    re-parse after churn parses a few chains under the whole table's head, ~10k lines on a
    big node), used when the text's head is that one.
    """
    framed_by_newline = text.startswith("[")
    framed = "\n" + text if framed_by_newline else text
    parts = ROW.split(framed)
    count = (len(parts) - 1) // FIELDS
    if not count:
        raise Irregular
    head = parts[0]
    last_rest, newline, tail = parts[-1].partition("\n")
    # Without escapes or odd quoting no body needs re-tokenizing (the general scan's rule);
    # checked outside the rules here and per distinct rest by rule_columns.
    if is_odd(head) or is_odd(tail):
        raise Irregular
    declared, opened = known[1:] if known is not None and known[0] == head else declarations(head)
    check_tail(tail, opened)

    try:
        packets = list(map(int, parts[Field.PACKETS :: FIELDS]))
        octets = list(map(int, parts[Field.OCTETS :: FIELDS]))
    except ValueError:  # over int()'s 4300-digit limit: far past u64, the general path says so
        raise Irregular from None
    if max(packets) > MAX_COUNTER or max(octets) > MAX_COUNTER:
        raise Irregular
    rests = parts[Field.REST :: FIELDS]
    rests[-1] = last_rest
    # Rests hold no newline (checked by rule_columns): every other one is a row's, or
    # outside the rules.
    newlines = head.count("\n") + count + len(newline) + tail.count("\n") - framed_by_newline
    return Rows(
        packets,
        octets,
        parts[Field.CHAIN :: FIELDS],
        parts[Field.LEADING_ID :: FIELDS],
        rests,
        declared,
        count,
        head.count("\n") + (1 if framed_by_newline else 2),
        newlines + (0 if text.endswith("\n") else 1),
        family or detect_family(text),
    )


def declarations(head: str) -> tuple[set[str], bool]:
    """Declared chains of the lines before the first rule, and whether ``*filter`` opened."""
    declared: set[str] = set()
    opened = False
    for line in head.split("\n"):
        first = line[:1]
        if first == ":":
            name = line[1:].split(" ", 1)[0]
            if name:
                declared.add(name)
        elif first == "#" or not line:
            continue
        elif line == "*filter" and not opened:
            opened = True
        else:
            raise Irregular
    return declared, opened


def check_tail(tail: str, opened: bool) -> None:
    """After the last rule only ``COMMIT`` (exactly when ``*filter`` opened), comments, blanks."""
    committed = False
    for line in tail.split("\n"):
        if line == "COMMIT" and not committed:
            committed = True
        elif line and line[:1] != "#":
            raise Irregular
    if committed != opened:
        raise Irregular


def body_of(rows: Rows, index: int) -> str:
    """The rule's body (``-A CHAIN ...`` without counters), as the general scan keeps it:
    put back together only for the few rules that are looked at one by one."""
    leading = rows.leading_ids[index]
    middle = "" if leading is None else '-m comment --comment "cali:' + leading + '"'
    return "-A " + rows.chains[index] + " " + middle + rows.rests[index]
