"""Aggregator restarts with real processes: counters that never lie.

A real aggregator process and one real agent process per node of the sample cluster;
each node is a felix-shaped dump whose counters move with simulated traffic, and the
oracle says which series every packet of that traffic moves (:mod:`tests.support.simulated`).
Before the restart the aggregator has counted, each step checked exactly:

* a counter reset: a policy's rules rewritten (new rule hashes, those counters start
  again from zero) and an endpoint chain's counters zeroed (its raw values drop);
* a renamed policy (the datastore, then felix's new chains): the old chains' counters
  retire and expire, the new name gets the increases from then on;
* a deleted pod (its chains, then its WorkloadEndpoint): its counters retire and expire
  after ``--retired-grace 1``, its workload series go, the node and cluster sums keep them.

Then the aggregator is stopped (SIGTERM or SIGKILL), traffic moves while it is away, and
it is started again on the same ports:

* with a checkpoint (``file:``, SIGTERM; ``file:``, SIGKILL; ``etcd``, SIGKILL): the first
  ``/metrics`` it serves shows every accounting series at least at its value before the
  restart, and then every series equals exactly what the traffic moved since the
  aggregator first saw the nodes -- including the traffic while it was away;
* without a checkpoint: every series starts again from zero (the agents' first snapshots
  after the restart are the new baseline), then counts exactly the traffic since.

The SIGKILL bound: a killed aggregator continues from its last checkpoint (at most
``--checkpoint-interval`` old), and the agents' next full snapshots bring every counter
back to what the kernel counted since then, exactly -- unless a counter was reset (its
rules rewritten, its counters zeroed) between that checkpoint and the kill: then the
increments it had between the checkpoint and its reset are lost (the restored raw value
is above the kernel's, the reset is seen, only the raw value after it is counted).  The
``file:`` SIGKILL case restores a checkpoint deliberately older than the kill (a copy
saved before the last round of traffic; no reset after it), so it must be exact, and
``/metrics`` must not open below what was exported before the kill.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_accountant_cli.demo.store import ClusterStore
from tests.support.deployment import Deployment, assert_not_lower
from tests.support.etcd_server import SKIP_REASON as ETCD_SKIP
from tests.support.etcd_server import EtcdServer, etcd_available
from tests.support.processes import Processes, processes
from tests.support.serving import ready
from tests.support.simulated import Expected, SimulatedCluster, accounting_series
from tests.support.waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _deploy(
    run: Processes, tmp_path: Path, store: ClusterStore, checkpoint: str
) -> Deployment[SimulatedCluster]:
    sim = SimulatedCluster(tmp_path, store)
    args = ["--retired-grace", "1", "--expire-interval", "0.2"]
    if checkpoint:
        args += ["--checkpoint", checkpoint, "--checkpoint-interval", "0.3"]
    deployment = Deployment.of(run, sim, *args)
    deployment.start()
    deployment.start_agents()
    return deployment


def _history(deployment: Deployment[SimulatedCluster]) -> None:
    """Traffic, a reset, a renamed policy, a deleted pod: each checked exactly."""
    sim, served = deployment.sim, deployment.served
    nodes = len(sim.nodes)
    deployment.step("round 1")

    catalog = next(w for w in sim.cluster.workloads if w.app == "catalog")
    sim.rerender(
        sim.rewritten("knp.default.allow-frontend-to-catalog", "shop", 8081),
        reset_chains=frozenset({f"cali-tw-{catalog.interface}"}),
    )
    moment = time.time()  # after the tables are written: a read stamped later reads them
    sim.publish()
    served.wait_reads_after(moment, nodes)
    resets = served.metric("calico_accountant_node_counter_resets_total")
    assert sum(resets.values()) > 0, "the rewrite and the zeroed chain must be seen as resets"
    deployment.step("after a reset")

    sim.rerender(sim.renamed("allow-checkout-to-payments-api", "payments", "checkout-to-payments-api"))
    moment = time.time()
    sim.publish()
    served.wait_reads_after(moment, nodes)
    served.wait_resolved()
    deployment.step("after a renamed policy")

    cart = next(w for w in sim.cluster.workloads if w.app == "cart")
    sim.rerender(sim.without(cart.pod))  # felix removes the pod's chains first
    moment = time.time()
    served.wait_reads_after(moment, nodes)
    sim.publish()
    text = deployment.step("after a deleted pod")
    assert f'pod="{cart.pod}"' not in text, "the deleted pod's workload series must go"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group
        for process in group.started:  # agents first: the aggregator then stops without a grace period
            if process.name.startswith("agent-"):
                process.stop()


@pytest.fixture
def etcd_or_skip() -> Iterator[EtcdServer]:
    if not etcd_available():
        pytest.skip(ETCD_SKIP)
    with EtcdServer() as server:
        yield server


@pytest.mark.parametrize(
    "store_kind, how",
    [("file", signal.SIGTERM), ("file", signal.SIGKILL), ("etcd", signal.SIGKILL)],
    ids=["file-sigterm", "file-sigkill-older-checkpoint", "etcd-sigkill"],
)
def test_a_restart_with_a_checkpoint_continues_exactly(
    run: Processes, tmp_path: Path, request: pytest.FixtureRequest, store_kind: str, how: signal.Signals
) -> None:
    datastore, checkpoint = None, f"file:{tmp_path / 'checkpoint'}"
    if store_kind == "etcd":
        etcd: EtcdServer = request.getfixturevalue("etcd_or_skip")
        datastore, checkpoint = f"etcd://{etcd.endpoint}", "etcd"
    with ClusterStore(datastore) as store:
        deployment = _deploy(run, tmp_path, store, checkpoint)
        _history(deployment)
        served, sim = deployment.served, deployment.sim

        older = tmp_path / "older-checkpoint"
        if how is signal.SIGKILL and store_kind == "file":
            served.wait_checkpoint()
            shutil.copyfile(tmp_path / "checkpoint", older)
            deployment.step("after the checkpoint kept aside")  # increments the kept checkpoint lacks
        before = accounting_series(served.scrape())
        late = sim.nodes[-1]
        assert deployment.agents[late].stop() == 0  # this node's agent comes back after the aggregator
        assert deployment.replicas["aggregator"].stop(how) == (0 if how is signal.SIGTERM else -how)
        if older.exists():
            shutil.copyfile(older, tmp_path / "checkpoint")  # as if killed right after it was written
        sim.traffic(1)  # the kernel counts while the aggregator is away
        restarted = deployment.start()

        # Ingest is served, /metrics is not: the restored values of the late node may be
        # below what was exported before; they are current once its agent has reported.
        assert ready(restarted.health_port)[0] == 200
        closed_until = time.monotonic() + 1.0
        while time.monotonic() < closed_until:
            with pytest.raises(OSError):
                served.scrape()
            time.sleep(0.05)
        deployment.start_agent(late)
        first = wait_until(served.scrape, timeout=20, interval=0.01, what="/metrics after the restart")
        assert_not_lower(before, first, "the first scrape after the restart")
        served.wait_exact(sim.expected, "after the restart (traffic while away included)")
        text = deployment.step("a round after the restart")
        assert_not_lower(before, text, "after the restart")
        restored = served.metric("calico_accountant_checkpoint_restores_total")
        assert restored[(("outcome", "restored"),)] == 1


def test_a_restart_without_a_checkpoint_counts_from_zero(run: Processes, tmp_path: Path) -> None:
    with ClusterStore(None) as store:
        deployment = _deploy(run, tmp_path, store, "")
        served, sim = deployment.served, deployment.sim
        deployment.step("round 1")
        assert any(accounting_series(served.scrape()).values())
        assert deployment.replicas["aggregator"].stop(signal.SIGTERM) == 0
        sim.traffic(1, counted=False)  # nobody counts this: the next start is a new baseline
        sim.expected = Expected(gone=sim.expected.gone)
        deployment.start()
        served.wait_reads_after(time.time(), len(sim.nodes))
        after = accounting_series(served.scrape())
        assert not [series for series, value in after.items() if value], "a restart counts from zero"
        deployment.step("a round after the restart")
