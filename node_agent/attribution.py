"""Rules to per-endpoint and per-policy counter plans, by felix's chain structure (pure).

Attribution is split in two so the agent's steady state is cheap: :func:`plan_table`
works out, from the rules' *shapes* only, which rule counters make up which record
(a :class:`RecordPlan` names rule ordinals, "slots"); :func:`evaluate` then reads the
values from a counter array.  When a node's rules have not changed since the last read,
only :func:`evaluate` runs again.

Exactness rules (see ``docs/attribution.md``):

* policy accept = the ``Return if policy accepted`` rule right after the jump;
* policy deny = entered - accepted - next, by flow conservation inside the endpoint
  chain, and only when it cannot include passed packets (no pass rule in the policy, or
  a pass-guarded ``next``).  Otherwise the record is left out and a ``deny_not_exact``
  diagnostic says why: a number we cannot make exact is not published;
* node-level rule counters come from inside the shared policy chains and are never
  split per endpoint.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, NamedTuple

from calico_accountant.felix.chains import (
    ENDPOINT_CHAIN_PREFIXES,
    GROUP_CHAIN_PREFIXES,
    NO_POLICY_MARKER,
    NO_PROFILE_MARKER,
    POLICY_ACCEPTED_MARKER,
    POLICY_CHAIN_PREFIXES,
    POLICY_JUMP_PREFIXES,
    PROFILE_ACCEPTED_MARKER,
    PROFILE_CHAIN_PREFIXES,
    START_OF_POLICIES_MARKER,
    START_OF_TIER_MARKER,
    UNTIERED,
    is_identity_comment,
)
from calico_accountant.records import CounterKey, CounterRecord, Diagnostic, Kind, RuleAction
from node_agent.iptables_save import (
    FilterTable,
    Rule,
    comments_of,
    has_extra_match,
    mark_guards_of,
    set_xmark_of,
)

_JUMP_PREFIX_SET = frozenset(POLICY_JUMP_PREFIXES)
_ENDPOINT_CHAIN_PREFIXES_TUPLE = tuple(ENDPOINT_CHAIN_PREFIXES)
_POLICY_CHAIN_PREFIXES_TUPLE = tuple(POLICY_CHAIN_PREFIXES)
_DROP_TARGETS = frozenset({"DROP", "REJECT"})


DEFAULT_ACCEPT_MARK = 0x10000
"""Felix >= 3.1 with the default mask 0xffff0000; used only when no rule shows the bit."""


@dataclass(frozen=True, slots=True)
class MarkBits:
    """Felix's mark bits for this table, learned from its rules."""

    accept: int
    pass_: int


class RecordPlan(NamedTuple):
    """Which rule counters make up one record.  One slot: that rule's value; three slots
    (a deny): ``a - b - c``, slot ``-1`` standing for zero.  A named tuple: a big node
    has ~100k plans and :func:`evaluate` unpacks them on every read."""

    key: CounterKey
    slots: tuple[int, ...]
    rule_ids: tuple[str, ...]
    chain_comment: str = ""
    group_members: tuple[str, ...] = ()
    line: int = 0
    source: str = ""


new_key = functools.partial(tuple.__new__, CounterKey)
"""Builds a CounterKey from a full tuple of its fields, without the Python-level __new__."""
new_plan = functools.partial(tuple.__new__, RecordPlan)
_new_record = functools.partial(tuple.__new__, CounterRecord)


def learn_marks(table: FilterTable) -> MarkBits:
    """The accept and pass bits, from the markers felix writes; never hard-coded.

    ``Return if policy/profile accepted`` guards on ``accept/accept``; ``Start of ...``
    clears the pass bit (before v3.28); every policy jump is guarded by ``0x0/pass``
    (``0x0/accept|pass`` inside groups and in v3.28's combined clear).
    """
    return learn_marks_from(table.chains.items())


