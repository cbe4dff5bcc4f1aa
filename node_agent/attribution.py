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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic, Direction, Kind, RuleAction
from node_agent.iptables_save import (
    FilterTable,
    Rule,
    comments_of,
    has_extra_match,
    mark_guards_of,
    set_xmark_of,
)

ENDPOINT_PREFIXES = {"cali-tw-": Direction.INGRESS, "cali-fw-": Direction.EGRESS}
POLICY_PREFIXES = {"cali-pi-": Direction.INGRESS, "cali-po-": Direction.EGRESS}
GROUP_PREFIXES = ("cali-gi-", "cali-go-")
PROFILE_PREFIXES = ("cali-pri-", "cali-pro-")
UNTIERED = "default"
"""The tier reported for layouts before tiers (Calico <= v3.28): OSS policy was all in
the implicit ``default`` tier."""

_JUMP_PREFIXES = ("cali-pi-", "cali-po-", "cali-gi-", "cali-go-")
_JUMP_PREFIX_SET = frozenset(_JUMP_PREFIXES)
_POLICY_JUMP_PREFIXES = ("cali-pi-", "cali-po-")
_DROP_TARGETS = frozenset({"DROP", "REJECT"})
_START_OF_TIER = "Start of tier "
_START_OF_POLICIES = "Start of policies"
_POLICY_ACCEPTED = "Return if policy accepted"
_PROFILE_ACCEPTED = "Return if profile accepted"
_NO_POLICY = re.compile(r"^(?:End of tier (?P<tier>.+)\. )?(?:Drop|Reject) if no policies passed packet$")
_NO_PROFILE = re.compile(r"^(?:Drop|Reject) if no profiles matched$")
_IDENTITY = re.compile(
    r"^(?:Policy|Profile|NetworkPolicy|GlobalNetworkPolicy|KubernetesNetworkPolicy|"
    r"KubernetesClusterNetworkPolicy|ClusterNetworkPolicy|AdminNetworkPolicy|"
    r"BaselineAdminNetworkPolicy|StagedNetworkPolicy|StagedGlobalNetworkPolicy|"
    r"StagedKubernetesNetworkPolicy) \S+ (?:ingress|egress)$"
)


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


_new_key = functools.partial(tuple.__new__, CounterKey)
"""Builds a CounterKey from a full tuple of its fields, without the Python-level __new__."""
_new_plan = functools.partial(tuple.__new__, RecordPlan)


