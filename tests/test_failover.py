"""Two aggregator replicas sharing a real etcd: one serves, the other takes over.

Both replicas run ``--leader-election etcd --checkpoint etcd`` with the same gRPC and
``/metrics`` ports and a health port each; the agents and the scrapes use the shared
address, which only the leader listens on.  The traffic is simulated on the sample
cluster (:mod:`tests.support.simulated`); the oracle is the traffic.

* the standby answers ``/readyz`` with 503 and holds neither shared port;
* the leader is SIGKILLed while traffic moves: the standby takes over (its ``/readyz`` is
  200 and it serves gRPC) in well under 15 s -- the time is measured and printed -- and once
  the agents have reconnected every series is exact (the traffic during the failover
  included) and none is lower than before the kill;
* the old leader comes back as a standby; the new leader is stopped with SIGTERM: it
  writes its last checkpoint and resigns, so the standby takes over without waiting for
  the lease's TTL, and the totals are exact again;
* a leader that cannot renew its lease (etcd stopped) stops serving and exits with status
  3 within the TTL; when etcd is back the standby takes over;
* the same with ``--datastore kubernetes --leader-election kubernetes --checkpoint kubernetes``
  against the stand-in API server (a Lease, ConfigMaps);
* ``--leader-election etcd`` without an etcd datastore and checkpoint does not start.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.election.base import EXIT_LEADERSHIP_LOST
from calico_accountant_cli.demo.store import ClusterStore
from tests.support.deployment import Deployment, assert_not_lower
from tests.support.etcd_server import SKIP_REASON as ETCD_SKIP
from tests.support.etcd_server import EtcdServer, etcd_available
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import KubeClusterStore
from tests.support.processes import REPO, Process, Processes, processes
from tests.support.serving import ready
from tests.support.simulated import SimulatedCluster, accounting_series
from tests.support.waits import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not etcd_available(), reason=ETCD_SKIP),
]

HA = ("--leader-election", "etcd", "--checkpoint", "etcd", "--checkpoint-interval", "0.5")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group
        for process in group.started:
            if process.name.startswith("agent-"):
                process.stop()


def _standing_by(replica: Process) -> None:
    wait_until(
        lambda: (found := ready(replica.health_port))[0] == 503 and found[1].startswith("standby"),
        timeout=20,
        what=f"{replica.name} standing by",
    )


def _listeners(port: int) -> str:
    """``ss``'s line for whoever listens on ``port`` (with its pid)."""
    found = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return found.stdout


def _takeover(deployment: Deployment[SimulatedCluster], standby: Process) -> None:
    """Until ``standby`` is ready and the shared gRPC address answers."""

    def serving() -> bool:
        if ready(standby.health_port)[0] != 200:
            return False
        deployment.served.wait_serving(timeout=1)
        return True

    wait_until(serving, timeout=30, interval=0.02, what=f"{standby.name} serving")


