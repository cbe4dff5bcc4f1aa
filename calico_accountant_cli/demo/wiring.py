"""The sample cluster's nodes and pods as network namespaces, wired like Calico (needs root).

:mod:`calico_accountant_cli.lab.topology` numbers pod addresses itself; the demo needs the
addresses and interface names the datastore holds, and several nodes that route to each
other, so this module wires them, in the same way:

* one namespace per node (forwarding on, IPv6 off so nothing but the demo's own packets
  crosses the tables), one per pod;
* a veth per pod: ``eth0`` in the pod with its ``/32``, the node side named as the
  WorkloadEndpoint's ``interfaceName``; the pod routes everything to ``169.254.1.1``,
  which the node holds on every pod interface (Calico uses proxy ARP for the same end);
* a veth between every two nodes (:func:`calico_accountant_cli.demo.plan.link_interface`
  names the ends), with a ``/32`` route per remote pod.

All namespaces belong to a :class:`~calico_accountant_cli.lab.netns.LabNetwork`, which
deletes them on exit, on exceptions and on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from calico_accountant_cli.demo.cluster import Cluster, Workload
from calico_accountant_cli.demo.plan import link_interface
from calico_accountant_cli.lab.netns import LabNetwork, delete_namespace, run_command
from calico_accountant_cli.lab.topology import GATEWAY_V4

__all__ = ["LabCluster", "build_lab_cluster"]

_NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
_POD_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


def _router_address(index: int) -> str:
    return f"169.254.254.{index + 1}"


def _ip_batch(namespace: str, commands: Sequence[str]) -> None:
    if commands:
        run_command(["ip", "-n", namespace, "-batch", "-"], input_text="\n".join(commands) + "\n")


def _role(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:40]


@dataclass
class LabCluster:
    """Which namespace is which: node name → node namespace, pod name → pod namespace."""

    lab: LabNetwork
    nodes: dict[str, str] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)
    node_order: list[str] = field(default_factory=list)

    def add_pod(self, workload: Workload) -> str:
        """Create the pod's namespace and veth, and routes to it on every node."""
        node_ns = self.nodes[workload.node]
        pod_ns = self.lab.namespace(f"pod-{_role(workload.pod)}", _POD_SYSCTLS)
        self.pods[workload.pod] = pod_ns
        _ip_batch(node_ns, [f"link add {workload.interface} type veth peer name eth0 netns {pod_ns}"])
        _ip_batch(
            pod_ns,
            [
                "link set eth0 up",
                f"addr add {workload.ipv4}/32 dev eth0",
                f"route add {GATEWAY_V4} dev eth0 scope link",
                f"route add default via {GATEWAY_V4} dev eth0",
            ],
        )
        _ip_batch(
            node_ns,
            [
                f"link set {workload.interface} up",
                f"addr add {GATEWAY_V4}/32 dev {workload.interface}",
                f"route add {workload.ipv4}/32 dev {workload.interface} scope link",
            ],
        )
        run_command(
            [
                "ip",
                "netns",
                "exec",
                node_ns,
                "sysctl",
                "-q",
                "-w",
                f"net.ipv4.conf.{workload.interface}.rp_filter=0",
            ]
        )
        for other in self.node_order:
            if other != workload.node:
                index = self.node_order.index(workload.node)
                _ip_batch(
                    self.nodes[other],
                    [
                        f"route add {workload.ipv4}/32 via {_router_address(index)} "
                        f"dev {link_interface(workload.node)} onlink"
                    ],
                )
        return pod_ns

    def remove_pod(self, workload: Workload) -> None:
        """Delete the pod's namespace (its veth goes with it) and the routes to it."""
        pod_ns = self.pods.pop(workload.pod)
        delete_namespace(pod_ns)
        for other in self.node_order:
            if other != workload.node:
                run_command(
                    ["ip", "-n", self.nodes[other], "route", "del", f"{workload.ipv4}/32"], check=False
                )


def build_lab_cluster(lab: LabNetwork, cluster: Cluster) -> LabCluster:
    """Namespaces for every node and pod of ``cluster``, wired and routed."""
    wired = LabCluster(lab)
    wired.node_order = list(cluster.nodes)
    for node in wired.node_order:
        wired.nodes[node] = lab.namespace(f"node-{_role(node)}", _NODE_SYSCTLS)
    for i, first in enumerate(wired.node_order):
        for second in wired.node_order[i + 1 :]:
            a, b = wired.nodes[first], wired.nodes[second]
            a_end, b_end = link_interface(second), link_interface(first)
            run_command(
                ["ip", "-n", a, "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", b]
            )
            for namespace, end, own, peer_index in (
                (a, a_end, wired.node_order.index(first), wired.node_order.index(second)),
                (b, b_end, wired.node_order.index(second), wired.node_order.index(first)),
            ):
                _ip_batch(
                    namespace,
                    [
                        f"addr add {_router_address(own)}/32 dev {end}",
                        f"link set {end} up",
                        f"route add {_router_address(peer_index)}/32 dev {end} scope link",
                    ],
                )
    for workload in cluster.workloads:
        wired.add_pod(workload)
    return wired