def learn_marks(table: FilterTable) -> MarkBits:
    """The accept and pass bits, from the markers felix writes; never hard-coded.

    ``Return if policy/profile accepted`` guards on ``accept/accept``; ``Start of ...``
    clears the pass bit (before v3.28); every policy jump is guarded by ``0x0/pass``
    (``0x0/accept|pass`` inside groups and in v3.28's combined clear).
    """
    accept = 0
    pass_ = 0
    for name, rules in table.chains.items():
        if not name.startswith(("cali-tw-", "cali-fw-")):
            continue
        for rule in rules:
            body = rule.body
            if (
                not accept
                and rule.target == "RETURN"
                and (_POLICY_ACCEPTED in body or _PROFILE_ACCEPTED in body)
            ):
                for value, mask, negated in mark_guards_of(body):
                    if value == mask and not negated:
                        accept = mask
            if not pass_ and rule.target.startswith(_JUMP_PREFIXES):
                for value, mask, negated in mark_guards_of(body):
                    if value == 0 and not negated:
                        pass_ = mask
            if not pass_ and rule.target == "MARK" and (_START_OF_POLICIES in body or _START_OF_TIER in body):
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
                if _IDENTITY.match(comment):
                    return comment
    return ""


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
    verdicts: dict[str, list[tuple[Rule, RuleAction]]] = {}
    comments: dict[str, str] = {}
    members_cache: dict[str, tuple[str, ...]] = {}
    pass_cache: dict[str, bool | None] = {}

    def verdicts_of(name: str) -> list[tuple[Rule, RuleAction]] | None:
        if name not in present:
            return None
        found = verdicts.get(name)
        if found is None:
            found = verdicts[name] = chain_verdicts(chains.get(name, ()), marks)
        return found

    def chain_comment(name: str) -> str:
        comment = comments.get(name)
        if comment is None:
            comment = comments[name] = identity_comment(chains.get(name, ()))
        return comment

    def group_members(name: str) -> tuple[str, ...]:
        members = members_cache.get(name)
        if members is None:
            members = members_cache[name] = tuple(
                rule.target for rule in chains.get(name, ()) if rule.target.startswith(_POLICY_JUMP_PREFIXES)
            )
        return members

    def has_pass(name: str) -> bool | None:
        """Whether a policy or group can pass packets; None when that is unknown (chain not in the dump)."""
        if name in pass_cache:
            return pass_cache[name]
        answer: bool | None = False
        if name not in present:
            answer = None
        else:
            for target in group_members(name) if name.startswith(GROUP_PREFIXES) else (name,):
                rules = verdicts_of(target)
                if rules is None:
                    answer = None
                    break
                if any(action is RuleAction.PASS for _, action in rules):
                    answer = True
                    break
        pass_cache[name] = answer
        return answer

    def note_missing(name: str, line: int) -> None:
        if name not in missing:
            missing.add(name)
            diagnostics.append(
                Diagnostic("missing_chain", f"chain {name} is jumped to but not in the dump", line, source)
            )

    for name, rules in chains.items():
        direction = ENDPOINT_PREFIXES.get(name[:8])
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
                    match = _NO_POLICY.match(comment)
                    if match:
                        key = CounterKey(
                            Kind.NO_POLICY_DROP, family, direction, interface, "", match["tier"] or tier
                        )
                    elif _NO_PROFILE.match(comment):
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
            if target.startswith(PROFILE_PREFIXES):
                if target not in present:
                    note_missing(target, rule.line)
                if following is not None and _PROFILE_ACCEPTED in following.body:
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
            is_group = target.startswith(GROUP_PREFIXES)
            if not is_group and not target.startswith(_POLICY_JUMP_PREFIXES):
                continue
            if target not in present:
                note_missing(target, rule.line)
            members = group_members(target) if is_group else ()
            for member in members:
                policy_tiers.setdefault(member, tier)
                if member not in present:
                    note_missing(member, rule.line)
            policy_tiers.setdefault(target, tier)
            if following is None or _POLICY_ACCEPTED not in following.body:
                # Only staged-only groups lack the RETURN, and they have no chains since v3.30.
                continue
            comment = chain_comment(target)
            accept_id = following.rule_id
            plans.append(
                _new_plan(
                    (
                        _new_key((Kind.POLICY_ACCEPT, family, direction, interface, target, tier, -1, "")),
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
                reason = _deny_inexact_reason(target, after, tier, tier in tier_may_pass, marks, has_pass)
                if reason:
                    diagnostics.append(
                        Diagnostic(
                            "deny_not_exact", f"{name}: deny for {reason}; left out", rule.line, source
                        )
                    )
                    continue
            plans.append(
                _new_plan(
                    (
                        _new_key((Kind.POLICY_DENY, family, direction, interface, target, tier, -1, "")),
                        (rule.ordinal, following.ordinal, after.ordinal if after is not None else -1),
                        (rule.rule_id, accept_id, after.rule_id if after is not None else ""),
                        comment,
                        members,
                        rule.line,
                        source,
                    )
                )
            )

    make_plan = _new_plan
    make_key = _new_key
    for name in chains:
        direction = POLICY_PREFIXES.get(name[:8])
        if direction is None:
            continue
        comment = chain_comment(name)
        tier = policy_tiers.get(name, "")
        for position, (rule, action) in enumerate(verdicts_of(name) or ()):
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
    return plans, diagnostics


def _deny_inexact_reason(
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
            if _START_OF_TIER in body:
                for comment in comments_of(body):
                    if comment.startswith(_START_OF_TIER):
                        tier = comment[len(_START_OF_TIER) :]
            elif _START_OF_POLICIES in body:
                tier = UNTIERED
        tiers.append(tier)
    return tiers


def evaluate_plan(
    plan: RecordPlan, packets: Sequence[int], bytes_: Sequence[int]
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
        return _make_record((key, value_packets, bytes_[slot], rule_ids, chain_comment, group_members))
    entered, accepted, after = slots
    after_packets = packets[after] if after >= 0 else 0
    after_bytes = bytes_[after] if after >= 0 else 0
    if packets[entered] < 0 or packets[accepted] < 0 or after_packets < 0:
        return None
    value_packets = packets[entered] - packets[accepted] - after_packets
    value_bytes = bytes_[entered] - bytes_[accepted] - after_bytes
    if value_packets < 0 or value_bytes < 0:
        return Diagnostic(
            "deny_negative",
            f"deny for {key.chain} on {key.interface} computes to {value_packets} packets: "
            "counters inconsistent, left out",
            line,
            source,
        )
    return _make_record((key, value_packets, value_bytes, rule_ids, chain_comment, group_members))


_make_record = functools.partial(tuple.__new__, CounterRecord)


def evaluate(
    plans: Sequence[RecordPlan],
    packets: Sequence[int],
    bytes_: Sequence[int],
) -> tuple[list[CounterRecord], list[Diagnostic]]:
    """Records from plans and one read's counters; see :func:`evaluate_plan`."""
    records: list[CounterRecord] = []
    diagnostics: list[Diagnostic] = []
    for plan in plans:
        outcome = evaluate_plan(plan, packets, bytes_)
        if isinstance(outcome, Diagnostic):
            diagnostics.append(outcome)
        elif outcome is not None:
            records.append(outcome)
    return records, diagnostics


class CompiledPlans:
    """Plans laid out column-wise so a read is evaluated with C-level loops (``map``,
    ``zip``) instead of a Python loop per record: the agent's steady state.

    Records come out single-slot plans first, then denies, each group in plan order.
    """

    __slots__ = (
        "deny_accepted",
        "deny_entered",
        "deny_next",
        "deny_plans",
        "deny_static",
        "plans",
        "single_plans",
        "single_slots",
        "single_static",
    )

    def __init__(self, plans: Sequence[RecordPlan]) -> None:
        self.plans = list(plans)
        self.single_plans = [plan for plan in self.plans if len(plan.slots) == 1]
        self.deny_plans = [plan for plan in self.plans if len(plan.slots) == 3]
        self.single_slots = [plan.slots[0] for plan in self.single_plans]
        # Slot -1 ("no next rule") reads the zero the evaluation appends to the arrays.
        self.deny_entered = [plan.slots[0] for plan in self.deny_plans]
        self.deny_accepted = [plan.slots[1] for plan in self.deny_plans]
        self.deny_next = [plan.slots[2] for plan in self.deny_plans]
        self.single_static = _static_columns(self.single_plans)
        self.deny_static = _static_columns(self.deny_plans)

    def evaluate(self, packets: list[int], bytes_: list[int]) -> tuple[list[CounterRecord], list[Diagnostic]]:
        """Every record of one read; the same records as :func:`evaluate` on ``plans``."""
        if min(packets, default=0) < 0 or min(bytes_, default=0) < 0:
            records, diagnostics = evaluate(self.single_plans, packets, bytes_)
            more, more_diagnostics = evaluate(self.deny_plans, packets, bytes_)
            return records + more, diagnostics + more_diagnostics
        packets = [*packets, 0]
        bytes_ = [*bytes_, 0]
        get_packets = packets.__getitem__
        get_bytes = bytes_.__getitem__
        keys, rule_ids, comments, members = self.single_static
        records = list(
            map(
                _new_record,
                zip(
                    keys,
                    map(get_packets, self.single_slots),
                    map(get_bytes, self.single_slots),
                    rule_ids,
                    comments,
                    members,
                    strict=True,
                ),
            )
        )
        deny_packets = list(
            map(
                _sub,
                map(_sub, map(get_packets, self.deny_entered), map(get_packets, self.deny_accepted)),
                map(get_packets, self.deny_next),
            )
        )
        deny_bytes = list(
            map(
                _sub,
                map(_sub, map(get_bytes, self.deny_entered), map(get_bytes, self.deny_accepted)),
                map(get_bytes, self.deny_next),
            )
        )
        if min(deny_packets, default=0) < 0 or min(deny_bytes, default=0) < 0:
            more, diagnostics = evaluate(self.deny_plans, packets, bytes_)
            return records + more, diagnostics
        keys, rule_ids, comments, members = self.deny_static
        records.extend(
            map(_new_record, zip(keys, deny_packets, deny_bytes, rule_ids, comments, members, strict=True))
        )
        return records, []


def _static_columns(
    plans: Sequence[RecordPlan],
) -> tuple[list[CounterKey], list[tuple[str, ...]], list[str], list[tuple[str, ...]]]:
    return (
        [plan.key for plan in plans],
        [plan.rule_ids for plan in plans],
        [plan.chain_comment for plan in plans],
        [plan.group_members for plan in plans],
    )


_new_record = functools.partial(tuple.__new__, CounterRecord)
_sub = operator.sub
