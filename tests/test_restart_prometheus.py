"""What a real Prometheus records through an aggregator restart: ``increase()`` is exact.

A real Prometheus scrapes the aggregator's ``/metrics`` every second at one fixed address,
which the restarted aggregator binds again.  Two variants of the same cluster (the sample
cluster's two nodes and eight pods) and the same traffic plan, with the traffic as the
oracle of what every series must count:

* ``simulated``: dump files whose counters rounds of the plan advance
  (:mod:`tests.support.simulated`); no root needed;
* ``kernel``: the nodes and pods are network namespaces with felix-shaped iptables rules,
  the plan is sent as real packets (one packet per attempt, each answered if and only if
  Calico semantics accept it), and the agents read ``iptables-save -c`` of the node
  namespaces (:mod:`tests.support.kernel_cluster`; needs root, iptables, ipset).

The restart is the hard one: SIGKILL, and the checkpoint it restarts from is older than
what Prometheus last scraped (a copy kept before the last round), one node's agent comes
back late, and traffic moves while the aggregator is away.  Then, evaluated at a scrape
after the restart over a window that starts exactly at a scrape before it (so Prometheus
extrapolates nothing: the increase is the difference of the two samples, plus resets):

* ``increase(series[window])`` of every per-workload, per-node, per-rule and cluster-wide
  series equals the packets the traffic moved on it in that window, exactly;
* ``resets(series[window])`` is 0 for every series: no decrease was ever scraped, so
  Prometheus added no false increase (it would add a whole total at a drop).
"""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_accountant_cli.demo.store import ClusterStore
from calico_accountant_cli.lab.netns import LabNetwork
from tests.support.deployment import Deployment, Nodes
from tests.support.kernel_cluster import KernelCluster, kernel_cluster_skip_reason
from tests.support.processes import Processes, processes
from tests.support.prometheus_server import SKIP_REASON, PrometheusServer, prometheus_available
from tests.support.simulated import EXACT, Expected, Key, SimulatedCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not prometheus_available(), reason=SKIP_REASON),
]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group
        for process in group.started:
            if process.name.startswith("agent-"):
                process.stop()


def _frozen(expected: Expected) -> dict[str, Counter[Key]]:
    return {family: expected.want(family) for family in EXACT}


def _seen(prometheus: PrometheusServer, expected: Expected) -> None:
    """Until Prometheus has scraped the totals the oracle expects (per family, summed)."""
    want = {family: sum(expected.want(family).values()) for family in EXACT}
    prometheus.wait_for(
        lambda: all(prometheus.value(f"sum({family})") == total for family, total in want.items()),
        timeout=20,
    )


def _last_scrape(prometheus: PrometheusServer, before: float) -> float:
    """The timestamp of the last scrape at or before ``before`` (every series has it)."""
    found = prometheus.samples("calico_accountant_build_info[1m]", at=before)
    return max(t for _, values in found for t, _ in values)


@pytest.fixture(params=["simulated", pytest.param("kernel", marks=pytest.mark.kernel)])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Nodes]:
    """The sample cluster: dumps moved by simulated traffic, or namespaces and real packets."""
    with ClusterStore(None) as store:
        if request.param == "simulated":
            yield SimulatedCluster(tmp_path, store)
            return
        reason = kernel_cluster_skip_reason()
        if reason:
            pytest.skip(reason)
        with LabNetwork() as lab:
            cluster = KernelCluster(lab, store)
            try:
                yield cluster
            finally:
                cluster.close()


def test_prometheus_increase_over_a_sigkill_restart_is_exact(
    nodes: Nodes, run: Processes, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    deployment = Deployment.of(
        run, nodes, "--checkpoint", f"file:{checkpoint}", "--checkpoint-interval", "0.3"
    )
    try:
        _through_a_restart(deployment, checkpoint)
    finally:
        deployment.stop_agents()  # before the lab's namespaces go


def _through_a_restart(deployment: Deployment[Nodes], checkpoint: Path) -> None:
    sim, served = deployment.sim, deployment.served
    deployment.start()
    deployment.start_agents()
    with PrometheusServer([f"127.0.0.1:{served.metrics_port}"]) as prometheus:
        prometheus.wait_for_target_up()
        deployment.step("round 1")
        _seen(prometheus, sim.expected)
        start = _last_scrape(prometheus, time.time())
        at_start = _frozen(sim.expected)

        served.wait_checkpoint()
        older = checkpoint.with_name("older")
        shutil.copyfile(checkpoint, older)
        deployment.step("round 2, not in the kept checkpoint")
        _seen(prometheus, sim.expected)
        late = sim.nodes[-1]
        deployment.agents[late].stop()
        assert deployment.replicas["aggregator"].stop(signal.SIGKILL) == -signal.SIGKILL
        shutil.copyfile(older, checkpoint)
        sim.traffic(2)  # while the aggregator is away
        deployment.start()
        time.sleep(1.5)  # a scrape or two fail: /metrics waits for the late node
        deployment.start_agent(late)
        deployment.step("round after the restart")
        _seen(prometheus, sim.expected)
        end = _last_scrape(prometheus, time.time())
        at_end = _frozen(sim.expected)

        window = f"{round((end - start) * 1000)}ms"
        for family, labels in EXACT.items():
            got: Counter[Key] = Counter()
            for found, value in prometheus.query(f"increase({family}[{window}])", at=end):
                assert value == int(value), f"{family}{found}: increase {value} is not whole"
                if value:
                    got[tuple(found.get(name, "") for name in labels)] += int(value)
            assert got == at_end[family] - at_start[family], family
            resets = prometheus.query(f"resets({family}[{window}]) > 0", at=end)
            assert resets == [], f"{family}: Prometheus saw a decrease: {resets[:3]}"
    assert sum(sum((at_end[f] - at_start[f]).values()) for f in EXACT) > 0
