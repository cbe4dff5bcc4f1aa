"""The least pure Python can spend on a first snapshot's counter, next to what the aggregator spends.

    .venv/bin/python -m bench.first_snapshot_floor [--nodes 40] [--repeat 3]

The issue's reconnect target (5,000 agents' first full snapshots applied in under 2 minutes)
is ~23 M counters of :mod:`bench.cluster_shape` in 120 s: ~5.2 us of one core a counter,
from outside.  This script times, in this process and in thread CPU time (best of
``--repeat``), only what no aggregator built on today's wire format and today's exported
series can skip, each written as plainly as Python allows:

* ``read``: every field of every ``Counter`` message a decoder must read (kind, family,
  direction, interface, chain, tier, rule index, action, endpoint kind, packets, bytes, key
  id), into one tuple a counter;
* ``store``: each counter kept by its key (one dict entry), its values in two lists;
* ``route``: the counter's label values at the app, node and cluster levels (the pod's
  namespace and app and the policy's names looked up once per interface and chain, in plain
  dicts), its three series found in three dicts (all exist: the series of a restart), and the
  three slots kept in one tuple.

No validation, no interning, no resolution through the catalog, no holder counts, no
per-run names kept for re-routing, no ids, no hits.  Then, on the same messages, what the
aggregator's own code spends (:func:`~calico_accountant.wire.snapshots.decode_snapshot`
and :meth:`~aggregator.accountant.Accountant.apply`).  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from aggregator.accountant import Accountant
from aggregator.series.options import SeriesOptions, parse_levels
from bench.cluster_shape import Shape, catalog
from bench.first_snapshot_bench import empty_ledger, prepared
from calico_accountant.runtime.heap import freeze_when_grown
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.snapshots import decode_snapshot

Fields = tuple[int, int, int, str, str, str, int, str, int, int, int, int]


def _best(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        run()
        best = min(best, time.thread_time() - started)
    return best


def _read(messages: list[pb.NodeSnapshot]) -> list[list[Fields]]:
    return [
        [
            (c.kind, c.family, c.direction, c.interface, c.chain, c.tier, c.rule_index, c.action, c.endpoint,
             c.packets, c.bytes, c.key_id)
            for c in message.counters
        ]
        for message in messages
    ]  # fmt: skip


def _store(nodes: list[list[Fields]]) -> None:
    for fields in nodes:
        row_of: dict[tuple[object, ...], int] = {}
        packets: list[int] = []
        octets: list[int] = []
        for counter in fields:
            row_of[counter[:9]] = len(packets)
            packets.append(counter[9])
            octets.append(counter[10])


class _Routing:
    """The names by interface and chain, and the three levels' series, as plain dicts."""

    def __init__(self, shape: Shape, nodes: list[list[Fields]]) -> None:
        names = catalog(shape)
        self.nodes = nodes
        self.workloads: dict[tuple[int, str], tuple[str, str]] = {}
        self.policies: dict[str, tuple[str, str, str]] = {}
        for node, fields in enumerate(nodes):
            for counter in fields:
                interface, chain = counter[3], counter[4]
                if (node, interface) not in self.workloads:
                    workload = names.workload(f"node-{node}", interface)
                    self.workloads[(node, interface)] = (workload.namespace, workload.app)
                if chain and chain not in self.policies:
                    policy = names.policy(chain)
                    self.policies[chain] = (str(policy.kind), policy.namespace, policy.name)
        self.series: tuple[dict[tuple[object, ...], int], ...] = ({}, {}, {})

    def route(self) -> None:
        app_series, node_series, cluster_series = self.series
        routes = []
        workloads, policies = self.workloads, self.policies
        for node, fields in enumerate(self.nodes):
            name = f"node-{node}"
            for counter in fields:
                namespace, app = workloads[(node, counter[3])]
                direction, kind, tier = counter[2], counter[0], counter[5]
                policy = policies.get(counter[4])
                if policy is None:
                    at_app: tuple[object, ...] = (namespace, app, direction, tier)
                    at_node: tuple[object, ...] = (name, direction)
                    at_cluster: tuple[object, ...] = (namespace, app, direction)
                else:
                    at_app = (namespace, app, direction, kind, tier, *policy)
                    at_node = (name, direction, kind, tier, *policy)
                    at_cluster = (direction, kind, tier, *policy)
                first = app_series.get(at_app)
                if first is None:
                    first = app_series[at_app] = len(app_series)
                second = node_series.get(at_node)
                if second is None:
                    second = node_series[at_node] = len(node_series)
                third = cluster_series.get(at_cluster)
                if third is None:
                    third = cluster_series[at_cluster] = len(cluster_series)
                routes.append((first, second, third))


def _aggregator(shape: Shape, messages: list[pb.NodeSnapshot], repeat: int) -> tuple[float, float]:
    """Seconds of thread CPU the aggregator's decode and apply take, best of ``repeat``."""
    best_decode = best_apply = float("inf")
    for _ in range(repeat):
        options = SeriesOptions(levels=parse_levels("app,node,cluster"))
        accountant = Accountant(catalog(shape), ledger=empty_ledger(), options=options)
        decoding = applying = 0.0
        for message in messages:
            started = time.thread_time()
            update = decode_snapshot(message)
            decoded = time.thread_time()
            accountant.apply(update, 0.0)
            applying += time.thread_time() - decoded
            decoding += decoded - started
            freeze_when_grown()  # as the aggregator does after full snapshots
        best_decode, best_apply = min(best_decode, decoding), min(best_apply, applying)
        del accountant
        gc.collect()
    return best_decode, best_apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape, messages, counters = prepared(args.nodes)
    nodes = _read(messages)
    routing = _Routing(shape, nodes)
    routing.route()  # the series exist, as after the first node of each app and policy
    gc.disable()  # the floor's own lists would be scanned again and again
    try:
        floor = {
            "read": _best(args.repeat, lambda: _read(messages)),
            "store": _best(args.repeat, lambda: _store(nodes)),
            "route": _best(args.repeat, routing.route),
        }
    finally:
        gc.enable()
    decode, apply = _aggregator(shape, messages, args.repeat)
    heading = f"{args.nodes} nodes, {counters:,} counters, levels app,node,cluster"
    print(f"{heading}; us a counter, best of {args.repeat}:")
    for stage, took in floor.items():
        print(f"  floor: {stage:<14} {took / counters * 1e6:6.2f}")
    print(f"  floor: {'all':<14} {sum(floor.values()) / counters * 1e6:6.2f}")
    print(f"  aggregator: decode {decode / counters * 1e6:6.2f}")
    print(f"  aggregator: apply  {apply / counters * 1e6:6.2f}")
    print(f"  aggregator: all    {(decode + apply) / counters * 1e6:6.2f}")


if __name__ == "__main__":
    main()