def learn_marks_from(chains: Iterable[tuple[str, Sequence[Rule]]]) -> MarkBits:
    """:func:`learn_marks` over (chain name, rules) pairs in table order; it stops at the
    first chains that show both bits, so a lazy iterable is materialized only that far."""
    accept = 0
    pass_ = 0
    for name, rules in chains:
        if not name.startswith(_ENDPOINT_CHAIN_PREFIXES_TUPLE):
            continue
        for rule in rules:
            body = rule.body
            if (
                not accept
                and rule.target == "RETURN"
                and (POLICY_ACCEPTED_MARKER in body or PROFILE_ACCEPTED_MARKER in body)
            ):
                for value, mask, negated in mark_guards_of(body):
                    if value == mask and not negated:
                        accept = mask
            if not pass_ and rule.target.startswith(POLICY_JUMP_PREFIXES):
                for value, mask, negated in mark_guards_of(body):
                    if value == 0 and not negated:
                        pass_ = mask
            if (
                not pass_
                and rule.target == "MARK"
                and (START_OF_POLICIES_MARKER in body or START_OF_TIER_MARKER in body)
            ):
                mark = set_xmark_of(body)
                if mark is not None and mark[0] == 0:
                    pass_ = mark[1]
            if accept and pass_:
                break
        if accept and pass_:
            break
    if pass_ & accept:
        pass_ &= ~accept
    if not accept:
        # Felix allocates accept, then pass, from the lowest free bits of its mask.
        accept = (pass_ & -pass_) >> 1 if pass_ else DEFAULT_ACCEPT_MARK
    if not pass_:
        pass_ = accept << 1
    return MarkBits(accept=accept, pass_=pass_)


def chain_verdicts(rules: Sequence[Rule], marks: MarkBits) -> list[tuple[Rule, RuleAction]]:
    """The rules of a policy chain that give a verdict, in order, with that verdict.

    Plumbing (RETURN, NFLOG, scratch marks, the comment-only identity rule) is skipped.
    A v3.30+ deny is two rules, ``MARK --set-xmark D/D`` then ``-m mark --mark D/D -j
    DROP``: the MARK is the verdict (in Calico Enterprise an NFQUEUE rule can sit between
    them, so only the MARK counts every denied packet) and the guarded DROP is its
    follow-up, not a second verdict.  The drop bit ``D`` is learned from that DROP.
    """
    # Bits the chain clears (``--set-xmark 0x0/S``) are scratch bits of match blocks
    # (before v3.30 scratch0 is 0x40000, the same bit v3.30 uses to drop): a rule setting
    # one only records that one alternative of a match matched, it is no verdict.
    scratch = 0
    for rule in rules:
        if rule.target == "MARK":
            mark = set_xmark_of(rule.body)
            if mark is not None and mark[0] == 0:
                scratch |= mark[1]
    drop_bits = set()
    for rule in rules:
        if rule.target in _DROP_TARGETS:
            guards = mark_guards_of(rule.body)
            if (
                len(guards) == 1
                and guards[0][0] == guards[0][1]
                and not guards[0][2]
                and guards[0][0] not in (marks.accept, marks.pass_)
                and not guards[0][0] & scratch
                and not has_extra_match(rule.body)
            ):
                drop_bits.add(guards[0][0])
    found: list[tuple[Rule, RuleAction]] = []
    for rule in rules:
        target = rule.target
        if target in _DROP_TARGETS:
            if drop_bits and _is_drop_follow_up(rule, drop_bits):
                continue
            found.append((rule, RuleAction.DENY))
        elif target == "MARK":
            mark = set_xmark_of(rule.body)
            if mark is None:
                continue
            value, mask = mark
            if not value or value & mask != value:
                continue
            if value == marks.accept:
                found.append((rule, RuleAction.ALLOW))
            elif value == marks.pass_:
                found.append((rule, RuleAction.PASS))
            elif value in drop_bits:
                found.append((rule, RuleAction.DENY))
        elif target == "LOG":
            found.append((rule, RuleAction.LOG))
    return found


def _is_drop_follow_up(rule: Rule, drop_bits: set[int]) -> bool:
    guards = mark_guards_of(rule.body)
    return (
        len(guards) == 1
        and guards[0][0] in drop_bits
        and guards[0][0] == guards[0][1]
        and not has_extra_match(rule.body)
    )


def pass_guarded(rule: Rule, marks: MarkBits) -> bool:
    """True for a rule only packets with the pass bit clear reach (the next policy jump,
    an NFLOG or the tier's drop): its counter excludes passed packets."""
    if has_extra_match(rule.body):
        return False
    return any(
        value == 0 and mask & marks.pass_ and not negated
        for value, mask, negated in mark_guards_of(rule.body)
    )


