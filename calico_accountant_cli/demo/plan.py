"""The demo's traffic: which pod talks to which, how, and how often (pure).

One *round* sends every planned flow's ``count`` new-flow packets.  The plan names pods
by namespace and app label, so it follows the sample cluster (and a pod added with the
same labels); what each packet meets is for :mod:`calico_accountant_cli.demo.verdicts` to
say, not for this list.  The default plan covers every kind of outcome in the sample:
allowed by a Kubernetes policy, by a Calico policy, by a global policy after a Pass
tier, denied explicitly in the default tier and in the ``security`` tier, dropped by
the default deny (no policy matched), and accepted by a profile (no policy at all),
over TCP and ICMP, on one node and across nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from calico_accountant_cli.demo.cluster import Cluster, Workload
from calico_accountant_cli.demo.simulate import Packet
from calico_accountant_cli.demo.verdicts import Flow

__all__ = [
    "DEFAULT_PLAN",
    "ICMP_ECHO_BYTES",
    "TCP_SYN_BYTES",
    "PlannedFlow",
    "flows_of",
    "link_interface",
    "listen_ports",
    "node_packets",
]

TCP_SYN_BYTES = 60
"""An IPv4 SYN from Linux: 20 bytes of IP, 40 of TCP with options."""
ICMP_ECHO_BYTES = 49
"""The lab probe's echo request: 20 IP + 8 ICMP + 21 bytes of payload."""


@dataclass(frozen=True, slots=True)
class PlannedFlow:
    """``count`` new flows per round from the pod (namespace, app) to another."""

    source: tuple[str, str]
    dest: tuple[str, str]
    protocol: str
    port: int | None
    count: int


DEFAULT_PLAN: tuple[PlannedFlow, ...] = (
    # allowed by policy
    PlannedFlow(("shop", "frontend"), ("shop", "cart"), "tcp", 8080, 3),
    PlannedFlow(("shop", "frontend"), ("shop", "catalog"), "tcp", 8080, 3),
    PlannedFlow(("shop", "checkout"), ("payments", "payments-api"), "tcp", 8443, 2),
    PlannedFlow(("payments", "payments-api"), ("payments", "ledger-db"), "tcp", 5432, 2),
    PlannedFlow(("monitoring", "prometheus"), ("shop", "cart"), "tcp", 9090, 1),
    PlannedFlow(("monitoring", "prometheus"), ("payments", "ledger-db"), "tcp", 9090, 1),
    # no policy at all: the profile accepts
    PlannedFlow(("shop", "catalog"), ("monitoring", "grafana"), "tcp", 3000, 1),
    PlannedFlow(("shop", "cart"), ("monitoring", "grafana"), "icmp", None, 1),
    # explicit denies
    PlannedFlow(("shop", "frontend"), ("payments", "payments-api"), "tcp", 8443, 2),
    PlannedFlow(("shop", "frontend"), ("payments", "payments-api"), "icmp", None, 1),
    PlannedFlow(("shop", "checkout"), ("payments", "ledger-db"), "tcp", 5432, 2),
    PlannedFlow(("shop", "cart"), ("payments", "ledger-db"), "tcp", 5432, 1),
    # default deny: no policy of tier default matched
    PlannedFlow(("shop", "cart"), ("shop", "catalog"), "tcp", 8080, 1),
    PlannedFlow(("shop", "frontend"), ("shop", "cart"), "icmp", None, 2),
)


def _by_app(cluster: Cluster, namespace: str, app: str) -> list[Workload]:
    return [w for w in cluster.workloads if w.namespace == namespace and w.app == app]


def flows_of(cluster: Cluster, plan: Sequence[PlannedFlow] = DEFAULT_PLAN) -> list[tuple[Flow, int]]:
    """The plan's flows between existing pods (every pod with the app label, in pod order);
    flows whose source or destination app has no pod are left out."""
    out = []
    for planned in plan:
        for source in sorted(_by_app(cluster, *planned.source), key=lambda w: w.pod):
            for dest in sorted(_by_app(cluster, *planned.dest), key=lambda w: w.pod):
                out.append((Flow(source, dest, planned.protocol, planned.port), planned.count))
    return out


def listen_ports(flows: Iterable[tuple[Flow, int]]) -> dict[str, tuple[int, ...]]:
    """TCP ports each destination pod must listen on, by pod name."""
    ports: dict[str, set[int]] = {}
    for flow, _count in flows:
        if flow.protocol == "tcp" and flow.port is not None:
            ports.setdefault(flow.dest.pod, set()).add(flow.port)
    return {pod: tuple(sorted(p)) for pod, p in ports.items()}


def link_interface(peer: str) -> str:
    """The name of a node's interface toward node ``peer`` (not ``cali*``: felix's
    dispatch rules must not take it for a workload)."""
    digest = sum(peer.encode()) % 10_000
    return f"nl{digest:04d}{''.join(c for c in peer if c.isalnum())[-6:]}"[:15]


def node_packets(cluster: Cluster, node: str, flows: Iterable[tuple[Flow, int]]) -> list[tuple[Packet, int]]:
    """The packets each flow sends through ``node``'s FORWARD chain, with their counts.

    A packet is assumed to leave its source node (the sample restricts no egress); a
    cluster with egress denies would need the source node's verdict first."""
    out = []
    for flow, count in flows:
        length = TCP_SYN_BYTES if flow.protocol == "tcp" else ICMP_ECHO_BYTES
        source_here = flow.source.node == node
        dest_here = flow.dest.node == node
        if not (source_here or dest_here):
            continue
        in_interface = flow.source.interface if source_here else link_interface(flow.source.node)
        out_interface = flow.dest.interface if dest_here else link_interface(flow.dest.node)
        out.append(
            (Packet(in_interface, out_interface, flow.source.ipv4, flow.protocol, flow.port, length), count)
        )
    return out
