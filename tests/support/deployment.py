"""Aggregator processes (one, or replicas sharing one address) and their agents on the
simulated cluster, as the restart and failover tests drive them.

Every replica gets the same gRPC and ``/metrics`` ports and a health port of its own: only
the serving one listens on the shared ports, so agents and scrapes reach whichever serves.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from tests.support.ports import free_port
from tests.support.processes import Process, Processes
from tests.support.serving import Served
from tests.support.simulated import ClusterWriter, Expected, accounting_series

__all__ = ["AGENT_INTERVAL", "Deployment", "Nodes", "assert_not_lower"]

AGENT_INTERVAL = "0.2"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Nodes(Protocol):
    """The cluster the agents read: simulated (:mod:`.simulated`) or in the kernel
    (:mod:`.kernel_cluster`)."""

    nodes: tuple[str, ...]
    store: ClusterWriter
    expected: Expected

    def command(self, node: str) -> str: ...
    def traffic(self, rounds: int = 1, *, counted: bool = True) -> int: ...


N = TypeVar("N", bound=Nodes)


@dataclass
class Deployment(Generic[N]):
    run: Processes
    sim: N
    args: tuple[str, ...]
    """The aggregator's flags besides its ports."""
    served: Served = field(default_factory=lambda: Served(free_port(), free_port()))
    replicas: dict[str, Process] = field(default_factory=dict)
    agents: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Processes, sim: N, *args: str) -> Deployment[N]:
        """``sim`` with traffic its aggregators will not count (the kernel counted before)."""
        sim.traffic(2, counted=False)
        return cls(run, sim, ("--datastore", sim.store.spec, *args))

    def start(self, name: str = "aggregator", *, serving: bool = True) -> Process:
        """Start a replica (``serving``: and wait until the shared address answers)."""
        self.replicas[name] = self.run.aggregator(
            self.served.grpc_port, self.served.metrics_port, *self.args, name=name
        )
        if serving:
            self.served.wait_serving()
        return self.replicas[name]

    def start_agent(self, node: str) -> None:
        self.agents[node], _ = self.run.agent(
            node, self.served.grpc_port, [self.sim.command(node)], "--interval", AGENT_INTERVAL
        )

    def start_agents(self) -> None:
        """Every node's agent; returns once each node's baseline is set (names resolved)."""
        for node in self.sim.nodes:
            self.start_agent(node)
        self.served.wait_reads_after(0, len(self.sim.nodes))
        self.served.wait_resolved()

    def step(self, phase: str, *, rounds: int = 1) -> str:
        """A round of traffic, then until every series is exact; the exposition."""
        self.sim.traffic(rounds)
        return self.served.wait_exact(self.sim.expected, phase)

    def stop_agents(self) -> None:
        for agent in self.agents.values():
            agent.stop(signal.SIGTERM)


def assert_not_lower(before: Series, exposition: str, when: str) -> None:
    """Every accounting series of ``before`` is exported at least at its value."""
    after = accounting_series(exposition)
    lower = [
        f"{name}{dict(labels)}: {value} -> {after.get((name, labels))}"
        for (name, labels), value in before.items()
        if after.get((name, labels), -1.0) < value
    ]
    assert not lower, f"{when}: {len(lower)} series lower than before:\n" + "\n".join(lower[:20])
