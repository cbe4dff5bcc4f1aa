"""Per-host-endpoint families: what policy did to a node's own traffic on one interface.

A HostEndpoint puts policy on a node's interface (or on all of them: ``interface`` is then
``any-interface-at-all``).  Felix checks it in four chains, told apart here by
``traffic``: ``host`` for what the host itself receives (``cali-fh-``, ingress) or sends
(``cali-th-``, egress), ``forward`` for what it forwards through the interface
(``cali-fhfw-``/``cali-thfw-``, only ``applyOnForward`` policies).  Like the workload
families, only packets that reach policy are counted (established connections and
felix's failsafe ports are accepted before it).  IPv4 and IPv6 are summed.

Exported with the node level (host endpoints are a few per node, so they cost what the
node families cost).  They are not part of the node and cluster policy sums, which stay
the sums of the workload families.
"""

from __future__ import annotations

from aggregator.metrics.family import POLICY_LABELS, Level, Series, SeriesFamily, policy_label_values
from aggregator.model import CounterNames, tier_of
from calico_accountant.records import CounterKey, EndpointKind, Kind, Verdict, verdict_of

__all__ = ["FAMILIES", "NO_POLICY_DROP", "POLICY", "PROFILE", "TRAFFIC", "series"]

_HOST_ENDPOINT = ("node", "host_endpoint", "interface")

TRAFFIC: dict[EndpointKind, str] = {EndpointKind.HOST: "host", EndpointKind.HOST_FORWARD: "forward"}
"""The ``traffic`` label of each host endpoint chain kind."""

POLICY = SeriesFamily(
    packets_name="calico_accountant_host_endpoint_policy_packets_total",
    bytes_name="calico_accountant_host_endpoint_policy_bytes_total",
    level=Level.NODE,
    labels=(*_HOST_ENDPOINT, "traffic", "direction", "verdict", *POLICY_LABELS),
    packets_help="Packets a policy decided for one host endpoint since its rules were created: "
    "verdict=accept when one of its allow rules matched, verdict=deny when one of its deny rules matched "
    "(exact, by flow conservation in the host endpoint's own chain). traffic=host: received by "
    "(ingress) or sent by (egress) the node itself; traffic=forward: forwarded through the interface "
    "(applyOnForward policies). host_endpoint is empty when no HostEndpoint names the interface.",
    bytes_help="Bytes of the packets counted by calico_accountant_host_endpoint_policy_packets_total.",
)
NO_POLICY_DROP = SeriesFamily(
    packets_name="calico_accountant_host_endpoint_no_policy_drop_packets_total",
    bytes_name="calico_accountant_host_endpoint_no_policy_drop_bytes_total",
    level=Level.NODE,
    labels=(*_HOST_ENDPOINT, "traffic", "direction", "tier"),
    packets_help="Packets of one host endpoint dropped at the end of a tier because no policy of that "
    "tier accepted or passed them (the implicit default deny).",
    bytes_help="Bytes of the packets counted by "
    "calico_accountant_host_endpoint_no_policy_drop_packets_total.",
)
PROFILE = SeriesFamily(
    packets_name="calico_accountant_host_endpoint_profile_packets_total",
    bytes_name="calico_accountant_host_endpoint_profile_bytes_total",
    level=Level.NODE,
    labels=(*_HOST_ENDPOINT, "direction", "verdict", "profile"),
    packets_help="Packets of one host endpoint decided by its profiles after no policy applied: "
    "verdict=accept when the named profile accepted them, verdict=deny (profile empty) when no profile "
    "matched and they were dropped (a host endpoint without profiles drops what no policy allowed).",
    bytes_help="Bytes of the packets counted by calico_accountant_host_endpoint_profile_packets_total.",
)

FAMILIES: tuple[SeriesFamily, ...] = (POLICY, NO_POLICY_DROP, PROFILE)


def series(names: CounterNames, key: CounterKey) -> Series | None:
    """The host endpoint series the counter ``key`` of ``names`` adds to (none for workload
    and per-rule counters)."""
    host_endpoint = names.host_endpoint
    if host_endpoint is None:
        return None
    base = (names.node, host_endpoint.name, host_endpoint.interface)
    kind = key.kind
    traffic = TRAFFIC[key.endpoint]
    policy = names.policy
    if (kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY) and policy is not None:
        labels = (*base, traffic, key.direction, verdict_of(key))
        return (POLICY, (*labels, *policy_label_values(key, policy)))
    if kind is Kind.NO_POLICY_DROP:
        return (NO_POLICY_DROP, (*base, traffic, key.direction, tier_of(key, policy)))
    if kind is Kind.PROFILE_ACCEPT:
        name = names.profile.name if names.profile is not None else key.chain
        return (PROFILE, (*base, key.direction, Verdict.ACCEPT, name))
    if kind is Kind.NO_PROFILE_DROP:
        return (PROFILE, (*base, key.direction, Verdict.DENY, ""))
    return None
