"""Agents sharded over two aggregator processes by node, against a real etcd (and Leases).

Two replicas run ``--shards etcd`` (each registers under its lease); a third aggregator,
unsharded, gets the same nodes' reads from agents of its own.  Every agent of the sharded
install points at ONE replica, as they would at a Service.

* every node ends up on its ring owner (the other replica redirected it), each shard holds
  and exports only its own nodes;
* after traffic, the two shards' node- and cluster-level series, summed, equal the single
  aggregator's exactly (and the traffic was counted: the sums moved);
* the replica the agents do not point at is stopped with SIGTERM: it deregisters, its nodes
  move to the other, which continues their node series from their first snapshot there;
  the cluster-level totals of the shards (the stopped one's last plus the survivor's) still
  equal the single aggregator's after more traffic;
* the stopped replica comes back under its name: the other hands its nodes back, it
  continues its cluster-level series from its own checkpoint, and the sums still match;
* a replica whose flags cannot shard (no etcd datastore) does not start;
* ``--shards kubernetes``: a Lease per shard in the stand-in API server keeps the member set,
  and a SIGKILLed shard's nodes move once its Lease was not renewed for its TTL.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from aggregator.shard.kubernetes import ADDRESS_ANNOTATION, shard_lease_name
from aggregator.shard.ring import owner_of
from calico_accountant_cli.demo.store import ClusterStore
from tests.support.etcd_server import SKIP_REASON as ETCD_SKIP
from tests.support.etcd_server import EtcdServer, etcd_available
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import KubeClusterStore
from tests.support.ports import free_port
from tests.support.processes import Processes, processes
from tests.support.serving import Served
from tests.support.shards import (
    Series,
    etcd_datastore,
    level_series,
    members,
    nodes_held,
    split_identities,
    start_shard,
    summed,
)
from tests.support.simulated import SimulatedCluster
from tests.support.waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
needs_etcd = pytest.mark.skipif(not etcd_available(), reason=ETCD_SKIP)

INTERVAL = "0.2"
CHECKPOINTS = ("--checkpoint", "etcd", "--checkpoint-interval", "0.5")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def _node_labels(series: Series) -> set[str]:
    return {dict(labels)["node"] for name, labels in series if name.startswith("calico_accountant_node_")}


def _cluster(series: Series) -> Series:
    return {key: value for key, value in series.items() if key[0].startswith("calico_accountant_cluster_")}


def _by_node(series: Series) -> dict[str, Series]:
    """Each node's non-zero node-level series."""
    out: dict[str, Series] = {}
    for key, value in series.items():
        if value and key[0].startswith("calico_accountant_node_"):
            out.setdefault(dict(key[1])["node"], {})[key] = value
    return out


def _counted_on_each(now: Series, since: Series, nodes: Iterable[str]) -> bool:
    """Every one of ``nodes`` counted something after ``since``.  A round of traffic is one
    write of each table, which an agent reads whole and the aggregator applies at once: a
    node's series that moved hold its whole round.  (The cluster-level totals cannot tell
    which nodes were counted: node-c reads node-a's table and node-d node-b's, so an
    aggregator that counted node-a's round but not node-c's has the totals of one that
    counted node-c's but not node-a's.)"""
    now_by, since_by = _by_node(now), _by_node(since)
    return all(now_by.get(node) != since_by.get(node) for node in nodes)


def _plus(*parts: Series) -> Series:
    total: Series = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


