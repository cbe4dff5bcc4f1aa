"""Sharded aggregators in tests: replica identities that split given nodes, and the
accounting series a set of shards exports, summed as Prometheus sums them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from aggregator.shard.ring import owner_of
from calico_accountant_cli.hits_client import HitsClient
from tests.support.etcd_server import EtcdServer
from tests.support.ports import free_port
from tests.support.processes import Process, Processes
from tests.support.serving import Served
from tests.support.simulated import accounting_series

__all__ = [
    "Series",
    "etcd_datastore",
    "level_series",
    "members",
    "nodes_held",
    "split_identities",
    "start_shard",
    "summed",
]

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_LEVELS = ("calico_accountant_node_", "calico_accountant_cluster_")


def split_identities(nodes: Sequence[str], shards: int = 2) -> tuple[str, ...]:
    """The first ``shards`` identities (``shard-0``, ``shard-1`` ...) under which every
    shard owns the same number of ``nodes`` (give or take one)."""
    candidates = [f"shard-{index}" for index in range(12)]
    for chosen in itertools.combinations(candidates, shards):
        counts = [sum(1 for node in nodes if owner_of(node, chosen) == member) for member in chosen]
        if max(counts) - min(counts) <= 1 and min(counts) > 0:
            return chosen
    raise AssertionError(f"no {shards} identities split {nodes} evenly")


def level_series(exposition: str) -> Series:
    """The node- and cluster-level accounting series of one exposition."""
    return {key: value for key, value in accounting_series(exposition).items() if key[0].startswith(_LEVELS)}


def summed(expositions: Iterable[str]) -> Series:
    """Every shard's node- and cluster-level series, summed per name and labels (as
    ``sum without (instance)`` does)."""
    total: Series = {}
    for exposition in expositions:
        for key, value in level_series(exposition).items():
            total[key] = total.get(key, 0.0) + value
    return total


def nodes_held(grpc_port: int) -> dict[str, bool]:
    """ListNodes of one replica: node -> connected."""
    with HitsClient(f"127.0.0.1:{grpc_port}", timeout=3) as client:
        return {node.node: node.connected for node in client.list_nodes().nodes}


def start_shard(
    run: Processes, datastore: Sequence[str], identity: str, *extra: str, backend: str = "etcd"
) -> tuple[Process, Served]:
    """An aggregator on ``datastore`` (its flags) with ``--shards backend`` named ``identity``
    (its ``POD_NAME``), its lease TTL short (2 s), advertising its loopback gRPC address."""
    served = Served(free_port(), free_port())
    process = run.aggregator(
        served.grpc_port,
        served.metrics_port,
        *(*datastore, "--shards", backend, "--shard-lease-ttl", "2"),
        *("--advertise-address", served.target, *extra),
        name=identity,
        env={"POD_NAME": identity},
    )
    return process, served


def etcd_datastore(etcd: EtcdServer) -> tuple[str, ...]:
    return ("--datastore", f"etcd://{etcd.endpoint}")


def members(served: Served) -> float:
    """The replica's view of the member count (itself included)."""
    return served.metric("calico_accountant_shard_members").get((), 0.0)