def identity_comment(rules: Sequence[Rule]) -> str:
    """Felix's ``Policy ns/name ingress`` / ``<Kind> ...`` / ``Profile ...`` comment of a chain."""
    for rule in rules[:2]:
        if " ingress" in rule.body or " egress" in rule.body:
            for comment in comments_of(rule.body):
                if is_identity_comment(comment):
                    return comment
    return ""


class ChainFacts:
    """What planning asks about the chains an endpoint chain jumps to (verdicts, identity
    comment, group members, whether they can pass), each answer computed once per table."""

    __slots__ = ("_comments", "_members", "_pass", "_verdicts", "chains", "marks", "present")

    def __init__(self, chains: Mapping[str, Sequence[Rule]], present: Set[str], marks: MarkBits) -> None:
        self.chains = chains
        self.present = present
        """Chains in the dump: with rules, or only declared (an empty policy)."""
        self.marks = marks
        self._verdicts: dict[str, list[tuple[Rule, RuleAction]]] = {}
        self._comments: dict[str, str] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        self._pass: dict[str, bool | None] = {}

    def verdicts_of(self, name: str) -> list[tuple[Rule, RuleAction]] | None:
        """The verdict rules of a policy chain; None when the chain is not in the dump."""
        if name not in self.present:
            return None
        found = self._verdicts.get(name)
        if found is None:
            found = self._verdicts[name] = chain_verdicts(self.chains.get(name, ()), self.marks)
        return found

    def chain_comment(self, name: str) -> str:
        comment = self._comments.get(name)
        if comment is None:
            comment = self._comments[name] = identity_comment(self.chains.get(name, ()))
        return comment

    def group_members(self, name: str) -> tuple[str, ...]:
        members = self._members.get(name)
        if members is None:
            members = self._members[name] = tuple(
                rule.target
                for rule in self.chains.get(name, ())
                if rule.target.startswith(_POLICY_CHAIN_PREFIXES_TUPLE)
            )
        return members

    def has_pass(self, name: str) -> bool | None:
        """Whether a policy or group can pass packets; None when that is unknown (chain not in the dump)."""
        if name in self._pass:
            return self._pass[name]
        answer: bool | None = False
        if name not in self.present:
            answer = None
        else:
            for target in self.group_members(name) if name.startswith(GROUP_CHAIN_PREFIXES) else (name,):
                rules = self.verdicts_of(target)
                if rules is None:
                    answer = None
                    break
                if any(action is RuleAction.PASS for _, action in rules):
                    answer = True
                    break
        self._pass[name] = answer
        return answer


