"""The metric names of monzo/calico-accountant, so existing dashboards and alerts keep working.

Same names, label names and meaning as its README, with two improvements users can rely
on: values are monotonic totals (not raw iptables counters that restart), and
``policy_accept_drop_counter`` is the exact per-pod explicit deny, never the shared
DROP counter inside a policy chain.  Packets only, like the original.  The names lack
``_total``; promtool's lint says so, and that is expected.
"""

from __future__ import annotations

import re

from aggregator.metrics.family import Level, Series, SeriesFamily
from aggregator.model import CounterNames, PolicyIdentity
from calico_accountant.records import CounterKey, Direction, Kind

__all__ = ["FAMILIES", "NO_POLICY_DROP", "POLICY_ACCEPT", "POLICY_ACCEPT_DROP", "series"]

_LABELS = ("pod", "pod_namespace", "app", "ip", "type")
_V1_COMMENT = re.compile(r"^Policy (\S+) (?:ingress|egress)$")

NO_POLICY_DROP = SeriesFamily(
    packets_name="no_policy_drop_counter",
    bytes_name=None,
    level=Level.COMPAT,
    labels=_LABELS,
    packets_help="Number of packets dropped to/from a workload because no policies matched them "
    "(type=tw to the workload, fw from it). Compatibility name of monzo/calico-accountant.",
)
POLICY_ACCEPT = SeriesFamily(
    packets_name="policy_accept_counter",
    bytes_name=None,
    level=Level.COMPAT,
    labels=(*_LABELS, "policy"),
    packets_help="Number of packets accepted by a policy on a workload (policy is <namespace>/<stored "
    "name>). Compatibility name of monzo/calico-accountant.",
)
POLICY_ACCEPT_DROP = SeriesFamily(
    packets_name="policy_accept_drop_counter",
    bytes_name=None,
    level=Level.COMPAT,
    labels=(*_LABELS, "policy"),
    packets_help="Number of packets dropped by an explicit deny rule of a policy on a workload, exact "
    "per workload. Compatibility name of monzo/calico-accountant.",
)

FAMILIES: tuple[SeriesFamily, ...] = (NO_POLICY_DROP, POLICY_ACCEPT, POLICY_ACCEPT_DROP)


def policy_label(names: CounterNames, key: CounterKey) -> str:
    """monzo's ``policy``: felix's v1 name, ``<namespace>/<stored name>`` (or the stored name
    of a global policy).  Felix's own identity comment (``Policy <v1 name> ingress``, v3.22
    to v3.31) is the most faithful source, since it is exactly the name monzo derived the
    chain from; otherwise the catalog's stored name.  A group's members are joined by
    ``+``; an unresolved chain is exported as is."""
    if names.group is not None and names.group.policies:
        return "+".join(_qualified(p) for p in names.group.policies)
    if names.policy is None:
        return key.chain
    match = _V1_COMMENT.match(names.chain_comment)
    if match is not None and names.policy.resolved:
        return match.group(1)
    return _qualified(names.policy)


def _qualified(policy: PolicyIdentity) -> str:
    stored = policy.stored_name or policy.name
    return f"{policy.namespace}/{stored}" if policy.namespace else stored


def series(names: CounterNames, key: CounterKey) -> Series | None:
    workload = names.workload
    if workload is None:
        return None
    base = (
        workload.pod,
        workload.namespace,
        workload.app,
        ",".join(workload.ips),
        "tw" if key.direction is Direction.INGRESS else "fw",  # monzo's type: to or from the workload
    )
    kind = key.kind
    if kind is Kind.NO_POLICY_DROP:
        return (NO_POLICY_DROP, base)
    if kind is Kind.POLICY_ACCEPT:
        return (POLICY_ACCEPT, (*base, policy_label(names, key)))
    if kind is Kind.POLICY_DENY:
        return (POLICY_ACCEPT_DROP, (*base, policy_label(names, key)))
    return None
