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

import re
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic, Direction, Kind, RuleAction
from node_agent.iptables_save import FilterTable, Rule, RuleShape

ENDPOINT_PREFIXES = {"cali-tw-": Direction.INGRESS, "cali-fw-": Direction.EGRESS}
POLICY_PREFIXES = {"cali-pi-": Direction.INGRESS, "cali-po-": Direction.EGRESS}
GROUP_PREFIXES = ("cali-gi-", "cali-go-")
PROFILE_PREFIXES = ("cali-pri-", "cali-pro-")
UNTIERED = "default"
"""The tier reported for layouts before tiers (Calico <= v3.28): OSS policy was all in
the implicit ``default`` tier."""

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


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """Which rule counters make up one record.  One slot: that rule's value; three slots
    (a deny): ``a - b - c``, slot ``-1`` standing for zero."""

    key: CounterKey
    slots: tuple[int, ...]
    rule_ids: tuple[str, ...]
    chain_comment: str = ""
    group_members: tuple[str, ...] = ()
    line: int = 0
    source: str = ""


def learn_marks(table: FilterTable) -> MarkBits:
    """The accept and pass bits, from the markers felix writes; never hard-coded.

    ``Return if policy/profile accepted`` guards on ``accept/accept``; ``Start of ...``
    clears the pass bit; before v3.28's combined clear, and in every layout, a policy
    jump is guarded by ``0x0/pass`` (``0x0/accept|pass`` inside groups).
    """
    accept = 0
    pass_ = 0
    for name, rules in table.chains.items():
        if not name.startswith(("cali-tw-", "cali-fw-")):
            continue
        for rule in rules:
            shape = rule.shape
            if not accept and (_POLICY_ACCEPTED in shape.comments or _PROFILE_ACCEPTED in shape.comments):
                for value, mask, negated in shape.mark_guards:
                    if value == mask and not negated:
                        accept = mask
            starts_section = any(
                c == _START_OF_POLICIES or c.startswith(_START_OF_TIER) for c in shape.comments
            )
            if not pass_ and starts_section and shape.set_xmark is not None and shape.set_xmark[0] == 0:
                pass_ = shape.set_xmark[1]
            if not pass_ and shape.target.startswith(("cali-pi-", "cali-po-", "cali-gi-", "cali-go-")):
                for value, mask, negated in shape.mark_guards:
                    if value == 0 and not negated:
                        pass_ = mask
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


def _verdict(shape: RuleShape, marks: MarkBits) -> RuleAction | None:
    """The verdict a rule inside a policy chain gives, or None for plumbing (RETURN, NFLOG,
    scratch marks, the comment-only identity rule)."""
    target = shape.target
    if target in ("DROP", "REJECT"):
        return RuleAction.DENY
    if target == "MARK" and shape.set_xmark is not None:
        value, mask = shape.set_xmark
        if value and value & mask == value:
            if value == marks.accept:
                return RuleAction.ALLOW
            if value == marks.pass_:
                return RuleAction.PASS
        return None
    if target == "LOG":
        return RuleAction.LOG
    return None


def _pass_guarded(shape: RuleShape, marks: MarkBits) -> bool:
    """True for a rule only packets with the pass bit clear reach (the next policy jump,
    an NFLOG or the tier's drop): its counter excludes passed packets."""
    return any(
        value == 0 and mask & marks.pass_ and not negated for value, mask, negated in shape.mark_guards
    )


def identity_comment(rules: Sequence[Rule]) -> str:
    """Felix's ``Policy ns/name ingress`` / ``<Kind> ...`` / ``Profile ...`` comment of a chain."""
    for rule in rules[:2]:
        for comment in rule.shape.comments:
            if _IDENTITY.match(comment):
                return comment
    return ""


