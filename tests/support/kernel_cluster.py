"""The sample cluster in network namespaces with real traffic: what
:class:`~tests.support.simulated.SimulatedCluster` simulates, done by the kernel (needs root).

Each node is a namespace whose filter table felix-shaped rules are loaded into (iptables
``legacy``), each pod a namespace behind a Calico-named veth, with the one-packet-per-attempt
send guard; an agent reads the node with ``ip netns exec NODE iptables-save -c``.  A round of
traffic is the demo's traffic plan sent for real (every TCP attempt and every ping is
exactly one new-flow packet, :mod:`calico_accountant_cli.demo.traffic`); each attempt must
be answered if and only if Calico semantics accept it, and the oracle books what it moves.
"""

from __future__ import annotations

from calico_accountant_cli.demo.cluster import load_sample_cluster
from calico_accountant_cli.demo.dataplane import program_node, save_command
from calico_accountant_cli.demo.plan import flows_of
from calico_accountant_cli.demo.traffic import guard_pod, send_flows, start_listeners
from calico_accountant_cli.demo.verdicts import outcomes_for
from calico_accountant_cli.demo.wiring import build_lab_cluster
from calico_accountant_cli.lab.calico_rules import Layout
from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools
from calico_accountant_cli.lab.netns import LabNetwork
from tests.support.simulated import ClusterWriter, Expected
from tests.support.skips import kernel_skip_reason

__all__ = ["KernelCluster", "kernel_cluster_skip_reason"]

BACKEND = Backend.LEGACY


def kernel_cluster_skip_reason() -> str | None:
    tools = [tool for tool in missing_backend_tools((BACKEND,)) if not tool.startswith("ip6")]
    return kernel_skip_reason("ip", "ipset", *tools)


class KernelCluster:
    """The sample cluster wired in ``lab``; :meth:`close` stops its listeners."""

    def __init__(self, lab: LabNetwork, store: ClusterWriter, layout: Layout = Layout.V3_30) -> None:
        self.cluster = load_sample_cluster()
        self.layout = layout
        self.store = store
        self.nodes = self.cluster.nodes
        self.expected = Expected()
        store.write(self.cluster)
        self.wired = build_lab_cluster(lab, self.cluster)
        for node in self.nodes:
            program_node(self.wired.nodes[node], self.cluster, node, layout, backend=BACKEND, fresh=True)
        for workload in self.cluster.workloads:
            guard_pod(self.wired, workload, BACKEND)
        self.listeners = start_listeners(self.wired, self.cluster.workloads, flows_of(self.cluster))

    def command(self, node: str) -> str:
        return save_command(self.wired.nodes[node], BACKEND)

    def traffic(self, rounds: int = 1, *, counted: bool = True) -> int:
        """``rounds`` rounds of the plan, sent; the packets sent."""
        packets = 0
        for _ in range(rounds):
            problems = []
            for item in send_flows(self.wired, flows_of(self.cluster)):
                outcomes = outcomes_for(self.cluster, self.layout, [item.flow])
                accepted = all(o.verdict == "accept" for o in outcomes)
                if item.answered != (item.attempts if accepted else 0):
                    problems.append(
                        f"{item.flow}: {item.answered}/{item.attempts} answered, accepted={accepted}"
                    )
                if counted:
                    self.expected.add(outcomes, item.attempts)
                packets += item.attempts
            assert not problems, "the dataplane disagrees with Calico semantics:\n" + "\n".join(problems)
        return packets

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.stop()