def plan_table(table: FilterTable) -> tuple[list[RecordPlan], list[Diagnostic]]:
    """Every record of one filter table, as plans over rule slots, plus structural diagnostics."""
    marks = learn_marks(table)
    chains = table.chains
    # A chain with no rules (an empty policy) appears only in its declaration.
    present = chains.keys() | table.declared
    family = table.family
    source = table.source
    plans: list[RecordPlan] = []
    diagnostics: list[Diagnostic] = []
    missing: set[str] = set()
    policy_tiers: dict[str, str] = {}
    facts = ChainFacts(chains, present, marks)
    chain_comment = facts.chain_comment
    group_members = facts.group_members
    has_pass = facts.has_pass

    def note_missing(name: str, line: int) -> None:
        if name not in missing:
            missing.add(name)
            diagnostics.append(
                Diagnostic("missing_chain", f"chain {name} is jumped to but not in the dump", line, source)
            )

    for name, rules in chains.items():
        direction = ENDPOINT_CHAIN_PREFIXES.get(name[:8])
        if direction is None:
            continue
        interface = name[8:]
        tiers = _tier_of_each_rule(rules)
        # Tiers holding a policy that can (or, its chain missing, may) pass packets: there
        # an unguarded "next" rule also counts passed packets.
        tier_may_pass = {
            tiers[index]
            for index, rule in enumerate(rules)
            if rule.target[:8] in _JUMP_PREFIX_SET and has_pass(rule.target) is not False
        }
        count = len(rules)
        for index, rule in enumerate(rules):
            target = rule.target
            body = rule.body
            if target == "MARK":
                continue
            tier = tiers[index]
            if target in _DROP_TARGETS:
                if " if no " not in body:
                    continue
                for comment in comments_of(body):
                    match = NO_POLICY_MARKER.match(comment)
                    if match:
                        key = CounterKey(
                            Kind.NO_POLICY_DROP, family, direction, interface, "", match["tier"] or tier
                        )
                    elif NO_PROFILE_MARKER.match(comment):
                        key = CounterKey(Kind.NO_PROFILE_DROP, family, direction, interface)
                    else:
                        continue
                    plans.append(
                        RecordPlan(key, (rule.ordinal,), (rule.rule_id,), line=rule.line, source=source)
                    )
                continue
            if not target.startswith("cali-"):
                continue
            following = rules[index + 1] if index + 1 < count else None
            if target.startswith(PROFILE_CHAIN_PREFIXES):
                if target not in present:
                    note_missing(target, rule.line)
                if following is not None and PROFILE_ACCEPTED_MARKER in following.body:
                    plans.append(
                        RecordPlan(
                            CounterKey(Kind.PROFILE_ACCEPT, family, direction, interface, target),
                            (following.ordinal,),
                            (following.rule_id,),
                            chain_comment(target),
                            line=following.line,
                            source=source,
                        )
                    )
                continue
            is_group = target.startswith(GROUP_CHAIN_PREFIXES)
            if not is_group and not target.startswith(_POLICY_CHAIN_PREFIXES_TUPLE):
                continue
            if target not in present:
                note_missing(target, rule.line)
            members = group_members(target) if is_group else ()
            for member in members:
                policy_tiers.setdefault(member, tier)
                if member not in present:
                    note_missing(member, rule.line)
            policy_tiers.setdefault(target, tier)
            if following is None or POLICY_ACCEPTED_MARKER not in following.body:
                # Only staged-only groups lack the RETURN, and they have no chains since v3.30.
                continue
            comment = chain_comment(target)
            accept_id = following.rule_id
            plans.append(
                new_plan(
                    (
                        new_key((Kind.POLICY_ACCEPT, family, direction, interface, target, tier, -1, "")),
                        (following.ordinal,),
                        (accept_id,),
                        comment,
                        members,
                        following.line,
                        source,
                    )
                )
            )
            after = rules[index + 2] if index + 2 < count else None
            if has_pass(target) is not False or tier in tier_may_pass:
                reason = deny_inexact_reason(target, after, tier, tier in tier_may_pass, marks, has_pass)
                if reason:
                    diagnostics.append(
                        Diagnostic(
                            "deny_not_exact", f"{name}: deny for {reason}; left out", rule.line, source
                        )
                    )
                    continue
            plans.append(
                new_plan(
                    (
                        new_key((Kind.POLICY_DENY, family, direction, interface, target, tier, -1, "")),
                        (rule.ordinal, following.ordinal, after.ordinal if after is not None else -1),
                        (rule.rule_id, accept_id, after.rule_id if after is not None else ""),
                        comment,
                        members,
                        rule.line,
                        source,
                    )
                )
            )

    plans.extend(plan_policy_rules(chains, facts, policy_tiers, family, source))
    return plans, diagnostics


def plan_policy_rules(
    chains: Mapping[str, Sequence[Rule]],
    facts: ChainFacts,
    policy_tiers: Mapping[str, str],
    family: int,
    source: str,
) -> list[RecordPlan]:
    """The ``policy_rule`` plans: every verdict rule of every policy chain, in chain order."""
    plans: list[RecordPlan] = []
    make_plan = new_plan
    make_key = new_key
    for name in chains:
        direction = POLICY_CHAIN_PREFIXES.get(name[:8])
        if direction is None:
            continue
        comment = facts.chain_comment(name)
        tier = policy_tiers.get(name, "")
        for position, (rule, action) in enumerate(facts.verdicts_of(name) or ()):
            plans.append(
                make_plan(
                    (
                        make_key(
                            (Kind.POLICY_RULE, family, direction, "", name, tier, position, action.value)
                        ),
                        (rule.ordinal,),
                        (rule.rule_id,),
                        comment,
                        (),
                        rule.line,
                        source,
                    )
                )
            )
    return plans


