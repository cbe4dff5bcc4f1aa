"""Per-node families: a node's workloads summed, and the exact per-rule counters.

Per-rule counters are read inside the shared policy chains, so they are exact per node
(and per real policy, also for policies that sit in a group) but never per workload.
"""

from __future__ import annotations

from aggregator.metrics.family import POLICY_LABELS, Level, Series, SeriesFamily, policy_label_values
from aggregator.model import CounterNames
from calico_accountant.records import CounterKey, Kind, verdict_of

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


def series(names: CounterNames, key: CounterKey) -> Series | None:
    """Workload counters and per-rule counters; host endpoints have their own families
    (:mod:`aggregator.metrics.host_endpoint`), so these stay the sums of the workload ones."""
    if names.host_endpoint is not None:
        return None
    kind = key.kind
    policy = names.policy
    if (kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY) and policy is not None:
        return (POLICY, (names.node, key.direction, verdict_of(key), *policy_label_values(key, policy)))
    if kind is Kind.NO_POLICY_DROP:
        return (NO_POLICY_DROP, (names.node, key.direction))
    if kind is Kind.POLICY_RULE and policy is not None:
        labels = (*policy_label_values(key, policy), str(key.rule_index), key.action)
        return (POLICY_RULE, (names.node, key.direction, *labels))
    return None
