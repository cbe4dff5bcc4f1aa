"""Top denies: the policies and rules that denied the most, cluster-wide, and the policies
that denied the most to or from the workloads of each namespace."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

from calico_accountant_cli.audit.model import DenyEntry, DenyScope, Observations, PolicyKey, RuleKey

__all__ = ["deny_report"]

K = TypeVar("K", PolicyKey, RuleKey)


def deny_report(observations: Observations, top: int) -> tuple[DenyEntry, ...]:
    """At most ``top`` policies and ``top`` rules cluster-wide, and ``top`` policies per
    namespace; only rows that denied something."""
    by_policy: Counter[PolicyKey] = Counter()
    for (policy, _, verdict), packets in observations.policy_totals.items():
        if verdict == "deny":
            by_policy[policy] += packets
    by_rule: Counter[RuleKey] = Counter()
    for (rule, action), packets in observations.rule_hits.items():
        if action == "deny":
            by_rule[rule] += packets
    by_namespace: dict[str, Counter[PolicyKey]] = {}
    for row in observations.traffic:
        if row.verdict == "deny":
            by_namespace.setdefault(row.namespace, Counter())[row.policy] += row.packets
    entries = [DenyEntry(DenyScope.CLUSTER, policy, packets) for policy, packets in _top(by_policy, top)]
    entries += [
        DenyEntry(DenyScope.CLUSTER, rule.policy, packets, rule=rule.rule, direction=rule.direction)
        for rule, packets in _top(by_rule, top)
    ]
    for namespace in sorted(by_namespace):
        entries += [
            DenyEntry(DenyScope.NAMESPACE, policy, packets, namespace=namespace)
            for policy, packets in _top(by_namespace[namespace], top)
        ]
    return tuple(entries)


def _top(counts: Counter[K], top: int) -> list[tuple[K, int]]:
    rows = [(key, n) for key, n in counts.items() if n > 0]
    rows.sort(key=lambda item: (-item[1], item[0]))
    return rows[:top]