@needs_etcd
def test_two_shards_split_the_nodes_and_sum_to_one_aggregator(
    etcd: EtcdServer, run: Processes, tmp_path: Path
) -> None:
    with ClusterStore(f"etcd://{etcd.endpoint}") as store:
        sim = SimulatedCluster(tmp_path, store)
        sim.traffic(2, counted=False)
        # Two more nodes reading copies of the sample nodes' tables: four to split.
        dumps = {"node-a": "node-a", "node-b": "node-b", "node-c": "node-a", "node-d": "node-b"}
        nodes = tuple(dumps)
        first, second = split_identities(nodes)
        a, served_a = start_shard(run, etcd_datastore(etcd), first, *CHECKPOINTS)
        b, served_b = start_shard(run, etcd_datastore(etcd), second, *CHECKPOINTS)
        single = Served(free_port(), free_port())
        run.aggregator(
            single.grpc_port, single.metrics_port, "--datastore", f"etcd://{etcd.endpoint}", name="single"
        )
        for served in (served_a, served_b, single):
            served.wait_serving()
        wait_until(lambda: members(served_a) == 2 and members(served_b) == 2, what="both see two members")

        for node, dump in dumps.items():
            command = sim.command(dump)
            run.agent(
                node, served_a.grpc_port, [command], "--interval", INTERVAL, name=f"agent-shards-{node}"
            )
            run.agent(node, single.grpc_port, [command], "--interval", INTERVAL, name=f"agent-single-{node}")

        owners = {node: owner_of(node, (first, second)) for node in nodes}
        mine = {
            first: {n for n, o in owners.items() if o == first},
            second: {n for n, o in owners.items() if o == second},
        }
        assert mine[first] and mine[second]
        wait_until(
            lambda: (
                nodes_held(served_a.grpc_port) == dict.fromkeys(mine[first], True)
                and nodes_held(served_b.grpc_port) == dict.fromkeys(mine[second], True)
                and set(nodes_held(single.grpc_port)) == set(nodes)
            ),
            timeout=30,
            what="every node on its ring owner",
        )
        assert served_a.metric("calico_accountant_shard_redirects_total").get((("owner", second),), 0) >= len(
            mine[second]
        )

        before = level_series(single.scrape())
        sim.traffic(1)
        # Every node's traffic, not just some: the shards must equal the single aggregator
        # with the whole round counted, as one of them stops next (its last series final).
        wait_until(
            lambda: _counted_on_each(level_series(single.scrape()), before, nodes),
            what="the single aggregator counted the traffic of every node",
        )

        def shards_equal_single() -> bool:
            return summed([served_a.scrape(), served_b.scrape()]) == level_series(single.scrape())

        wait_until(shards_equal_single, timeout=30, what="the shards' sums equal the single aggregator's")
        reference = level_series(single.scrape())
        assert sum(_cluster(reference).values()) > sum(_cluster(before).values())
        for served, identity in ((served_a, first), (served_b, second)):
            assert _node_labels(level_series(served.scrape())) <= mine[identity], identity

        # The replica the agents do not point at stops: its nodes move to the other one.
        last_b = level_series(served_b.scrape())
        assert b.stop() == 0
        wait_until(lambda: members(served_a) == 1, what="the survivor sees one member")
        wait_until(
            lambda: nodes_held(served_a.grpc_port) == dict.fromkeys(nodes, True),
            timeout=30,
            what="every node on the survivor",
        )
        # Nothing in flight: every agent's read of the last traffic was applied (above, and
        # the moved nodes' first snapshots on the survivor, their baselines, came after).
        moved_from, survivor_from = level_series(single.scrape()), level_series(served_a.scrape())
        sim.traffic(1)

        def survivor_counted() -> tuple[Series, Series] | None:
            now_single, now_a = level_series(single.scrape()), level_series(served_a.scrape())
            counted = _counted_on_each(now_single, moved_from, nodes) and _counted_on_each(
                now_a, survivor_from, nodes
            )
            return (now_single, now_a) if counted else None

        now_single, now_a = wait_until(
            survivor_counted, timeout=30, what="the single aggregator and the survivor counted every node"
        )
        assert _cluster(_plus(now_a, last_b)) == _cluster(now_single)
        assert _node_labels(now_a) == set(nodes)
        moved = {
            key: value - moved_from.get(key, 0.0)
            for key, value in now_single.items()
            if key[0].startswith("calico_accountant_node_") and dict(key[1])["node"] in mine[second]
        }
        counted_there = {
            key: value
            for key, value in now_a.items()
            if key[0].startswith("calico_accountant_node_") and dict(key[1])["node"] in mine[second]
        }
        assert any(moved.values())
        # A moved node's series start over on its new shard (a counter reset per instance).
        assert {k: v for k, v in counted_there.items() if v} == {k: v for k, v in moved.items() if v}

        # The stopped shard comes back under its name: the survivor hands its nodes back, it
        # continues its cluster-level series from its own checkpoint (exactly where it stopped)
        # and its restored nodes start afresh; the shards still sum to the single aggregator.
        b, served_b = start_shard(run, etcd_datastore(etcd), second, *CHECKPOINTS)
        served_b.wait_serving()
        wait_until(lambda: members(served_a) == 2, what="the survivor sees the shard back")
        wait_until(
            lambda: (
                nodes_held(served_a.grpc_port) == dict.fromkeys(mine[first], True)
                and nodes_held(served_b.grpc_port) == dict.fromkeys(mine[second], True)
            ),
            timeout=30,
            what="the nodes back on their owners",
        )
        assert served_a.metric("calico_accountant_shard_handed_over_nodes_total")[()] == len(mine[second])
        assert _cluster(level_series(served_b.scrape())) == _cluster(last_b)
        back_from = level_series(single.scrape())
        back_from_a, back_from_b = level_series(served_a.scrape()), level_series(served_b.scrape())
        sim.traffic(1)

        def shards_counted_again() -> tuple[Series, Series] | None:
            now_single = level_series(single.scrape())
            now_a, now_b = level_series(served_a.scrape()), level_series(served_b.scrape())
            counted = (
                _counted_on_each(now_single, back_from, nodes)
                and _counted_on_each(now_a, back_from_a, mine[first])
                and _counted_on_each(now_b, back_from_b, mine[second])
            )
            return (now_single, _plus(now_a, now_b)) if counted else None

        now_single, shards = wait_until(
            shards_counted_again, timeout=30, what="the single aggregator and both shards counted every node"
        )
        assert _cluster(shards) == _cluster(now_single)
        assert _node_labels(level_series(served_b.scrape())) == mine[second]
        assert b.stop() == 0
        assert a.stop() == 0


