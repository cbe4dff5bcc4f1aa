"""Per-workload families: what policy did to one pod's traffic, per direction.

Only packets that reach policy are counted: Calico accepts established connections
(conntrack) before any policy, so these are mostly connection-opening packets and every
packet of denied flows.  IPv4 and IPv6 are summed.
"""

from __future__ import annotations

from aggregator.metrics.family import (
    POLICY_LABELS,
    EndpointFamilies,
    Level,
    Series,
    SeriesFamily,
    endpoint_series,
)
from aggregator.model import CounterNames
from calico_accountant.records import CounterKey

__all__ = ["ADMIN_DOWN", "FAMILIES", "NO_POLICY_DROP", "POLICY", "PROFILE", "series"]

_WORKLOAD = ("node", "namespace", "pod", "app")

POLICY = SeriesFamily(
    packets_name="calico_accountant_workload_policy_packets_total",
    bytes_name="calico_accountant_workload_policy_bytes_total",
    level=Level.WORKLOAD,
    labels=(*_WORKLOAD, "direction", "verdict", *POLICY_LABELS),
    packets_help="Packets a policy decided for one workload since its rules were created: "
    "verdict=accept when one of the policy's allow rules matched, verdict=deny when one of its deny rules "
    "matched (exact, by flow conservation in the workload's own chain). Policy groups are one series, "
    "policy_kind=PolicyGroup. Established connections are accepted before policy and not counted.",
    bytes_help="Bytes of the packets counted by calico_accountant_workload_policy_packets_total.",
)
NO_POLICY_DROP = SeriesFamily(
    packets_name="calico_accountant_workload_no_policy_drop_packets_total",
    bytes_name="calico_accountant_workload_no_policy_drop_bytes_total",
    level=Level.WORKLOAD,
    labels=(*_WORKLOAD, "direction", "tier"),
    packets_help="Packets to (ingress) or from (egress) one workload dropped at the end of a tier "
    "because no policy of that tier accepted or passed them (the implicit default deny).",
    bytes_help="Bytes of the packets counted by calico_accountant_workload_no_policy_drop_packets_total.",
)
PROFILE = SeriesFamily(
    packets_name="calico_accountant_workload_profile_packets_total",
    bytes_name="calico_accountant_workload_profile_bytes_total",
    level=Level.WORKLOAD,
    labels=(*_WORKLOAD, "direction", "verdict", "profile"),
    packets_help="Packets of one workload decided by profiles after no policy applied: verdict=accept "
    "when the named profile accepted them, verdict=deny (profile empty) when no profile matched and "
    "they were dropped.",
    bytes_help="Bytes of the packets counted by calico_accountant_workload_profile_packets_total.",
)

ADMIN_DOWN = SeriesFamily(
    packets_name="calico_accountant_workload_admin_down_drop_packets_total",
    bytes_name="calico_accountant_workload_admin_down_drop_bytes_total",
    level=Level.WORKLOAD,
    labels=(*_WORKLOAD, "direction"),
    packets_help="Packets to (ingress) or from (egress) one workload dropped because its endpoint is "
    "administratively down (felix's 'Endpoint admin disabled' rule; no policy or profile applies).",
    bytes_help="Bytes of the packets counted by calico_accountant_workload_admin_down_drop_packets_total.",
)

_ENDPOINT = EndpointFamilies(POLICY, NO_POLICY_DROP, PROFILE, ADMIN_DOWN)
FAMILIES: tuple[SeriesFamily, ...] = _ENDPOINT.all


def series(names: CounterNames, key: CounterKey) -> Series | None:
    """The per-workload series the counter ``key`` of ``names`` adds to (none for per-rule counters)."""
    workload = names.workload
    if workload is None:
        return None
    base = (names.node, workload.namespace, workload.pod, workload.app, key.direction)
    return endpoint_series(names, key, base, _ENDPOINT)
