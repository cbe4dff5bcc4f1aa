"""Cluster-wide families: every node summed."""

from __future__ import annotations

from aggregator.metrics.family import POLICY_LABELS, Level, Series, SeriesFamily, policy_label_values
from aggregator.model import CounterNames
from calico_accountant.records import CounterKey, Kind, verdict_of

__all__ = ["FAMILIES", "NO_POLICY_DROP", "POLICY", "series"]

POLICY = SeriesFamily(
    packets_name="calico_accountant_cluster_policy_packets_total",
    bytes_name="calico_accountant_cluster_policy_bytes_total",
    level=Level.CLUSTER,
    labels=("direction", "verdict", *POLICY_LABELS),
    packets_help="Packets a policy accepted (verdict=accept) or explicitly denied (verdict=deny) in the "
    "whole cluster; the sum of calico_accountant_node_policy_packets_total over nodes.",
    bytes_help="Bytes of the packets counted by calico_accountant_cluster_policy_packets_total.",
    per_workload=False,
)
NO_POLICY_DROP = SeriesFamily(
    packets_name="calico_accountant_cluster_no_policy_drop_packets_total",
    bytes_name="calico_accountant_cluster_no_policy_drop_bytes_total",
    level=Level.CLUSTER,
    labels=("namespace", "app", "direction"),
    packets_help="Packets to (ingress) or from (egress) the workloads of one namespace and app label, "
    "on every node, dropped because no policy accepted or passed them.",
    bytes_help="Bytes of the packets counted by calico_accountant_cluster_no_policy_drop_packets_total.",
    per_workload=False,
)

FAMILIES: tuple[SeriesFamily, ...] = (POLICY, NO_POLICY_DROP)


def series(names: CounterNames, key: CounterKey) -> Series | None:
    """Workload counters only: the sums of the node families over nodes."""
    if names.host_endpoint is not None:
        return None
    kind = key.kind
    policy = names.policy
    if (kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY) and policy is not None:
        return (POLICY, (key.direction, verdict_of(key), *policy_label_values(key, policy)))
    if kind is Kind.NO_POLICY_DROP and names.workload is not None:
        workload = names.workload
        return (NO_POLICY_DROP, (workload.namespace, workload.app, key.direction))
    return None
