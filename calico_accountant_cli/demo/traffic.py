"""Real traffic between the demo's pod namespaces, with exact new-flow counts (needs root).

A thin layer over :mod:`calico_accountant_cli.lab.traffic`: each TCP attempt is one SYN from
a fresh source port (a denied one is abandoned before the kernel would retransmit, and
the send guard in the pod drops any retransmission), each ping one echo request with a
fresh identifier.  So every attempt is exactly one packet through the policy jumps, and
a counter must equal the number of attempts -- no "approximately".
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from calico_accountant_cli.demo.cluster import Workload
from calico_accountant_cli.demo.plan import listen_ports
from calico_accountant_cli.demo.verdicts import Flow
from calico_accountant_cli.demo.wiring import LabCluster
from calico_accountant_cli.lab.iptables import Backend
from calico_accountant_cli.lab.topology import Pod
from calico_accountant_cli.lab.traffic import Listener, connect, install_send_guard, ping, start_listener

__all__ = ["SentFlow", "guard_pod", "lab_pod", "send_flows", "start_listeners"]


@dataclass(frozen=True, slots=True)
class SentFlow:
    flow: Flow
    attempts: int
    answered: int
    """Connections established / echo replies received."""


def lab_pod(wired: LabCluster, workload: Workload) -> Pod:
    """The lab's view of a workload (what the lab's traffic functions take)."""
    return Pod(
        workload.pod, workload.namespace, wired.pods[workload.pod], workload.interface, workload.ipv4, ""
    )


def guard_pod(wired: LabCluster, workload: Workload, backend: Backend = Backend.LEGACY) -> None:
    """Install the one-packet-per-attempt send guard in the pod's namespace."""
    install_send_guard(wired.pods[workload.pod], backend)


def start_listeners(
    wired: LabCluster, workloads: Sequence[Workload], flows: Sequence[tuple[Flow, int]]
) -> dict[str, Listener]:
    """A listener in each destination pod on the ports the flows use."""
    ports = listen_ports(flows)
    out = {}
    for workload in workloads:
        if ports.get(workload.pod):
            out[workload.pod] = start_listener(wired.lab, lab_pod(wired, workload), ports[workload.pod])
    return out


def _send(wired: LabCluster, flow: Flow, count: int) -> SentFlow:
    source = lab_pod(wired, flow.source)
    if flow.protocol == "icmp":
        result = ping(source, flow.dest.ipv4, count, timeout=0.6)
        return SentFlow(flow, result.sent, result.answered)
    if flow.port is None:
        raise ValueError("a TCP flow needs a port")
    outcome = connect(source, flow.dest.ipv4, flow.port, count, timeout=0.5)
    return SentFlow(flow, outcome.attempts, outcome.connected)


def send_flows(wired: LabCluster, flows: Sequence[tuple[Flow, int]], *, parallel: int = 8) -> list[SentFlow]:
    """Send every flow's ``count`` attempts (flows in parallel); returns what was sent."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(_send, wired, flow, count) for flow, count in flows if count > 0]
        return [future.result() for future in futures]