def deny_inexact_reason(
    target: str,
    after: Rule | None,
    tier: str,
    tier_may_pass: bool,
    marks: MarkBits,
    has_pass: Callable[[str], bool | None],
) -> str:
    """Why entered - accepted - next would not be this endpoint's denied packets, or "".

    ``next`` counts only unmatched packets when it is pass-guarded; otherwise it also
    counts what any policy of the tier passed.
    """
    passes = has_pass(target)
    if passes is None:
        return f"{target} (or a member) is not in the dump, so its pass rules are unknown"
    if passes:
        return f"{target} has pass rules: entered - accepted - next mixes denied and passed packets"
    if after is None or not tier_may_pass or pass_guarded(after, marks):
        return ""
    return f"tier {tier} has a policy that can pass and the rule after {target} also counts passed packets"


def _tier_of_each_rule(rules: Sequence[Rule]) -> list[str]:
    """The tier in effect at each rule of an endpoint chain (``default`` before tiers)."""
    tiers = []
    tier = UNTIERED
    for rule in rules:
        if rule.target == "MARK":
            body = rule.body
            if START_OF_TIER_MARKER in body:
                for comment in comments_of(body):
                    if comment.startswith(START_OF_TIER_MARKER):
                        tier = comment[len(START_OF_TIER_MARKER) :]
            elif START_OF_POLICIES_MARKER in body:
                tier = UNTIERED
        tiers.append(tier)
    return tiers


def evaluate_plan(
    plan: RecordPlan, packets: Sequence[int], octets: Sequence[int]
) -> CounterRecord | Diagnostic | None:
    """One plan's record from one read's counters (``-1`` marks an unreadable counter).

    None when the record would read an unreadable counter (the bad line already has its
    diagnostic); a ``deny_negative`` diagnostic when a deny comes out below zero (a
    counter reset between the reads of one table, or a hand-edited dump).
    """
    key, slots, rule_ids, chain_comment, group_members, line, source = plan
    if len(slots) == 1:
        slot = slots[0]
        value_packets = packets[slot]
        if value_packets < 0:
            return None
        return _new_record((key, value_packets, octets[slot], rule_ids, chain_comment, group_members))
    entered, accepted, after = slots
    after_packets = packets[after] if after >= 0 else 0
    after_octets = octets[after] if after >= 0 else 0
    if packets[entered] < 0 or packets[accepted] < 0 or after_packets < 0:
        return None
    value_packets = packets[entered] - packets[accepted] - after_packets
    value_octets = octets[entered] - octets[accepted] - after_octets
    if value_packets < 0 or value_octets < 0:
        return Diagnostic(
            "deny_negative",
            f"deny for {key.chain} on {key.interface} computes to {value_packets} packets: "
            "counters inconsistent, left out",
            line,
            source,
        )
    return _new_record((key, value_packets, value_octets, rule_ids, chain_comment, group_members))


def evaluate(
    plans: Sequence[RecordPlan],
    packets: Sequence[int],
    octets: Sequence[int],
) -> tuple[list[CounterRecord], list[Diagnostic]]:
    """Records from plans and one read's counters; see :func:`evaluate_plan`."""
    records: list[CounterRecord] = []
    diagnostics: list[Diagnostic] = []
    for plan in plans:
        outcome = evaluate_plan(plan, packets, octets)
        if isinstance(outcome, Diagnostic):
            diagnostics.append(outcome)
        elif outcome is not None:
            records.append(outcome)
    return records, diagnostics


