"""The cold parse of a well-formed ``iptables-save -c`` filter table, column by column.

A big node prints ~150k rule lines, almost all of them the same two shapes in endpoint
chains (a guarded jump to a policy, then ``Return if policy accepted``).  A Python loop
per line costs more than the whole target time of a parse, so this path takes the table
apart with one regular-expression ``split`` (counters, chain, target and rule id of
every line, as flat columns) and builds the records of policy jumps with C-level
``map``/``zip``/``compress``.  Python loops run only over the rare rules that need a
closer look (tier markers, drops, profiles) and over the small non-endpoint chains,
which reuse the general planner's helpers.

It is a fast path, never the only path: :func:`parse_columnar` returns None for anything
it does not fully understand (escapes or odd quoting, other tables, ``-P``/``-N`` forms,
bad counters, undeclared or interleaved chains, a missing chain...), and the caller then
runs the general :func:`~node_agent.iptables_save.scan` + :func:`~node_agent.attribution.plan_table`,
which gives the same result for input this path accepts (``tests/test_parser_paths.py``).
"""

from __future__ import annotations

import enum
import functools
import itertools
import operator
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from calico_accountant.felix.chains import (
    ENDPOINT_CHAIN_PREFIXES,
    GROUP_CHAIN_PREFIXES,
    NO_POLICY_MARKER,
    NO_PROFILE_MARKER,
    POLICY_ACCEPTED_MARKER,
    POLICY_JUMP_PREFIXES,
    PROFILE_ACCEPTED_MARKER,
    PROFILE_CHAIN_PREFIXES,
    START_OF_POLICIES_MARKER,
    START_OF_TIER_MARKER,
    UNTIERED,
)
from calico_accountant.records import CounterKey, Diagnostic, Kind
from node_agent.attribution import (
    ChainFacts,
    CompiledPlans,
    PlanColumns,
    RecordPlan,
    deny_inexact_reason,
    learn_marks_from,
    new_key,
    new_plan,
    plan_policy_rules,
)
from node_agent.iptables_save import MAX_COUNTER, Rule, comments_of, detect_family, rule_id_of, target_of

__all__ = ["ColumnarParse", "parse_columnar"]

_ROW = re.compile(
    r"\n\[([0-9]+):([0-9]+)\] -A ([^ \n]+)"
    r' (?:-m comment --comment "cali:([^"\\\' \n]*)")?'
)
"""One rule line's head, split off as four columns: packets, bytes, chain and felix's
leading ``cali:`` rule id (None when the line does not start that way).  What ``split``
leaves between two heads is the rest of a line (its "rest"), so a rule line this pattern
does not match shows up as a newline inside a rest.  A big table has ~150k rule lines
but only a few thousand distinct rests: everything else a line says (its target, whether
it is odd) is worked out once per distinct rest."""


class Field(enum.IntEnum):
    """Where each column of a rule line sits in a group of :data:`_FIELDS` strings that
    ``_ROW.split`` yields (``parts[Field.CHAIN::_FIELDS]`` is the chain of every line;
    ``parts[0]`` is the text before the first rule)."""

    PACKETS = 1
    OCTETS = 2
    CHAIN = 3
    LEADING_ID = 4
    REST = 5


_FIELDS = len(Field)


class RuleClass(enum.IntEnum):
    """How an endpoint-chain rule is planned, told by the first 8 characters of its target."""

    OTHER = 0
    """Nothing to plan (or not in an endpoint chain)."""
    JUMP = 1
    """A policy or group jump: the bulk, planned column-wise."""
    SPECIAL = 2
    """A tier marker (MARK), a drop or a profile jump: looked at one by one."""


_PREFIX_LENGTH = 8
"""Felix's chain prefixes are 8 characters (``cali-pi-``); profile ones 9 (``cali-pri-``)."""
assert all(len(prefix) == _PREFIX_LENGTH for prefix in POLICY_JUMP_PREFIXES), (
    "a jump is classed by its prefix alone: its first 8 characters must be the whole prefix"
)
_CLASS_BY_PREFIX: dict[str, RuleClass] = {
    **{prefix: RuleClass.JUMP for prefix in POLICY_JUMP_PREFIXES},
    # The first 8 characters of a 9-character prefix: a profile jump is told apart later.
    **{prefix[:_PREFIX_LENGTH]: RuleClass.SPECIAL for prefix in PROFILE_CHAIN_PREFIXES},
    **dict.fromkeys(("MARK", "DROP", "REJECT"), RuleClass.SPECIAL),
}
"""Endpoint-chain rules by the first 8 characters of their target (the only rules whose
class is not :attr:`RuleClass.OTHER`)."""
_new_rule = functools.partial(tuple.__new__, Rule)