def test_sharding_needs_an_etcd_datastore(run: Processes, tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("[]\n")
    process = run.aggregator(free_port(), free_port(), "--datastore", f"file:{cluster}", "--shards", "etcd")
    assert process.popen.wait(timeout=30) != 0
    assert "--shards etcd keeps the member set in the datastore's etcd" in process.output()


def test_on_the_kubernetes_api_a_lease_per_shard_keeps_the_member_set(run: Processes, tmp_path: Path) -> None:
    """``--shards kubernetes`` against the stand-in API server (:mod:`tests.support.kube_api`,
    NOT a kube-apiserver): each shard keeps a Lease with its address; agents pointing at one
    shard end up on their owners; a SIGKILLed shard (no clean deregistration) drops out once
    its Lease has not been renewed for its TTL, and its nodes move to the other."""
    with KubeApiServer(tmp_path / "kube-api") as api:
        store = KubeClusterStore(api)
        sim = SimulatedCluster(tmp_path, store)
        dumps = {"node-a": "node-a", "node-b": "node-b", "node-c": "node-a", "node-d": "node-b"}
        nodes = tuple(dumps)
        first, second = split_identities(nodes)
        a, served_a = start_shard(run, store.args, first, backend="kubernetes")
        b, served_b = start_shard(run, store.args, second, backend="kubernetes")
        for served in (served_a, served_b):
            served.wait_serving()
        wait_until(lambda: members(served_a) == 2 and members(served_b) == 2, what="both see two members")
        for identity, served in ((first, served_a), (second, served_b)):
            lease = api.store.current(
                "/apis/coordination.k8s.io/v1/leases", ("calico-accountant", shard_lease_name(identity))
            )
            assert lease is not None and lease["spec"]["holderIdentity"] == identity
            assert lease["metadata"]["annotations"][ADDRESS_ANNOTATION] == served.target
        for node, dump in dumps.items():
            run.agent(node, served_a.grpc_port, [sim.command(dump)], "--interval", INTERVAL)
        owners = {node: owner_of(node, (first, second)) for node in nodes}
        wait_until(
            lambda: (
                nodes_held(served_a.grpc_port) == {n: True for n, o in owners.items() if o == first}
                and nodes_held(served_b.grpc_port) == {n: True for n, o in owners.items() if o == second}
            ),
            timeout=30,
            what="every node on its ring owner",
        )
        b.stop(signal.SIGKILL)
        wait_until(lambda: members(served_a) == 1, timeout=10, what="the killed shard's Lease expiring")
        wait_until(
            lambda: nodes_held(served_a.grpc_port) == dict.fromkeys(nodes, True),
            timeout=30,
            what="every node on the survivor",
        )
        assert a.stop() == 0
        gone = api.store.current(
            "/apis/coordination.k8s.io/v1/leases", ("calico-accountant", shard_lease_name(first))
        )
        assert gone is None  # a clean stop deletes the Lease
