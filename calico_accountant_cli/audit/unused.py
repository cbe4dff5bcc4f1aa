"""Unused policies and rules: what matched nothing in the window, and why.

Two different findings that look alike in a dashboard (both are zero):

* ``not_rendered``: no node reported any counter of the policy (or of that rule of it) at
  any time in the window.  Felix renders a policy's chain only on nodes with a workload its
  selector matches, and leaves out a rule that cannot apply to an IP family; so the policy
  (rule) cannot match anything as the cluster stands.  Needs the datastore's view
  (``calico_accountant_policy_info`` / ``_policy_rule_info``) to be seen at all.
* ``no_traffic``: its counters existed on at least one node during the window and did not move.
* ``no_rules`` (policies only): the datastore has it without rules; it matches nothing
  itself, it only makes its tier apply to the workloads it selects.
"""

from __future__ import annotations

from collections import Counter

from calico_accountant_cli.audit.model import (
    Observations,
    PolicyKey,
    RuleKey,
    UnusedPolicy,
    UnusedReason,
    UnusedRule,
)

__all__ = ["unused_policies", "unused_rules"]


def unused_policies(observations: Observations) -> tuple[UnusedPolicy, ...]:
    moved: Counter[PolicyKey] = Counter()
    for row in observations.traffic:
        moved[row.policy] += row.packets
    for (policy, _, _), packets in observations.policy_totals.items():
        moved[policy] += packets
    for (rule, _), packets in observations.rule_hits.items():
        moved[rule.policy] += packets
    with_rules = {rule.policy for rule in observations.rules}
    candidates = {p for p in set(observations.policies) | set(moved) if p.audited}
    found = []
    for policy in sorted(candidates):
        if moved[policy] > 0:
            continue
        if policy not in moved:
            reason = UnusedReason.NOT_RENDERED
        elif observations.rules and policy in observations.policies and policy not in with_rules:
            reason = UnusedReason.NO_RULES
        else:
            reason = UnusedReason.NO_TRAFFIC
        found.append(UnusedPolicy(policy, reason))
    return tuple(found)


def unused_rules(observations: Observations) -> tuple[UnusedRule, ...]:
    moved: Counter[RuleKey] = Counter()
    for (rule, _), packets in observations.rule_hits.items():
        moved[rule] += packets
    candidates = {r for r in set(observations.rules) | set(moved) if r.policy.audited}
    return tuple(
        UnusedRule(
            rule,
            UnusedReason.NOT_RENDERED if rule not in moved else UnusedReason.NO_TRAFFIC,
            observations.rules.get(rule),
        )
        for rule in sorted(candidates)
        if moved[rule] == 0
    )
