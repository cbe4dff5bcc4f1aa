"""A filter table to record plans, from the rules' shapes only, plus structural diagnostics.

Which counters make each record, and when a deny is exact enough to publish
(:func:`deny_inexact_reason`); the rules are in the package docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from calico_accountant.felix.chains import (
    ADMIN_DOWN_MARKER,
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
)
from calico_accountant.felix.endpoints import endpoint_chain
from calico_accountant.records import CounterKey, Diagnostic, EndpointKind, Kind
from node_agent.attribution.chains import DROP_TARGETS, ChainFacts, pass_guarded
from node_agent.attribution.marks import MarkBits, learn_marks
from node_agent.attribution.plans import RecordPlan, new_key, new_plan
from node_agent.iptables_save import FilterTable, Rule, comments_of

_JUMP_PREFIX_SET = frozenset(POLICY_JUMP_PREFIXES)
_POLICY_CHAIN_PREFIXES_TUPLE = tuple(POLICY_CHAIN_PREFIXES)


def plan_table(table: FilterTable) -> tuple[list[RecordPlan], list[Diagnostic]]:
    """Every record of one filter table, as plans over rule slots, plus structural diagnostics."""
    marks = learn_marks(table)
    chains = table.chains
    # A chain with no rules (an empty policy) appears only in its declaration.
    present = chains.keys() | table.declared
    family = table.family
    source = table.source
    interfaces = table.interfaces
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
        endpoint_of = endpoint_chain(name)
        if endpoint_of is None:  # not an endpoint chain (or a bare prefix: a damaged dump)
            continue
        direction, endpoint, interface = endpoint_of
        interface = interfaces.get(name) or interface
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
            if target in DROP_TARGETS:
                if ADMIN_DOWN_MARKER in body and ADMIN_DOWN_MARKER in comments_of(body):
                    key = CounterKey(
                        Kind.ENDPOINT_ADMIN_DROP, family, direction, interface, endpoint=endpoint
                    )
                    plans.append(
                        RecordPlan(key, (rule.ordinal,), (rule.rule_id,), line=rule.line, source=source)
                    )
                    continue
                if " if no " not in body:
                    continue
                for comment in comments_of(body):
                    match = NO_POLICY_MARKER.match(comment)
                    if match:
                        key = CounterKey(
                            Kind.NO_POLICY_DROP,
                            family,
                            direction,
                            interface,
                            "",
                            match["tier"] or tier,
                            endpoint=endpoint,
                        )
                    elif NO_PROFILE_MARKER.match(comment):
                        key = CounterKey(
                            Kind.NO_PROFILE_DROP, family, direction, interface, endpoint=endpoint
                        )
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
                            CounterKey(
                                Kind.PROFILE_ACCEPT, family, direction, interface, target, endpoint=endpoint
                            ),
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
                        new_key(
                            (Kind.POLICY_ACCEPT, family, direction, interface, target, tier, -1, "", endpoint)
                        ),
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
                        new_key(
                            (Kind.POLICY_DENY, family, direction, interface, target, tier, -1, "", endpoint)
                        ),
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
                            (
                                Kind.POLICY_RULE,
                                family,
                                direction,
                                "",
                                name,
                                tier,
                                position,
                                action.value,
                                EndpointKind.WORKLOAD,
                            )
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