class PlanColumns(NamedTuple):
    """Plans of one shape laid out column-wise: one list per field, the slots as one list
    per slot position (one for single-slot plans, three for denies)."""

    keys: list[CounterKey]
    slots: tuple[list[int], ...]
    rule_ids: list[tuple[str, ...]]
    comments: list[str]
    members: list[tuple[str, ...]]
    lines: list[int]
    sources: list[str]

    @classmethod
    def of(cls, plans: Sequence[RecordPlan], width: int) -> PlanColumns:
        return cls(
            [plan.key for plan in plans],
            tuple([plan.slots[position] for plan in plans] for position in range(width)),
            [plan.rule_ids for plan in plans],
            [plan.chain_comment for plan in plans],
            [plan.group_members for plan in plans],
            [plan.line for plan in plans],
            [plan.source for plan in plans],
        )

    def extend(self, other: PlanColumns) -> None:
        """Append another's plans (of the same width) in place."""
        self.keys.extend(other.keys)
        for column, more in zip(self.slots, other.slots, strict=True):
            column.extend(more)
        self.rule_ids.extend(other.rule_ids)
        self.comments.extend(other.comments)
        self.members.extend(other.members)
        self.lines.extend(other.lines)
        self.sources.extend(other.sources)

    def plans(self) -> list[RecordPlan]:
        keys, slots, rule_ids, comments, members, lines, sources = self
        return list(
            map(
                new_plan,
                zip(keys, zip(*slots, strict=True), rule_ids, comments, members, lines, sources, strict=True),
            )
        )


