"""A Calico-shaped node in namespaces: one "node" namespace routing for one namespace per pod.

The wiring copies what Calico's CNI plugin does on a real node, so that felix-shaped
rules loaded into the node namespace see real pod-to-pod traffic in ``FORWARD``:

* each pod namespace has ``eth0``, a veth whose node-side end carries the pod's Calico
  interface name (``cali`` + 11 hex characters, :func:`calico_interface_name`);
* the pod owns one ``/32`` (and one ``/128``) address and routes everything to a
  link-local gateway, ``169.254.1.1`` / ``fe80::1``, which the node answers for (it holds
  that address on every pod interface, where Calico uses proxy ARP);
* the node routes each pod address to its interface and forwards.

Addresses are from 169.254.0.0/16 and 2001:db8::/32 and exist only inside the lab's
namespaces; every run has its own namespaces, so runs never see each other's addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant_cli.lab.netns import LabNetwork, run_command

__all__ = [
    "GATEWAY_V4",
    "GATEWAY_V6",
    "NODE_V6",
    "Node",
    "Pod",
    "PodSpec",
    "build_node",
    "calico_interface_name",
    "pod_addresses",
]

GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
NODE_V6 = "2001:db8:ca::1"


def calico_interface_name(k8s_namespace: str, pod_name: str, prefix: str = "cali") -> str:
    """Calico's veth name for a pod: ``prefix + sha1("<namespace>.<pod>")[:11]`` (VethNameForWorkload)."""
    digest = hashlib.sha1(f"{k8s_namespace}.{pod_name}".encode()).hexdigest()
    return prefix + digest[:11]


def pod_addresses(index: int) -> tuple[str, str]:
    """The IPv4 and IPv6 address of the ``index``-th pod of a lab node (0-based, < 40 000)."""
    if not 0 <= index < 40_000:
        raise ValueError(f"pod index {index} out of range")
    third, fourth = 10 + index // 200, 10 + index % 200
    return f"169.254.{third}.{fourth}", f"2001:db8:ca::{index + 10:x}"


@dataclass(frozen=True, slots=True)
class PodSpec:
    """A pod to create: its Kubernetes namespace and name decide its interface name."""

    name: str
    k8s_namespace: str = "default"
    interface_prefix: str = "cali"


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod of a lab node."""

    name: str
    k8s_namespace: str
    netns: str
    """The network namespace the pod's processes run in."""
    interface: str
    """The node-side interface (what felix calls the workload's ``interfaceName``)."""
    ipv4: str
    ipv6: str


@dataclass(frozen=True, slots=True)
class Node:
    """The node namespace and its pods."""

    netns: str
    pods: tuple[Pod, ...]

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(name)


def _ip_batch(namespace: str, commands: Sequence[str]) -> None:
    if commands:
        run_command(["ip", "-n", namespace, "-batch", "-"], input_text="\n".join(commands) + "\n")


def build_node(lab: LabNetwork, pods: Sequence[PodSpec], *, role: str = "node") -> Node:
    """Create the node namespace and one namespace per pod, wired and routed as Calico does."""
    interfaces = [
        calico_interface_name(spec.k8s_namespace, spec.name, spec.interface_prefix) for spec in pods
    ]
    if len(set(interfaces)) != len(interfaces):
        raise ValueError("two pods would get the same interface name")
    node_ns = lab.namespace(
        role,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            # A REJECT rule answers every attempt (no ICMP error rate limit per destination).
            "net.ipv4.icmp_ratelimit": "0",
            "net.ipv6.icmp.ratelimit": "0",
        },
    )
    created: list[Pod] = []
    for index, (spec, interface) in enumerate(zip(pods, interfaces, strict=True)):
        ipv4, ipv6 = pod_addresses(index)
        pod_ns = lab.namespace(f"{role}-pod{index}")
        created.append(Pod(spec.name, spec.k8s_namespace, pod_ns, interface, ipv4, ipv6))
    _ip_batch(
        node_ns,
        [f"link add {pod.interface} type veth peer name eth0 netns {pod.netns}" for pod in created],
    )
    for pod in created:
        _ip_batch(
            pod.netns,
            [
                "link set eth0 up",
                f"addr add {pod.ipv4}/32 dev eth0",
                f"addr add {pod.ipv6}/128 dev eth0 nodad",
                f"route add {GATEWAY_V4} dev eth0 scope link",
                f"route add default via {GATEWAY_V4} dev eth0",
                f"route add default via {GATEWAY_V6} dev eth0",
            ],
        )
    # A global address, so that ICMPv6 errors the node sends (REJECT) have a usable source.
    node_commands: list[str] = [f"addr add {NODE_V6}/128 dev lo"]
    for pod in created:
        node_commands += [
            f"link set {pod.interface} up",
            f"addr add {GATEWAY_V4}/32 dev {pod.interface}",
            f"addr add {GATEWAY_V6}/64 dev {pod.interface} nodad",
            f"route add {pod.ipv4}/32 dev {pod.interface} scope link",
            f"route add {pod.ipv6}/128 dev {pod.interface}",
        ]
    _ip_batch(node_ns, node_commands)
    return Node(node_ns, tuple(created))