def plan_table(table: FilterTable) -> tuple[list[RecordPlan], list[Diagnostic]]:
    """Every record of one filter table, as plans over rule slots, plus structural diagnostics."""
    marks = learn_marks(table)
    chains = table.chains
    family = table.family
    source = table.source
    plans: list[RecordPlan] = []
    diagnostics: list[Diagnostic] = []
    missing: set[str] = set()
    policy_tiers: dict[str, str] = {}
    verdicts: dict[str, list[tuple[Rule, RuleAction]]] = {}
    comments: dict[str, str] = {}

    def chain_verdicts(name: str) -> list[tuple[Rule, RuleAction]] | None:
        if name not in chains:
            return None
        cached = verdicts.get(name)
        if cached is None:
            cached = verdicts[name] = [
                (rule, action) for rule in chains[name] if (action := _verdict(rule.shape, marks)) is not None
            ]
        return cached

    def chain_comment(name: str) -> str:
        comment = comments.get(name)
        if comment is None:
            comment = comments[name] = identity_comment(chains.get(name, ()))
        return comment

    def group_members(name: str) -> tuple[str, ...]:
        return tuple(
            rule.shape.target
            for rule in chains.get(name, ())
            if rule.shape.target.startswith(tuple(POLICY_PREFIXES))
        )

    def has_pass(name: str) -> bool | None:
        """Whether a policy or group can pass packets; None when the chain is not in the dump."""
        targets = group_members(name) if name.startswith(GROUP_PREFIXES) else (name,)
        if name.startswith(GROUP_PREFIXES) and name not in chains:
            return None
        for target in targets:
            rules = chain_verdicts(target)
            if rules is None:
                return None
            if any(action is RuleAction.PASS for _, action in rules):
                return True
        return False

    def note_missing(name: str, line: int) -> None:
        if name not in missing:
            missing.add(name)
            diagnostics.append(
                Diagnostic("missing_chain", f"chain {name} is jumped to but not in the dump", line, source)
            )

    for name, rules in chains.items():
        prefix = name[:8]
        direction = ENDPOINT_PREFIXES.get(prefix)
        if direction is None:
            continue
        interface = name[8:]
        tier = UNTIERED
        # The policy jumps of each tier, to decide exactness of an unguarded "next".
        tier_targets: dict[str, list[str]] = {}
        walk_tier = UNTIERED
        for rule in rules:
            shape = rule.shape
            for comment in shape.comments:
                if comment.startswith(_START_OF_TIER):
                    walk_tier = comment[len(_START_OF_TIER) :]
            if shape.target.startswith(("cali-pi-", "cali-po-", "cali-gi-", "cali-go-")):
                tier_targets.setdefault(walk_tier, []).append(shape.target)

        count = len(rules)
        for index, rule in enumerate(rules):
            shape = rule.shape
            target = shape.target
            for comment in shape.comments:
                if comment.startswith(_START_OF_TIER):
                    tier = comment[len(_START_OF_TIER) :]
                elif comment == _START_OF_POLICIES:
                    tier = UNTIERED
                else:
                    match = _NO_POLICY.match(comment)
                    if match:
                        plans.append(
                            RecordPlan(
                                CounterKey(
                                    Kind.NO_POLICY_DROP,
                                    family,
                                    direction,
                                    interface,
                                    "",
                                    match["tier"] or tier,
                                ),
                                (rule.ordinal,),
                                (shape.rule_id,),
                                line=rule.line,
                                source=source,
                            )
                        )
                    elif _NO_PROFILE.match(comment):
                        plans.append(
                            RecordPlan(
                                CounterKey(Kind.NO_PROFILE_DROP, family, direction, interface),
                                (rule.ordinal,),
                                (shape.rule_id,),
                                line=rule.line,
                                source=source,
                            )
                        )
            if not target.startswith("cali-"):
                continue
            following = rules[index + 1] if index + 1 < count else None
            if target.startswith(PROFILE_PREFIXES):
                if target not in chains:
                    note_missing(target, rule.line)
                if following is not None and _PROFILE_ACCEPTED in following.shape.comments:
                    plans.append(
                        RecordPlan(
                            CounterKey(Kind.PROFILE_ACCEPT, family, direction, interface, target),
                            (following.ordinal,),
                            (following.shape.rule_id,),
                            chain_comment(target),
                            line=following.line,
                            source=source,
                        )
                    )
                continue
            is_group = target.startswith(GROUP_PREFIXES)
            if not (is_group or target[:8] in POLICY_PREFIXES):
                continue
            if target not in chains:
                note_missing(target, rule.line)
            members = group_members(target) if is_group else ()
            for member in members:
                policy_tiers.setdefault(member, tier)
                if member not in chains:
                    note_missing(member, rule.line)
            policy_tiers.setdefault(target, tier)
            if following is None or _POLICY_ACCEPTED not in following.shape.comments:
                # Only staged-only groups lack the RETURN, and they have no chains since v3.30.
                continue
            key = CounterKey(Kind.POLICY_ACCEPT, family, direction, interface, target, tier)
            comment = chain_comment(target)
            plans.append(
                RecordPlan(
                    key,
                    (following.ordinal,),
                    (following.shape.rule_id,),
                    comment,
                    members,
                    following.line,
                    source,
                )
            )
            after = rules[index + 2] if index + 2 < count else None
            deny_key = CounterKey(Kind.POLICY_DENY, family, direction, interface, target, tier)
            passes = has_pass(target)
            reason = ""
            if passes is None:
                reason = f"{target} (or a member) is not in the dump, so its pass rules are unknown"
            elif passes:
                reason = f"{target} has pass rules: entered - accepted - next mixes denied and passed packets"
            elif after is not None and not _pass_guarded(after.shape, marks):
                for other in tier_targets.get(tier, ()):
                    if other != target and has_pass(other) is not False:
                        reason = (
                            f"tier {tier} has a policy that can pass ({other}) and the rule after "
                            f"{target} also counts passed packets"
                        )
                        break
            if reason:
                diagnostics.append(
                    Diagnostic("deny_not_exact", f"{name}: deny for {reason}; left out", rule.line, source)
                )
                continue
            plans.append(
                RecordPlan(
                    deny_key,
                    (rule.ordinal, following.ordinal, after.ordinal if after is not None else -1),
                    (
                        shape.rule_id,
                        following.shape.rule_id,
                        after.shape.rule_id if after is not None else "",
                    ),
                    comment,
                    members,
                    rule.line,
                    source,
                )
            )

    for name in chains:
        direction = POLICY_PREFIXES.get(name[:8])
        if direction is None:
            continue
        comment = chain_comment(name)
        tier = policy_tiers.get(name, "")
        for position, (rule, action) in enumerate(chain_verdicts(name) or ()):
            plans.append(
                RecordPlan(
                    CounterKey(Kind.POLICY_RULE, family, direction, "", name, tier, position, action.value),
                    (rule.ordinal,),
                    (rule.shape.rule_id,),
                    comment,
                    line=rule.line,
                    source=source,
                )
            )
    return plans, diagnostics


