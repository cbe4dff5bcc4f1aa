"""The re-parse of a table whose rules changed in a few chains: churn at steady-state cost.

When a pod comes or goes, felix adds or removes its endpoint chains and rewrites the
dispatch chains; the other ~99% of the table is the text of the previous read.  Everything
the columnar parse derives from an endpoint chain (its accept, deny, drop and profile
plans, its ``deny_not_exact`` diagnostics, its jumps) depends only on that chain's rules
and on the chains it jumps to (their verdicts, members, comments), on felix's mark bits and
on the table's family and source; it sits at slots (counter positions) of that chain.  So
a churn read:

1. takes the counters out of the text (``findall``, as the steady path does) and matches
   the previous read's chains against it by putting the previous read's text back together
   with the new counters and comparing it with the new text, a chunk of rules at a time:
   matched chains keep the previous read's rule-line strings, only changed or new chains
   are cut out of the text (:mod:`node_agent.columnar.realign`);
2. chooses what to plan again (:mod:`node_agent.columnar.replan`): the endpoint chains
   that changed or are new, those that jump to a chain that changed, came or went (or to
   one that does, transitively), those the mark bits are learned from, the chains all of
   them jump to, the groups, and the policy chains that changed (their ``policy_rule``
   plans; their tiers, that of each policy's first jump, are worked out over the jumps of
   every endpoint chain: :data:`~node_agent.columnar.TiersOf`), and plans them with the
   cold columnar parse of a smaller table;
3. edits the previous read's plans and records into this read's
   (:mod:`node_agent.columnar.splice`): the reused chains' stay where they are (their slots
   moved by their block's offset), the re-planned chains' take the place of those that
   changed or went, in slot order (the jumps likewise, a block at a time): the same plans
   in the same order as the cold parse of the whole text would give;
4. converts only the counters that changed and evaluates only the new records and those
   reading a changed counter (:mod:`node_agent.columnar.moved`).

Anything unusual (no declarations, a chain moved or split, mark bits that changed, a reused
policy chain whose tier changed, a line the cold parse would turn down) returns None and the
caller parses the whole text cold.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

from calico_accountant.records import CounterRecord
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.compiled import CompiledPlans
from node_agent.columnar import ColumnarParse, parse_columnar
from node_agent.columnar.jumps import Jumps, policy_tiers
from node_agent.columnar.moved import read_counters, stale, stale_positions
from node_agent.columnar.realign import counters_of, realign
from node_agent.columnar.replan import chains_to_replan
from node_agent.columnar.rows import Irregular, check_tail, declarations, is_odd
from node_agent.columnar.splice import (
    Group,
    Splicer,
    merged_jumps,
    moved_diagnostics,
    reused_blocks,
    slot_map,
)
from node_agent.iptables_save import detect_family

__all__ = ["Previous", "Reparse", "reparse", "reusable"]


@dataclass(slots=True)
class Reparse:
    """A table parsed by :func:`reparse`: what the cold columnar parse of its whole text
    would have given, and the text's counters and rule lines (for the next read)."""

    parse: ColumnarParse
    head: str
    """The text before the first rule line."""
    counters: list[str]
    """``packets:bytes`` of every rule line."""
    pieces: list[str]
    """Every rule line without its counters (``-A CHAIN ...``)."""
    tail: str
    """The text after the last rule line (from its newline on)."""
    records: tuple[list[CounterRecord], list[CounterRecord]] | None
    """What ``parse.compiled.evaluate_split`` gives for its counters (None: a deny came out
    negative, the caller evaluates all for the diagnostics)."""
    replanned: int
    """Endpoint chains re-planned (the others were reused)."""


def _lines_are_slots(parse: ColumnarParse) -> bool:
    """Whether every plan's line is that of its first slot (what moving plans relies on)."""
    first = parse.first_line
    return all(
        columns.lines == list(map(first.__add__, columns.slots[0]))
        for columns in (parse.compiled.single, parse.compiled.deny)
    )


def _in_order(slots: list[int]) -> bool:
    return all(map(operator.le, slots, itertools.islice(slots, 1, None)))


def reusable(parse: ColumnarParse) -> bool:
    """Whether a later read can re-parse from ``parse`` (checked once, after a full parse):
    chains declared, every plan's line that of its first slot, each group of plans in
    slot order (what moving and merging plans relies on)."""
    single = parse.compiled.single.slots[0]
    specials = parse.accepts + parse.specials
    return (
        bool(parse.declared)
        and _lines_are_slots(parse)
        and _in_order(single[: parse.accepts])
        and _in_order(single[parse.accepts : specials])
        and _in_order(single[specials:])
        and _in_order(parse.compiled.deny.slots[0])
    )


@dataclass(slots=True)
class Previous:
    """The previous read of a table, as :func:`reparse` reuses it."""

    parse: ColumnarParse
    """Its columnar parse (or the re-parse that stood for one)."""
    parts: list[str]
    """Its rule lines with their counters as text and separators, ``["\\n[", counter,
    "] ", rule line, ...]`` (the fast path's template)."""
    packets: list[int]
    octets: list[int]
    """Its counters as numbers (those of the last read: the fast path's reads change them,
    not the parse)."""
    records: tuple[list[CounterRecord], list[CounterRecord]] | None
    """Its single-slot and deny records, in plan order (None: not known)."""


def reparse(text: str, source: str, family: int | None, previous: Previous) -> Reparse | None:
    """The table ``text`` parsed reusing ``previous``, or None when the whole text must be parsed."""
    try:
        return _reparse(text, source, family, previous)
    except Irregular:
        return None


