"""Per-application families: every pod of one (namespace, app) in the cluster summed.

What the README's alerts compute with ``sum by (namespace, app)`` over the per-workload
families, kept at a size that big clusters can export: series grow with the applications
and the policies that apply to them, not with pods or nodes.  A 5,000-node cluster exports
``--levels app,node,cluster`` and drills down to pods through the hit API (``top``,
``observe``).  Aggregate families: a series stays when its pods go, so sums never drop.
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

_APP = ("namespace", "app")

POLICY = SeriesFamily(
    packets_name="calico_accountant_app_policy_packets_total",
    bytes_name="calico_accountant_app_policy_bytes_total",
    level=Level.APP,
    labels=(*_APP, "direction", "verdict", *POLICY_LABELS),
    packets_help="Packets a policy accepted (verdict=accept) or explicitly denied (verdict=deny) for the "
    "workloads of one namespace and app label, on every node; the sum of "
    "calico_accountant_workload_policy_packets_total over those pods.",
    bytes_help="Bytes of the packets counted by calico_accountant_app_policy_packets_total.",
    per_workload=False,
)
NO_POLICY_DROP = SeriesFamily(
    packets_name="calico_accountant_app_no_policy_drop_packets_total",
    bytes_name="calico_accountant_app_no_policy_drop_bytes_total",
    level=Level.APP,
    labels=(*_APP, "direction", "tier"),
    packets_help="Packets to (ingress) or from (egress) the workloads of one namespace and app label, on "
    "every node, dropped at the end of a tier because no policy of that tier accepted or passed them.",
    bytes_help="Bytes of the packets counted by calico_accountant_app_no_policy_drop_packets_total.",
    per_workload=False,
)
PROFILE = SeriesFamily(
    packets_name="calico_accountant_app_profile_packets_total",
    bytes_name="calico_accountant_app_profile_bytes_total",
    level=Level.APP,
    labels=(*_APP, "direction", "verdict", "profile"),
    packets_help="Packets of the workloads of one namespace and app label decided by profiles after no "
    "policy applied (verdict=deny, profile empty: no profile matched and they were dropped).",
    bytes_help="Bytes of the packets counted by calico_accountant_app_profile_packets_total.",
    per_workload=False,
)

ADMIN_DOWN = SeriesFamily(
    packets_name="calico_accountant_app_admin_down_drop_packets_total",
    bytes_name="calico_accountant_app_admin_down_drop_bytes_total",
    level=Level.APP,
    labels=(*_APP, "direction"),
    packets_help="Packets to or from the workloads of one namespace and app label, on every node, dropped "
    "because their endpoint is administratively down.",
    bytes_help="Bytes of the packets counted by calico_accountant_app_admin_down_drop_packets_total.",
    per_workload=False,
)

_ENDPOINT = EndpointFamilies(POLICY, NO_POLICY_DROP, PROFILE, ADMIN_DOWN)
FAMILIES: tuple[SeriesFamily, ...] = _ENDPOINT.all


def series(names: CounterNames, key: CounterKey) -> Series | None:
    """The per-application series the counter ``key`` of ``names`` adds to: those of its
    workload's, without the pod."""
    workload = names.workload
    if workload is None:
        return None
    return endpoint_series(names, key, (workload.namespace, workload.app, key.direction), _ENDPOINT)
