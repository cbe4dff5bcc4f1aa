"""Waiting on a serving aggregator (whichever replica it is) from a test: its gRPC API,
its ``/metrics``, its health port.

:class:`Served` is one address pair -- gRPC and ``/metrics`` -- as agents and Prometheus
see it; with two replicas on the same ports, only the leader listens there, so the
same object reaches whichever replica serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from calico_accountant_cli.hits_client import HitsClient
from tests.support.scrape import http_get, metric_samples
from tests.support.simulated import Expected
from tests.support.waits import wait_until

__all__ = ["Served", "ready"]


def ready(health_port: int) -> tuple[int, str]:
    """``/readyz`` of one replica: (status, body); (0, reason) when nothing answers."""
    try:
        return http_get(f"http://127.0.0.1:{health_port}/readyz", timeout=2)
    except OSError as error:
        return 0, str(error)


@dataclass(frozen=True)
class Served:
    grpc_port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def scrape(self) -> str:
        status, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return text

    def metric(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return metric_samples(self.scrape(), name)

    def _nodes(self) -> list[tuple[str, bool, int, float]]:
        with HitsClient(self.target, timeout=3) as client:
            return [
                (
                    n.node,
                    n.connected,
                    n.sequence,
                    n.last_snapshot_time.ToDatetime(tzinfo=UTC).timestamp(),
                )
                for n in client.list_nodes().nodes
            ]

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Until the gRPC API answers."""

        def answers() -> bool:
            with HitsClient(self.target, timeout=1) as client:
                client.server_status()
            return True

        wait_until(answers, timeout=timeout, interval=0.05, what=f"gRPC on {self.target}")

    def wait_reads_after(self, moment: float, nodes: int, timeout: float = 20.0) -> None:
        """Until each of ``nodes`` nodes has had a snapshot read after ``moment`` applied.
        An agent stamps a read when it starts it: take ``moment`` after the tables changed
        (taken before, a read started in between counts as after and shows the old tables)."""
        wait_until(
            lambda: (
                len(found := self._nodes()) == nodes
                and all(connected and read > moment for _, connected, _, read in found)
            ),
            timeout=timeout,
            what=f"{nodes} nodes' reads after {moment}",
        )

    def wait_resolved(self, timeout: float = 20.0) -> None:
        """Until no node has an interface or chain the catalog cannot name."""

        def resolved() -> bool:
            text = self.scrape()
            return not any(
                value
                for name in ("calico_accountant_unresolved_chains", "calico_accountant_unresolved_interfaces")
                for value in metric_samples(text, name).values()
            )

        wait_until(resolved, timeout=timeout, what="every chain and interface resolved")

    def wait_exact(self, expected: Expected, phase: str, timeout: float = 20.0) -> str:
        """Until every series equals the oracle; the exposition that did."""
        last: list[str] = []

        def exact() -> str | None:
            text = self.scrape()
            last[:] = expected.mismatches(text)
            return None if last else text

        try:
            return wait_until(exact, timeout=timeout, interval=0.1, what=phase)
        except AssertionError:
            raise AssertionError(f"{phase}: not exact after {timeout} s:\n" + "\n".join(last[:40])) from None

    def checkpoints_written(self) -> float:
        return self.metric("calico_accountant_checkpoint_writes_total").get((("outcome", "ok"),), 0.0)

    def wait_checkpoint(self, timeout: float = 20.0) -> None:
        """Until a checkpoint has been captured after this call (two writes complete)."""
        first = self.checkpoints_written()
        wait_until(lambda: self.checkpoints_written() >= first + 2, timeout=timeout, what="a new checkpoint")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 20 ms; the seconds until it held."""
    started = time.monotonic()
    wait_until(predicate, timeout=timeout, interval=0.02, what=what)
    return time.monotonic() - started
