"""Per-application families: every pod of one (namespace, app) in the cluster summed.

What the README's alerts compute with ``sum by (namespace, app)`` over the per-workload
families, kept at a size that big clusters can export: series grow with the applications
and the policies that apply to them, not with pods or nodes.  A 5,000-node cluster exports
``--levels app,node,cluster`` and drills down to pods through the hit API (``top``,
``observe``).  Aggregate families: a series stays when its pods go, so sums never drop.
"""

from __future__ import annotations

from aggregator.metrics.family import POLICY_LABELS, Level, SeriesFamily, policy_label_values
from aggregator.model import ResolvedCounter
from calico_accountant.records import Kind, Verdict

__all__ = ["FAMILIES", "NO_POLICY_DROP", "POLICY", "PROFILE", "series"]

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

FAMILIES: tuple[SeriesFamily, ...] = (POLICY, NO_POLICY_DROP, PROFILE)


def series(counter: ResolvedCounter) -> list[tuple[SeriesFamily, tuple[str, ...]]]:
    """The per-application series ``counter`` adds to: those of its workload's, without the pod."""
    workload = counter.workload
    if workload is None:
        return []
    base = (workload.namespace, workload.app, counter.direction)
    kind = counter.key.kind
    if kind in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY) and counter.policy is not None:
        return [(POLICY, (*base, counter.verdict, *policy_label_values(counter, counter.policy)))]
    if kind is Kind.NO_POLICY_DROP:
        return [(NO_POLICY_DROP, (*base, counter.tier))]
    if kind is Kind.PROFILE_ACCEPT:
        name = counter.profile.name if counter.profile is not None else counter.key.chain
        return [(PROFILE, (*base, Verdict.ACCEPT, name))]
    if kind is Kind.NO_PROFILE_DROP:
        return [(PROFILE, (*base, Verdict.DENY, ""))]
    return []