class CompiledPlans:
    """Plans laid out column-wise so a read is evaluated with C-level loops (``map``,
    ``zip``) instead of a Python loop per record: the agent's steady state.

    Records come out single-slot plans first, then denies, each group in plan order.
    """

    __slots__ = ("_deny_plans", "_readers", "_single_plans", "deny", "single")

    def __init__(self, plans: Sequence[RecordPlan]) -> None:
        self._setup(
            PlanColumns.of([plan for plan in plans if len(plan.slots) == 1], 1),
            PlanColumns.of([plan for plan in plans if len(plan.slots) == 3], 3),
        )

    @classmethod
    def from_columns(cls, single: PlanColumns, deny: PlanColumns) -> CompiledPlans:
        """From columns built directly (the columnar cold parse), without a RecordPlan per record."""
        compiled = cls.__new__(cls)
        compiled._setup(single, deny)
        return compiled

    def _setup(self, single: PlanColumns, deny: PlanColumns) -> None:
        # A deny's slot -1 ("no next rule") reads the zero the evaluation appends to the arrays.
        self.single = single
        self.deny = deny
        self._single_plans: list[RecordPlan] | None = None
        self._deny_plans: list[RecordPlan] | None = None
        self._readers: tuple[int, _ReaderIndex, _ReaderIndex] | None = None
        """(table size, which single-slot plans and which denies read each slot), built by
        the first :meth:`reevaluate`."""

    @property
    def single_plans(self) -> list[RecordPlan]:
        if self._single_plans is None:
            self._single_plans = self.single.plans()
        return self._single_plans

    @property
    def deny_plans(self) -> list[RecordPlan]:
        if self._deny_plans is None:
            self._deny_plans = self.deny.plans()
        return self._deny_plans

    def evaluate(self, packets: list[int], octets: list[int]) -> tuple[list[CounterRecord], list[Diagnostic]]:
        """Every record of one read; the same records as :func:`evaluate` on ``plans``."""
        split = self.evaluate_split(packets, octets)
        if split is not None:
            return split[0] + split[1], []
        if min(packets, default=0) < 0 or min(octets, default=0) < 0:
            records, diagnostics = evaluate(self.single_plans, packets, octets)
            more, more_diagnostics = evaluate(self.deny_plans, packets, octets)
            return records + more, diagnostics + more_diagnostics
        packets = [*packets, 0]
        octets = [*octets, 0]
        more, diagnostics = evaluate(self.deny_plans, packets, octets)
        return self._singles(packets, octets, None) + more, diagnostics

    def evaluate_split(
        self, packets: list[int], octets: list[int]
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """The single-slot and the deny records of one read, apart; None when a counter is
        unreadable (-1) or a deny comes out negative (then :meth:`evaluate` words why)."""
        if min(packets, default=0) < 0 or min(octets, default=0) < 0:
            return None
        packets = [*packets, 0]
        octets = [*octets, 0]
        deny = self._denies(packets, octets, None)
        if deny is None:
            return None
        return self._singles(packets, octets, None), deny

    def reevaluate(
        self,
        previous: tuple[list[CounterRecord], list[CounterRecord]],
        packets: list[int],
        octets: list[int],
        changed: Sequence[int],
        *,
        readable: bool = False,
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """:meth:`evaluate_split` of a read whose counters differ from those that gave
        ``previous`` only in the ``changed`` slots: only the records reading one are
        rebuilt (in steady state most counters stay put, most of them at zero).
        ``readable``: the caller knows no counter is -1 (unreadable)."""
        if not changed:
            return previous[0][:], previous[1][:]
        if not readable and (min(packets, default=0) < 0 or min(octets, default=0) < 0):
            return None
        size = len(packets)
        packets = [*packets, 0]
        octets = [*octets, 0]
        if self._readers is None or self._readers[0] != size:
            self._readers = (size, _ReaderIndex(self.single.slots, size), _ReaderIndex(self.deny.slots, size))
        _, single_readers, deny_readers = self._readers
        single_positions = single_readers.positions(changed)
        deny_positions = deny_readers.positions(changed)
        fresh_denies = self._denies(packets, octets, deny_positions)
        if fresh_denies is None:
            return None
        single = previous[0][:]
        for position, record in zip(
            single_positions, self._singles(packets, octets, single_positions), strict=True
        ):
            single[position] = record
        deny = previous[1][:]
        for position, record in zip(deny_positions, fresh_denies, strict=True):
            deny[position] = record
        return single, deny

    def _singles(
        self, packets: list[int], octets: list[int], positions: list[int] | None
    ) -> list[CounterRecord]:
        """Single-slot records (all, or those at ``positions``), from arrays ending in a 0."""
        keys, (slots,), rule_ids, comments, members, _, _ = _select(self.single, positions)
        return list(
            map(
                _new_record,
                zip(
                    keys,
                    map(packets.__getitem__, slots),
                    map(octets.__getitem__, slots),
                    rule_ids,
                    comments,
                    members,
                    strict=True,
                ),
            )
        )

    def _denies(
        self, packets: list[int], octets: list[int], positions: list[int] | None
    ) -> list[CounterRecord] | None:
        """Deny records (all, or those at ``positions``); None if one comes out negative."""
        keys, (entered, accepted, after), rule_ids, comments, members, _, _ = _select(self.deny, positions)
        get_packets = packets.__getitem__
        get_octets = octets.__getitem__
        deny_packets = list(
            map(
                _sub,
                map(_sub, map(get_packets, entered), map(get_packets, accepted)),
                map(get_packets, after),
            )
        )
        deny_octets = list(
            map(_sub, map(_sub, map(get_octets, entered), map(get_octets, accepted)), map(get_octets, after))
        )
        if min(deny_packets, default=0) < 0 or min(deny_octets, default=0) < 0:
            return None
        return list(
            map(_new_record, zip(keys, deny_packets, deny_octets, rule_ids, comments, members, strict=True))
        )


class _ReaderIndex:
    """Which plans of one column group read each counter slot, per slot position: a slot's
    first reader in a flat list (C-level lookups; in felix's tables a slot has one reader
    per slot position), any others in a dict."""

    __slots__ = ("columns",)

    def __init__(self, slot_columns: tuple[list[int], ...], size: int) -> None:
        self.columns: list[tuple[list[int], dict[int, list[int]]]] = []
        for column in slot_columns:
            # Index ``size`` is the zero appended for slot -1 ("no next rule"): never changed.
            first = [-1] * (size + 1)
            more: dict[int, list[int]] = {}
            for position, slot in enumerate(column):
                if first[slot] == -1:
                    first[slot] = position
                else:
                    more.setdefault(slot % (size + 1), []).append(position)
            self.columns.append((first, more))

    def positions(self, slots: Sequence[int]) -> list[int]:
        """The positions of the plans that read any of ``slots`` (in no particular order)."""
        found: set[int] = set()
        for first, more in self.columns:
            found.update(map(first.__getitem__, slots))
            if more:
                for slot in more.keys() & set(slots):
                    found.update(more[slot])
        found.discard(-1)
        return list(found)


def _select(columns: PlanColumns, positions: list[int] | None) -> PlanColumns:
    """The plans at ``positions`` (the evaluated columns only), or all of them."""
    if positions is None:
        return columns
    keys, slots, rule_ids, comments, members, _, _ = columns

    def pick(column: list[Any]) -> list[Any]:
        return list(map(column.__getitem__, positions))

    return PlanColumns(
        pick(keys), tuple(pick(slot) for slot in slots), pick(rule_ids), pick(comments), pick(members), [], []
    )


_sub = operator.sub