@dataclass(slots=True)
class ColumnarParse:
    """What the columnar parse of one table yields: the same as scan + plan_table would."""

    compiled: CompiledPlans
    structural: list[Diagnostic]
    packets: list[int]
    bytes: list[int]
    rule_lines: int
    lines: int


class _Irregular(Exception):
    """The input is not the regular shape this path handles; use the general path."""


def parse_columnar(text: str, source: str, family: int | None) -> ColumnarParse | None:
    """The columnar parse of one table's text, or None when the general path must do it."""
    try:
        return _parse(text, source, family)
    except _Irregular:
        return None


def _positions(values: list[Any], wanted: object) -> Iterator[int]:
    """Indexes of ``wanted`` in ``values`` (found by C-level ``list.index``: for rare values)."""
    start = 0
    try:
        while True:
            start = values.index(wanted, start)
            yield start
            start += 1
    except ValueError:
        return


def _odd(text: str) -> bool:
    """Escapes or odd quoting: what the general scan re-tokenizes (so this path does not)."""
    return "\\" in text or "'" in text or text.count('"') % 2 == 1


def _declarations(head: str) -> tuple[set[str], bool]:
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
            raise _Irregular
    return declared, opened


def _check_tail(tail: str, opened: bool) -> None:
    """After the last rule only ``COMMIT`` (exactly when ``*filter`` opened), comments, blanks."""
    committed = False
    for line in tail.split("\n"):
        if line == "COMMIT" and not committed:
            committed = True
        elif line and line[:1] != "#":
            raise _Irregular
    if committed != opened:
        raise _Irregular