def _reparse(text: str, source: str, family: int | None, last: Previous) -> Reparse | None:
    previous = last.parse
    previous_size = len(last.parts) // 4
    framed_by_newline = text.startswith("[")
    framed = "\n" + text if framed_by_newline else text
    counters = counters_of(framed)
    count = len(counters)
    if not count:
        return None
    head, pieces, layout, tail = realign(framed, counters, previous, last.parts)
    if is_odd(head) or is_odd(tail):
        return None
    declared, opened = declarations(head)
    check_tail(tail[1:], opened)
    new_family = family or detect_family(text)
    if not declared or new_family != previous.family:
        return None

    names, starts, lengths = layout.names, layout.starts, layout.lengths
    if not declared.issuperset(names):
        return None
    chosen = chains_to_replan(framed, head, pieces, layout, declared, previous)
    if chosen is None:
        return None
    endpoint, where, included_set = chosen.endpoint, chosen.where, chosen.included
    included = sorted(included_set)
    blocks = reused_blocks(layout, included, previous.starts)
    old_to_new = slot_map(previous_size, blocks)
    reduced_to_new = list(
        itertools.chain.from_iterable(range(starts[i], starts[i] + lengths[i]) for i in included)
    )
    reduced_to_new.append(-1)
    body = "".join(
        itertools.chain.from_iterable(
            itertools.chain.from_iterable(
                zip(
                    itertools.repeat("\n["),
                    counters[starts[i] : starts[i] + lengths[i]],
                    itertools.repeat("] "),
                    pieces[starts[i] : starts[i] + lengths[i]],
                )
            )
            for i in included
        )
    )
    if body.count("\n") != len(reduced_to_new) - 1:
        return None  # a line that is not a rule among them (the cold parse turns it down)
    all_jumps: list[Jumps] = []

    def tiers_of(jumps: Jumps, facts: ChainFacts) -> dict[str, str]:
        every = merged_jumps(previous.jumps, blocks, jumps, reduced_to_new)
        all_jumps.append(every)
        return policy_tiers(every, facts)

    reduced = parse_columnar(head + body + tail, source, new_family, tiers_of, (head, declared, opened))
    if reduced is None or reduced.marks != previous.marks or not _lines_are_slots(reduced):
        return None
    # A reused chain's policy_rule plans hold its tier: it must not have changed.
    old_tiers, new_tiers = previous.tiers, reduced.tiers
    if old_tiers != new_tiers:
        moved_tiers = {
            name for name in old_tiers.keys() | new_tiers.keys() if old_tiers.get(name) != new_tiers.get(name)
        }
        for name in moved_tiers:
            at = where.get(name)
            if at is not None and at not in included_set and layout.old[at] != -1:
                return None

    first_line = head.count("\n") + (1 if framed_by_newline else 2)
    old_single, old_deny = previous.compiled.single, previous.compiled.deny
    new_single, new_deny = reduced.compiled.single, reduced.compiled.deny
    old_specials = previous.accepts + previous.specials
    new_specials = reduced.accepts + reduced.specials
    old_singles, old_denies = last.records or (None, None)
    # The previous read's plan columns are edited into this read's (it gives them up).
    old_count, old_denies_count = len(old_single.keys), len(old_deny.keys)
    splicer = Splicer(blocks, old_to_new, reduced_to_new)
    singles = Group.of(old_single, old_singles)
    splicer.edit(singles, (0, previous.accepts), new_single, (0, reduced.accepts))
    accepts = previous.accepts + singles.grown
    splicer.edit(singles, (previous.accepts, old_specials), new_single, (reduced.accepts, new_specials))
    specials = previous.specials + singles.grown - (accepts - previous.accepts)
    splicer.edit(singles, (old_specials, old_count), new_single, (new_specials, len(new_single.keys)))
    deny = Group.of(old_deny, old_denies)
    splicer.edit(deny, (0, old_denies_count), new_deny, (0, len(new_deny.keys)))
    single, single_records = singles.columns, singles.records
    structural = sorted(
        moved_diagnostics(previous.structural, previous.first_line, old_to_new, first_line)
        + moved_diagnostics(reduced.structural, reduced.first_line, reduced_to_new, first_line),
        key=operator.attrgetter("line"),
    )

    packets, octets, changed_slots = read_counters(
        counters, layout, previous.starts, (last.parts, last.packets, last.octets)
    )
    compiled = CompiledPlans.from_columns(single, deny.columns, first_line)
    positions = (
        stale_positions(previous.compiled, previous_size, blocks, changed_slots, (singles, deny))
        if last.records is not None
        else None
    ) or (
        stale(single, single_records, changed_slots, count),
        stale(deny.columns, deny.records, changed_slots, count),
    )
    records = compiled.refresh(
        (single_records, deny.records),  # type: ignore[arg-type]  # the None are replaced
        packets,
        octets,
        positions,
    )
    newlines = head.count("\n") + count + tail.count("\n") - framed_by_newline
    parse = ColumnarParse(
        compiled,
        structural,
        packets,
        octets,
        count,
        newlines + (0 if text.endswith("\n") else 1),
        names,
        starts,
        lengths,
        endpoint,
        declared,
        first_line,
        new_family,
        previous.marks,
        all_jumps[-1],
        accepts,
        specials,
        new_tiers,
        chosen.endpoint_targets & (declared | set(names)),  # chains of this table only: bounded
    )
    return Reparse(parse, head, counters, pieces, tail, records, chosen.replanned)
