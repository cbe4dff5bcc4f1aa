"""Per-node families: a node's workloads summed, and the exact per-rule counters.

Per-rule counters are read inside the shared policy chains, so they are exact per node
(and per real policy, also for policies that sit in a group) but never per workload.
"""

from __future__ import annotations

from aggregator.metrics.family import POLICY_LABELS, Level, SeriesFamily, policy_label_values
from aggregator.model import ResolvedCounter
from calico_accountant.records import Kind

__all__ = ["FAMILIES", "NO_POLICY_DROP", "POLICY", "POLICY_RULE", "series"]


POLICY = SeriesFamily(
    packets_name="calico_accountant_node_policy_packets_total",
    bytes_name="calico_accountant_node_policy_bytes_total",
    level=Level.NODE,
    labels=("node", "direction", "verdict", *POLICY_LABELS),
    packets_help="Packets a policy accepted (verdict=accept) or explicitly denied (verdict=deny) on one "
    "node, summed over the node's workloads; the sum of calico_accountant_workload_policy_packets_total.",
    bytes_help="Bytes of the packets counted by calico_accountant_node_policy_packets_total.",
    per_workload=False,
)
NO_POLICY_DROP = SeriesFamily(
    packets_name="calico_accountant_node_no_policy_drop_packets_total",
    bytes_name="calico_accountant_node_no_policy_drop_bytes_total",
    level=Level.NODE,
    labels=("node", "direction"),
    packets_help="Packets dropped on one node because no policy accepted or passed them, summed over "
    "the node's workloads and tiers.",
    bytes_help="Bytes of the packets counted by calico_accountant_node_no_policy_drop_packets_total.",
    per_workload=False,
)
POLICY_RULE = SeriesFamily(
    packets_name="calico_accountant_node_policy_rule_packets_total",
    bytes_name="calico_accountant_node_policy_rule_bytes_total",
    level=Level.NODE,
    labels=("node", "direction", *POLICY_LABELS, "rule", "action"),
    packets_help="Packets that matched one verdict rule of a policy on one node (all workloads using "
    "the policy together); rule is the 0-based index among the policy's allow/deny/pass/log rules in "
    "that direction, action what the rule does.",
    bytes_help="Bytes of the packets counted by calico_accountant_node_policy_rule_packets_total.",
    per_workload=False,
)

FAMILIES: tuple[SeriesFamily, ...] = (POLICY, NO_POLICY_DROP, POLICY_RULE)


def series(counter: ResolvedCounter) -> list[tuple[SeriesFamily, tuple[str, ...]]]:
    """Workload counters and per-rule counters; host endpoints have their own families
    (:mod:`aggregator.metrics.host_endpoint`), so these stay the sums of the workload ones."""
    if counter.host_endpoint is not None:
        return []
    kind = counter.key.kind
    policy = counter.policy
    if kind in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY) and policy is not None:
        return [
            (
                POLICY,
                (
                    counter.node,
                    counter.direction,
                    counter.verdict,
                    *policy_label_values(counter, policy),
                ),
            )
        ]
    if kind is Kind.NO_POLICY_DROP:
        return [(NO_POLICY_DROP, (counter.node, counter.direction))]
    if kind is Kind.POLICY_RULE and policy is not None:
        return [
            (
                POLICY_RULE,
                (
                    counter.node,
                    counter.direction,
                    *policy_label_values(counter, policy),
                    str(counter.key.rule_index),
                    counter.key.action,
                ),
            )
        ]
    return []