def _parse(text: str, source: str, family: int | None) -> ColumnarParse:
    framed_by_newline = text.startswith("[")
    framed = "\n" + text if framed_by_newline else text
    parts = _ROW.split(framed)
    count = (len(parts) - 1) // _FIELDS
    if not count:
        raise _Irregular
    head = parts[0]
    last_rest, newline, tail = parts[-1].partition("\n")
    # Without escapes or odd quoting no body needs re-tokenizing (the general scan's rule);
    # checked outside the rules here and per distinct rest below.
    if _odd(head) or _odd(tail):
        raise _Irregular
    declared, opened = _declarations(head)
    _check_tail(tail, opened)

    packets = list(map(int, parts[Field.PACKETS :: _FIELDS]))
    bytes_ = list(map(int, parts[Field.OCTETS :: _FIELDS]))
    if max(packets) > MAX_COUNTER or max(bytes_) > MAX_COUNTER:
        raise _Irregular
    chains = parts[Field.CHAIN :: _FIELDS]
    leading_ids = parts[Field.LEADING_ID :: _FIELDS]
    pieces = parts[Field.REST :: _FIELDS]
    pieces[-1] = last_rest
    first_line = head.count("\n") + (1 if framed_by_newline else 2)
    # Rests hold no newline (checked below): every other one is a row's, or outside the rules.
    newlines = head.count("\n") + count + len(newline) + tail.count("\n") - framed_by_newline
    line_count = newlines + (0 if text.endswith("\n") else 1)
    table_family = family or detect_family(text)

    # What each distinct rest says: a newline in it is a line the pattern did not take
    # apart; escapes or odd quoting need the general path's tokenizer.  Its target is the
    # word after the line's last `-j` (or `-g`), as the general scan finds it: for a line
    # with a leading id comment that is always inside the rest.
    target_of_rest: dict[str, str] = {}
    class_of_rest: dict[str, RuleClass] = {}
    for rest in dict.fromkeys(pieces):
        if "\n" in rest or _odd(rest):
            raise _Irregular
        target = target_of_rest[rest] = target_of(rest)
        class_of_rest[rest] = _CLASS_BY_PREFIX.get(target[:_PREFIX_LENGTH], RuleClass.OTHER)
    targets = list(map(target_of_rest.__getitem__, pieces))
    classes = list(map(class_of_rest.__getitem__, pieces))

    # Chains: contiguous runs of distinct, declared names (else the general path).
    run_names: list[str] = []
    run_lengths: list[int] = []
    for name, group in itertools.groupby(chains):
        run_names.append(name)
        run_lengths.append(len(list(group)))
    names = set(run_names)
    if len(names) != len(run_names):
        raise _Irregular
    for name in run_names:
        if _odd(name) or '"' in name or name[:1] == "-" or (declared and name not in declared):
            raise _Irregular
    run_ends = list(itertools.accumulate(run_lengths))
    run_starts = [end - length for end, length in zip(run_ends, run_lengths, strict=True)]
    present = names | declared

    def body_of(index: int) -> str:
        leading = leading_ids[index]
        middle = "" if leading is None else '-m comment --comment "cali:' + leading + '"'
        return "-A " + chains[index] + " " + middle + pieces[index]

    # Lines the pattern left partly open: no `-j` (a `-g` or no target) or no leading id.
    rule_ids = list(leading_ids)
    # What "does this rule's body contain <marker>" can be asked of: for markers made of
    # words and spaces, the text after the leading id comment answers as the body would.
    probes = list(pieces)
    for index in _positions(leading_ids, None):
        body = probes[index] = body_of(index)
        target = targets[index] = target_of(body)
        classes[index] = _CLASS_BY_PREFIX.get(target[:_PREFIX_LENGTH], RuleClass.OTHER)
        start = body.find('"cali:')
        rule_ids[index] = body[start + 6 : body.find('"', start + 6)] if start != -1 else rule_id_of(body)

    # What a rule's comments say depends only on its probe (the text after felix's leading
    # id comment, which is no marker): thousands of drops and tier markers share a handful.
    tier_cache: dict[tuple[bool, str], str | None] = {}
    drop_cache: dict[tuple[bool, str], list[tuple[bool, str]]] = {}

    def tier_markers(index: int) -> str | None:
        """The tier a ``Start of tier T`` marker switches to (the last such comment), or None."""
        key = (leading_ids[index] is None, probes[index])
        if key not in tier_cache:
            new_tier = None
            for comment in comments_of(body_of(index)):
                if comment.startswith(START_OF_TIER_MARKER):
                    new_tier = comment[len(START_OF_TIER_MARKER) :]
            tier_cache[key] = new_tier
        return tier_cache[key]

    def drop_markers(index: int) -> list[tuple[bool, str]]:
        """(True, tier or "") per ``... if no policies passed packet`` comment, (False, "") per
        ``... if no profiles matched``, in comment order."""
        key = (leading_ids[index] is None, probes[index])
        found = drop_cache.get(key)
        if found is None:
            found = drop_cache[key] = []
            for comment in comments_of(body_of(index)):
                match = NO_POLICY_MARKER.match(comment)
                if match:
                    found.append((True, match["tier"] or ""))
                elif NO_PROFILE_MARKER.match(comment):
                    found.append((False, ""))
        return found

    def rule_at(index: int) -> Rule:
        return _new_rule((targets[index], body_of(index), index, first_line + index, rule_ids[index]))

    def rules_of(run: int) -> list[Rule]:
        return [rule_at(index) for index in range(run_starts[run], run_ends[run])]

    endpoint_runs = [run for run, name in enumerate(run_names) if name[:8] in ENDPOINT_CHAIN_PREFIXES]
    other_chains = {
        name: rules_of(run) for run, name in enumerate(run_names) if name[:8] not in ENDPOINT_CHAIN_PREFIXES
    }
    marks = learn_marks_from((run_names[run], rules_of(run)) for run in endpoint_runs)
    facts = ChainFacts(other_chains, present, marks)

    # Per-rule columns of the chain a rule is in (expanded from the runs, C-level).
    endpoint_flags = [0] * len(run_names)
    run_directions: list[object] = [None] * len(run_names)
    run_interfaces = [""] * len(run_names)
    for run in endpoint_runs:
        endpoint_flags[run] = 1
        run_directions[run] = ENDPOINT_CHAIN_PREFIXES[run_names[run][:8]]
        run_interfaces[run] = run_names[run][8:]

    def expand(values: list[Any]) -> list[Any]:
        return list(itertools.chain.from_iterable(map(itertools.repeat, values, run_lengths)))

    end_of = expand(run_ends)
    for run, flag in enumerate(endpoint_flags):
        if not flag:
            classes[run_starts[run] : run_ends[run]] = itertools.repeat(RuleClass.OTHER, run_lengths[run])
    jumps = list(itertools.compress(range(count), map(RuleClass.JUMP.__eq__, classes)))
    specials = list(_positions(classes, RuleClass.SPECIAL))

    # Tiers: every endpoint chain starts untiered; `Start of tier T` / `Start of policies`
    # markers (MARK rules) change it from that rule on.
    events: list[tuple[int, str]] = []
    for run in range(len(run_names)):
        events.append((run_starts[run], UNTIERED if endpoint_flags[run] else ""))
    for index in specials:
        if targets[index] != "MARK":
            continue
        if START_OF_TIER_MARKER in probes[index]:
            new_tier = tier_markers(index)
            if new_tier is not None:
                events.append((index, new_tier))
        elif START_OF_POLICIES_MARKER in probes[index]:
            events.append((index, UNTIERED))
    events.sort(key=operator.itemgetter(0))  # stable: a marker on a chain's first rule wins
    event_starts = [start for start, _ in events]
    event_lengths = list(map(operator.sub, [*event_starts[1:], count], event_starts))
    tier_of = list(
        itertools.chain.from_iterable(map(itertools.repeat, [tier for _, tier in events], event_lengths))
    )
    direction_of = expand(run_directions)
    interface_of = expand(run_interfaces)

    single_plans: list[RecordPlan] = []
    for index in specials:
        target = targets[index]
        if target == "MARK":
            continue
        if target in ("DROP", "REJECT"):
            if " if no " not in probes[index]:
                continue
            for no_policy, tier in drop_markers(index):
                kind = Kind.NO_POLICY_DROP if no_policy else Kind.NO_PROFILE_DROP
                drop_tier = (tier or tier_of[index]) if no_policy else ""
                key = new_key(
                    (kind, table_family, direction_of[index], interface_of[index], "", drop_tier, -1, "")
                )
                single_plans.append(
                    new_plan((key, (index,), (rule_ids[index],), "", (), first_line + index, source))
                )
            continue
        if not target.startswith(PROFILE_CHAIN_PREFIXES):
            continue
        if target not in present:
            raise _Irregular  # a missing_chain diagnostic: the general path words it
        following = index + 1
        if following < end_of[index] and PROFILE_ACCEPTED_MARKER in probes[following]:
            key = new_key(
                (
                    Kind.PROFILE_ACCEPT,
                    table_family,
                    direction_of[index],
                    interface_of[index],
                    target,
                    "",
                    -1,
                    "",
                )
            )
            single_plans.append(
                new_plan(
                    (
                        key,
                        (following,),
                        (rule_ids[following],),
                        facts.chain_comment(target),
                        (),
                        first_line + following,
                        source,
                    )
                )
            )

    # Policy and group jumps, column-wise.
    get_target = targets.__getitem__
    jump_targets = list(map(get_target, jumps))
    jump_tiers = list(map(tier_of.__getitem__, jumps))
    distinct = dict.fromkeys(jump_targets)
    groups = False
    for target in distinct:
        if target not in present:
            raise _Irregular
        if target.startswith(GROUP_CHAIN_PREFIXES):
            groups = True
            for member in facts.group_members(target):
                if member not in present:
                    raise _Irregular
    policy_tiers: dict[str, str] = {}
    if groups:
        for target, tier in zip(jump_targets, jump_tiers, strict=True):
            if target.startswith(GROUP_CHAIN_PREFIXES):
                for member in facts.group_members(target):
                    policy_tiers.setdefault(member, tier)
            policy_tiers.setdefault(target, tier)
    else:
        policy_tiers = dict(zip(reversed(jump_targets), reversed(jump_tiers), strict=True))

    probes.append("")
    rule_ids.append("")
    following_of = list(map((1).__add__, jumps))
    accepted_flags = list(
        map(
            operator.and_,
            map(operator.lt, following_of, map(end_of.__getitem__, jumps)),
            map(
                operator.contains,
                map(probes.__getitem__, following_of),
                itertools.repeat(POLICY_ACCEPTED_MARKER),
            ),
        )
    )
    accepted = list(itertools.compress(jumps, accepted_flags))
    accepted_following = list(itertools.compress(following_of, accepted_flags))
    accepted_targets = list(itertools.compress(jump_targets, accepted_flags))
    accepted_tiers = list(itertools.compress(jump_tiers, accepted_flags))
    accepted_ends = list(map(end_of.__getitem__, accepted))
    # The rule after the accept, or -1: (index + 3) * (index + 2 < end) - 1.
    after_of = list(
        map(
            operator.sub,
            map(
                operator.mul,
                map((3).__add__, accepted),
                map(operator.lt, map((2).__add__, accepted), accepted_ends),
            ),
            itertools.repeat(1),
        )
    )
    comment_of = {target: facts.chain_comment(target) for target in distinct}
    members_of = {
        target: facts.group_members(target) if target.startswith(GROUP_CHAIN_PREFIXES) else ()
        for target in distinct
    }
    accepted_comments = list(map(comment_of.__getitem__, accepted_targets))
    accepted_members = list(map(members_of.__getitem__, accepted_targets))
    accepted_directions = list(map(direction_of.__getitem__, accepted))
    accepted_interfaces = list(map(interface_of.__getitem__, accepted))

    # A deny is left out where entered - accepted - next could include passed packets.
    structural: list[Diagnostic] = []
    deny_flags: list[bool] | None = None
    passing = {target for target in distinct if facts.has_pass(target) is not False}
    if passing:
        tiers_that_may_pass: dict[int, set[str]] = {}
        for index, target, tier in zip(jumps, jump_targets, jump_tiers, strict=True):
            if target in passing:
                tiers_that_may_pass.setdefault(end_of[index], set()).add(tier)
        deny_flags = []
        for index, target, tier, after in zip(
            accepted, accepted_targets, accepted_tiers, after_of, strict=True
        ):
            may_pass = tier in tiers_that_may_pass.get(end_of[index], ())
            if target in passing or may_pass:
                reason = deny_inexact_reason(
                    target, rule_at(after) if after >= 0 else None, tier, may_pass, marks, facts.has_pass
                )
                if reason:
                    structural.append(
                        Diagnostic(
                            "deny_not_exact",
                            f"{chains[index]}: deny for {reason}; left out",
                            first_line + index,
                            source,
                        )
                    )
                    deny_flags.append(False)
                    continue
            deny_flags.append(True)

    def keys(kind: Kind, selected: list[bool] | None) -> list[CounterKey]:
        def pick(column: list[Any]) -> Iterable[Any]:
            return column if selected is None else itertools.compress(column, selected)

        return list(
            map(
                new_key,
                zip(
                    itertools.repeat(kind),
                    itertools.repeat(table_family),
                    pick(accepted_directions),
                    pick(accepted_interfaces),
                    pick(accepted_targets),
                    pick(accepted_tiers),
                    itertools.repeat(-1),
                    itertools.repeat(""),
                ),
            )
        )

    def pick_deny(column: list[Any]) -> list[Any]:
        return list(column if deny_flags is None else itertools.compress(column, deny_flags))

    get_id = rule_ids.__getitem__
    deny_entered = pick_deny(accepted)
    deny_accepted = pick_deny(accepted_following)
    deny_after = pick_deny(after_of)
    deny = PlanColumns(
        keys(Kind.POLICY_DENY, deny_flags),
        (deny_entered, deny_accepted, deny_after),
        list(
            zip(map(get_id, deny_entered), map(get_id, deny_accepted), map(get_id, deny_after), strict=True)
        ),
        pick_deny(accepted_comments),
        pick_deny(accepted_members),
        list(map(first_line.__add__, deny_entered)),
        [source] * len(deny_entered),
    )
    single = PlanColumns(
        keys(Kind.POLICY_ACCEPT, None),
        (accepted_following,),
        list(zip(map(get_id, accepted_following))),
        accepted_comments,
        accepted_members,
        list(map(first_line.__add__, accepted_following)),
        [source] * len(accepted),
    )
    # After the denies took copies of the shared columns: extending in place is safe.
    single.extend(
        PlanColumns.of(
            single_plans + plan_policy_rules(other_chains, facts, policy_tiers, table_family, source), 1
        )
    )
    return ColumnarParse(
        CompiledPlans.from_columns(single, deny),
        structural,
        packets,
        bytes_,
        count,
        line_count,
    )