def evaluate(
    plans: Sequence[RecordPlan],
    packets: Sequence[int],
    bytes_: Sequence[int],
) -> tuple[list[CounterRecord], list[Diagnostic]]:
    """Records from plans and one read's counters (``-1`` marks an unreadable counter).

    A record that would read an unreadable counter is left out (the bad line already has
    its diagnostic); a deny that comes out negative (a counter reset between the reads
    of one table, or a hand-edited dump) is left out with ``deny_negative``.
    """
    records: list[CounterRecord] = []
    diagnostics: list[Diagnostic] = []
    append = records.append
    for plan in plans:
        slots = plan.slots
        if len(slots) == 1:
            slot = slots[0]
            value_packets = packets[slot]
            value_bytes = bytes_[slot]
            if value_packets < 0:
                continue
        else:
            entered, accepted, after = slots
            after_packets = packets[after] if after >= 0 else 0
            after_bytes = bytes_[after] if after >= 0 else 0
            if packets[entered] < 0 or packets[accepted] < 0 or after_packets < 0:
                continue
            value_packets = packets[entered] - packets[accepted] - after_packets
            value_bytes = bytes_[entered] - bytes_[accepted] - after_bytes
            if value_packets < 0 or value_bytes < 0:
                diagnostics.append(
                    Diagnostic(
                        "deny_negative",
                        f"deny for {plan.key.chain} on {plan.key.interface} computes to "
                        f"{value_packets} packets: counters inconsistent, left out",
                        plan.line,
                        plan.source,
                    )
                )
                continue
        append(
            CounterRecord(
                plan.key, value_packets, value_bytes, plan.rule_ids, plan.chain_comment, plan.group_members
            )
        )
    return records, diagnostics