def _kill_then_stop_the_leader(
    deployment: Deployment[SimulatedCluster], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the leader while traffic moves, bring it back as a standby, SIGTERM the new
    leader: both takeovers are measured, every series is exact after each and never lower."""
    served, sim = deployment.served, deployment.sim
    a = deployment.start("replica-a")
    b = deployment.start("replica-b", serving=False)
    _standing_by(b)
    assert ready(a.health_port)[0] == 200
    if shutil.which("ss"):
        for port in (served.grpc_port, served.metrics_port):
            holders = _listeners(port)
            assert f"pid={a.popen.pid}," in holders and f"pid={b.popen.pid}," not in holders
    deployment.start_agents()
    deployment.step("round 1")
    assert served.metric("calico_accountant_leader")[()] == 1
    deployment.step("round 2")
    # A node the last checkpoint does not know is counted from its next snapshot (the SIGKILL
    # bound): kill only once a checkpoint holding both nodes' counters is current.
    counted = time.time()
    wait_until(
        lambda: served.metric("calico_accountant_checkpoint_last_success_timestamp_seconds")[()] > counted,
        timeout=10,
        what="a checkpoint written after round 2",
    )

    before = accounting_series(served.scrape())
    killed = time.monotonic()
    a.stop(signal.SIGKILL)
    sim.traffic(1)  # during the failover
    _takeover(deployment, b)
    takeover = time.monotonic() - killed
    first = wait_until(served.scrape, timeout=20, interval=0.01, what="/metrics of the new leader")
    assert_not_lower(before, first, "the new leader's first scrape")
    served.wait_exact(sim.expected, "after the takeover (traffic during the failover included)")

    a = deployment.start("replica-a", serving=False)  # back, as a standby
    _standing_by(a)
    deployment.step("round 3")
    before = accounting_series(served.scrape())
    stopped = time.monotonic()
    assert b.stop(signal.SIGTERM) == 0
    _takeover(deployment, a)
    handover = time.monotonic() - stopped
    sim.traffic(1)
    text = served.wait_exact(sim.expected, "after the handover")
    assert_not_lower(before, text, "after the handover")
    with capsys.disabled():
        print(
            f"\n[failover, {backend}] leader SIGKILLed -> standby ready and serving gRPC: {takeover:.2f} s "
            f"(lease TTL 5 s); leader SIGTERMed (resigns) -> standby serving: {handover:.2f} s"
        )
    assert takeover < 15
    assert handover < 5  # no TTL to wait for: the leader resigned


def test_a_killed_leader_is_replaced_within_seconds_and_nothing_is_lost(
    etcd: EtcdServer, run: Processes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClusterStore(f"etcd://{etcd.endpoint}") as store:
        deployment = Deployment.of(run, SimulatedCluster(tmp_path, store), *HA, "--leader-lease-ttl", "5")
        _kill_then_stop_the_leader(deployment, "etcd", capsys)


def test_on_the_kubernetes_datastore_a_lease_elects_and_configmaps_keep_the_checkpoint(
    run: Processes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same failover with ``--datastore kubernetes``: the Lease and the checkpoint
    ConfigMaps in the stand-in API server (:mod:`tests.support.kube_api`, NOT a
    kube-apiserver), the catalog read from it."""
    with KubeApiServer(tmp_path / "kube-api") as api:
        store = KubeClusterStore(api)
        sim = SimulatedCluster(tmp_path, store)
        sim.traffic(2, counted=False)
        flags = (
            "--leader-election",
            "kubernetes",
            "--checkpoint",
            "kubernetes",
            "--checkpoint-interval",
            "0.5",
        )
        deployment = Deployment(run, sim, (*store.args, *flags, "--leader-lease-ttl", "5"))
        _kill_then_stop_the_leader(deployment, "kubernetes", capsys)
        pointer = api.store.current(
            "/api/v1/configmaps", ("calico-accountant", "calico-accountant-checkpoint")
        )
        assert pointer is not None and int(pointer["data"]["chunks"]) >= 1


def test_a_leader_that_cannot_renew_its_lease_stops_serving_and_exits(
    etcd: EtcdServer, run: Processes, tmp_path: Path
) -> None:
    with ClusterStore(f"etcd://{etcd.endpoint}") as store:
        deployment = Deployment.of(run, SimulatedCluster(tmp_path, store), *HA, "--leader-lease-ttl", "2")
        a = deployment.start("replica-a")
        b = deployment.start("replica-b", serving=False)
        _standing_by(b)
        etcd.stop()
        stopped = time.monotonic()
        try:
            assert a.popen.wait(timeout=10) == EXIT_LEADERSHIP_LOST
            exited = time.monotonic() - stopped
            assert exited <= 3.0, f"the leader kept serving {exited:.1f} s without its lease (TTL 2 s)"
            assert "lost the leadership" in a.output()
            with pytest.raises(OSError):
                deployment.served.scrape()
            assert ready(b.health_port)[0] == 503
        finally:
            etcd.start()
        _takeover(deployment, b)


def test_leader_election_without_an_etcd_datastore_and_checkpoint_does_not_start(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "calico_accountant_cli", "aggregator", "--health-port", "0"]
    for extra, message in (
        (["--leader-election", "etcd"], "needs --datastore etcd://"),
        (
            [
                "--leader-election",
                "etcd",
                "--datastore",
                "etcd://127.0.0.1:1",
                "--checkpoint",
                f"file:{tmp_path}/c",
            ],
            "needs --checkpoint etcd",
        ),
    ):
        done = subprocess.run([*command, *extra], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
