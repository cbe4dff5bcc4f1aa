"""The re-parse of a table whose rules changed in a few chains: churn at steady-state cost.

When a pod comes or goes, felix adds or removes its endpoint chains and rewrites the
dispatch chains; the other ~99% of the table is the text of the previous read.  Everything
the columnar parse derives from an endpoint chain (its accept, deny, drop and profile
plans, its ``deny_not_exact`` diagnostics, its jumps) depends only on that chain's rules
and on the chains it jumps to (their verdicts, members, comments), on felix's mark bits and
on the table's family and source; it sits at slots (counter positions) of that chain.  So
a churn read:

1. splits the text into counters and rule lines (one regular-expression ``split``) and
   walks the previous read's chains in order, comparing each chain's rule lines (counters
   left out) with what they were (C-level list comparisons; only changed or new chains
   are looked at line by line);
2. re-plans, with the cold columnar parse of a smaller table, the endpoint chains that
   changed or are new, those that refer to a chain that changed, came or went (or refer to
   one that does, transitively), and those the mark bits are learned from; that table
   holds every other (non-endpoint) chain too, which are all re-planned: their
   ``policy_rule`` plans depend on the tier of every policy's first jump, worked out over
   the jumps of all endpoint chains (:data:`~node_agent.columnar.TiersOf`);
3. takes the plans, jumps and diagnostics of every other endpoint chain from the previous
   read with their slots moved to where the chain now is, and merges both in slot order:
   the same plans in the same order as the cold parse of the whole text would give.

Anything unusual (no declarations, a chain moved or split, mark bits that changed, a plan
whose line is not its counter's) returns None and the caller parses the whole text cold.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES, POLICY_CHAIN_PREFIXES
from calico_accountant.felix.endpoints import ENDPOINT_PREFIXES, endpoint_chain
from calico_accountant.records import CounterRecord, Diagnostic
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.compiled import CompiledPlans, PlanColumns
from node_agent.attribution.marks import learn_marks_from
from node_agent.columnar import ColumnarParse, parse_columnar
from node_agent.columnar.jumps import Jumps, policy_tiers
from node_agent.columnar.rows import Irregular, check_tail, declarations, is_odd
from node_agent.columnar.rules import positions
from node_agent.iptables_save import MAX_COUNTER, Rule, detect_family, new_rule, target_of

__all__ = ["COUNTER_PREFIX", "Previous", "Reparse", "reparse", "reusable", "split_pieces"]

_T = TypeVar("_T")

COUNTER_PREFIX = re.compile(r"\n\[([0-9]+:[0-9]+)\] ")
"""A rule line's ``[packets:bytes]`` prefix (the fast path's, ``node_agent.parsing``)."""


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
class _Run:
    name: str
    start: int
    length: int
    old: int
    """The previous read's run with the same rules, or -1 (changed or new)."""


def _segment(pieces: list[str], previous: ColumnarParse, old_pieces: list[str]) -> list[_Run]:
    """The chains of ``pieces`` as runs, each matched with the previous read's run of the
    same name when its rule lines are the same; :class:`Irregular` when a chain is split
    or the chains come in another order.

    Unchanged chains are matched many at a time (a span of the previous read's runs
    against the same number of rule lines here, doubling the span while it matches), so
    the Python steps are per change, not per chain; only changed or new chains are read
    line by line."""
    runs: list[_Run] = []
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
                for matched in range(run, last + 1):
                    runs.append(
                        _Run(names[matched], cursor + starts[matched] - start, lengths[matched], matched)
                    )
                    seen.add(names[matched])
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
        runs.append(_Run(found, cursor, end - cursor, -1))
        seen.add(found)
        cursor = end
        if later is not None:
            run += 1
    return runs


def _referrers(framed: str, names: set[str], runs: list[_Run], head: str) -> set[int]:
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


_POLICY_PREFIXES = tuple(POLICY_CHAIN_PREFIXES)


def _check_plain(name: str, lines: list[str], declared: set[str]) -> None:
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


def _dependents(pieces: list[str], runs: list[_Run], endpoint: list[bool], changed: set[str]) -> set[str]:
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


def _slot_map(size: int, moves: Iterator[tuple[int, int, int]]) -> list[int]:
    """Old slot -> new slot for the (old start, new start, length) moves, -1 elsewhere; one
    more entry (-1) at the end, read for slot -1 ("no next rule")."""
    mapping = [-1] * (size + 1)
    for old, new, length in moves:
        mapping[old : old + length] = range(new, new + length)
    return mapping


_Records = list[CounterRecord | None]


@dataclass(slots=True)
class _Group:
    """Plans of one group (accepts, drops and profiles, policy rules, denies) in slot order,
    with the record of each as the previous read had it (None: to evaluate)."""

    columns: PlanColumns
    records: _Records


def _moved(
    columns: PlanColumns,
    start: int,
    stop: int,
    mapping: list[int],
    first_line: int,
    records: Sequence[CounterRecord] | None,
) -> _Group:
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
    return _Group(
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


def _merged(base: _Group, more: _Group) -> _Group:
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
    return _Group(columns, _woven(at, base.records, more.records))


def _stale(group: PlanColumns, records: _Records, moved: bytearray) -> list[int]:
    """Positions of the plans whose record must be evaluated: new, or reading a slot whose
    counter moved (``moved[slot]``; its last entry, read for slot -1, is 0)."""
    flags = map(operator.is_, records, itertools.repeat(None))
    for column in group.slots:
        flags = map(operator.or_, flags, map(moved.__getitem__, column))
    return list(itertools.compress(range(len(records)), flags))


def _moved_diagnostics(
    diagnostics: Sequence[Diagnostic], old_first: int, mapping: list[int], new_first: int
) -> list[Diagnostic]:
    moved = []
    for diagnostic in diagnostics:
        slot = mapping[diagnostic.line - old_first]
        if slot != -1:
            moved.append(Diagnostic(diagnostic.code, diagnostic.message, new_first + slot, diagnostic.source))
    return moved


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
    pieces: list[str]
    """Its rule lines without counters."""
    counters: list[str]
    packets: list[int]
    octets: list[int]
    """Its counters, as text and as numbers (those of the last read: the fast path's reads
    change them, not the parse)."""
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
    old_pieces = last.pieces
    framed_by_newline = text.startswith("[")
    framed = "\n" + text if framed_by_newline else text
    head, counters, pieces, tail = split_pieces(framed)
    count = len(pieces)
    if not count or is_odd(head) or is_odd(tail):
        return None
    declared, opened = declarations(head)
    check_tail(tail[1:], opened)
    new_family = family or detect_family(text)
    if not declared or new_family != previous.family:
        return None

    runs = _segment(pieces, previous, old_pieces)
    names = [run.name for run in runs]
    if not declared.issuperset(names):
        return None
    endpoint = [
        previous.endpoint[run.old] if run.old != -1 else endpoint_chain(run.name) is not None for run in runs
    ]

    # What changed, came or went, and (transitively) the chains that mention it.
    present = set(names)
    changed = {run.name for run in runs if run.old == -1}
    changed.update(name for name in previous.names if name not in present)
    changed.update(declared ^ previous.declared)
    replan: set[int] = {index for index, run in enumerate(runs) if run.old == -1 and endpoint[index]}
    changed |= _dependents(pieces, runs, endpoint, changed)
    if changed & previous.endpoint_targets:
        replan.update(
            index
            for index in _referrers(framed, changed & previous.endpoint_targets, runs, head)
            if endpoint[index]
        )

    # The endpoint chains felix's mark bits are learned from (as far as the learning reads).
    endpoint_runs = [index for index, flag in enumerate(endpoint) if flag]
    read: list[int] = []

    def endpoint_rules() -> Iterator[tuple[str, list[Rule]]]:
        for index in endpoint_runs:
            read.append(index)
            run = runs[index]
            yield (
                run.name,
                [
                    new_rule((target_of(body), body, 0, 0, ""))
                    for body in pieces[run.start : run.start + run.length]
                ],
            )

    if learn_marks_from(endpoint_rules()) != previous.marks:
        return None
    replan.update(read)

    # The re-parsed table: those endpoint chains, every chain they jump to (and so on), the
    # groups (the tiers of their members come from every jump to them) and the other chains
    # that changed.  The other chains' plans are the previous read's.
    where = {run.name: index for index, run in enumerate(runs)}
    included_set = set(replan)
    for index, run in enumerate(runs):
        if endpoint[index] or run.name not in changed:
            continue
        if run.name.startswith(_POLICY_PREFIXES):
            included_set.add(index)  # its policy_rule plans
        elif run.old == -1:
            # No plans of its own (a dispatch chain, cali-FORWARD...): only what the cold
            # parse would check of its lines, so that it takes the same path.
            _check_plain(run.name, pieces[run.start : run.start + run.length], declared)
    included_set.update(index for index, run in enumerate(runs) if run.name.startswith(GROUP_CHAIN_PREFIXES))
    pending = list(included_set)
    endpoint_targets = set(previous.endpoint_targets)
    while pending:
        index = pending.pop()
        run = runs[index]
        targets = set(map(target_of, pieces[run.start : run.start + run.length]))
        if endpoint[index]:
            endpoint_targets |= targets
        for target in targets:
            found = where.get(target)
            if found is not None and not endpoint[found] and found not in included_set:
                included_set.add(found)
                pending.append(found)
    included = sorted(included_set)
    reused = [index for index, run in enumerate(runs) if index not in included_set and run.old != -1]
    old_to_new = _slot_map(
        len(old_pieces), ((previous.starts[runs[i].old], runs[i].start, runs[i].length) for i in reused)
    )
    reduced_to_new = list(
        itertools.chain.from_iterable(range(runs[i].start, runs[i].start + runs[i].length) for i in included)
    )
    reduced_to_new.append(-1)
    body = "".join(
        itertools.chain.from_iterable(
            itertools.chain.from_iterable(
                zip(
                    itertools.repeat("\n["),
                    counters[runs[i].start : runs[i].start + runs[i].length],
                    itertools.repeat("] "),
                    pieces[runs[i].start : runs[i].start + runs[i].length],
                )
            )
            for i in included
        )
    )
    if body.count("\n") != len(reduced_to_new) - 1:
        return None  # a line that is not a rule among them (the cold parse turns it down)
    all_jumps: list[Jumps] = []

    def tiers_of(jumps: Jumps, facts: ChainFacts) -> dict[str, str]:
        merged = _merged_jumps(previous.jumps, old_to_new, jumps, reduced_to_new)
        all_jumps.append(merged)
        return policy_tiers(merged, facts)

    reduced = parse_columnar(head + body + tail, source, new_family, tiers_of)
    if reduced is None or reduced.marks != previous.marks or not _lines_are_slots(reduced):
        return None
    # A reused chain's policy_rule plans hold its tier: it must not have changed.
    old_tiers, new_tiers = previous.tiers, reduced.tiers
    if old_tiers != new_tiers:
        moved_tiers = {
            name for name in old_tiers.keys() | new_tiers.keys() if old_tiers.get(name) != new_tiers.get(name)
        }
        if any(runs[index].name in moved_tiers for index in reused):
            return None

    first_line = head.count("\n") + (1 if framed_by_newline else 2)
    old_single, old_deny = previous.compiled.single, previous.compiled.deny
    new_single, new_deny = reduced.compiled.single, reduced.compiled.deny
    old_specials = previous.accepts + previous.specials
    new_specials = reduced.accepts + reduced.specials
    old_records = last.records or (None, None)
    old_singles, old_denies = old_records
    accepts = _merged(
        _moved(old_single, 0, previous.accepts, old_to_new, first_line, old_singles),
        _moved(new_single, 0, reduced.accepts, reduced_to_new, first_line, None),
    )
    specials = _merged(
        _moved(old_single, previous.accepts, old_specials, old_to_new, first_line, old_singles),
        _moved(new_single, reduced.accepts, new_specials, reduced_to_new, first_line, None),
    )
    policies = _merged(
        _moved(old_single, old_specials, len(old_single.keys), old_to_new, first_line, old_singles),
        _moved(new_single, new_specials, len(new_single.keys), reduced_to_new, first_line, None),
    )
    deny = _merged(
        _moved(old_deny, 0, len(old_deny.keys), old_to_new, first_line, old_denies),
        _moved(new_deny, 0, len(new_deny.keys), reduced_to_new, first_line, None),
    )
    single = accepts.columns
    single.extend(specials.columns)
    single.extend(policies.columns)
    single_records = accepts.records + specials.records + policies.records
    structural = sorted(
        _moved_diagnostics(previous.structural, previous.first_line, old_to_new, first_line)
        + _moved_diagnostics(reduced.structural, reduced.first_line, reduced_to_new, first_line),
        key=operator.attrgetter("line"),
    )

    packets, octets, moved = _counters(counters, runs, previous.starts, last)
    compiled = CompiledPlans.from_columns(single, deny.columns)
    records = compiled.refresh(
        (single_records, deny.records),  # type: ignore[arg-type]  # the None are replaced
        packets,
        octets,
        (_stale(single, single_records, moved), _stale(deny.columns, deny.records, moved)),
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
        [run.start for run in runs],
        [run.length for run in runs],
        endpoint,
        declared,
        first_line,
        new_family,
        previous.marks,
        all_jumps[-1],
        len(accepts.records),
        len(specials.records),
        new_tiers,
        endpoint_targets,
    )
    return Reparse(parse, head, counters, pieces, tail, records, len(replan))


def _merged_jumps(old: Jumps, old_to_new: list[int], new: Jumps, reduced_to_new: list[int]) -> Jumps:
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


def _counters(
    counters: list[str], runs: list[_Run], old_starts: list[int], last: Previous
) -> tuple[list[int], list[int], bytearray]:
    """Packets and octets of every slot: the previous read's where the counter text is the
    same, converted where it changed (:class:`Irregular` past u64); and per slot whether it
    changed (or is new), with a 0 at the end for slot -1."""
    before: list[str] = []
    packets: list[int] = []
    octets: list[int] = []
    for run in runs:
        if run.old != -1:
            start = old_starts[run.old]
            stop = start + run.length
            before += last.counters[start:stop]
            packets += last.packets[start:stop]
            octets += last.octets[start:stop]
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
