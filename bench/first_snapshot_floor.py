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


def read_counters(message: pb.NodeSnapshot) -> list[Fields]:
    """Every field of every counter of ``message`` a decoder must read, a tuple a counter."""
    return [
        (c.kind, c.family, c.direction, c.interface, c.chain, c.tier, c.rule_index, c.action, c.endpoint,
         c.packets, c.bytes, c.key_id)
        for c in message.counters
    ]  # fmt: skip


def store(fields: list[Fields]) -> tuple[dict[tuple[object, ...], int], list[int], list[int]]:
    """One node's counters kept: each key's row (one dict entry), the values in two lists."""
    row_of: dict[tuple[object, ...], int] = {}
    packets: list[int] = []
    octets: list[int] = []
    for counter in fields:
        row_of[counter[:9]] = len(packets)
        packets.append(counter[9])
        octets.append(counter[10])
    return row_of, packets, octets


class FloorRouting:
    """The names by interface and chain of every node of ``shape``, and the three levels'
    series, as plain dicts (made before any counter is routed: a lookup is then one dict get)."""

    def __init__(self, shape: Shape) -> None:
        names = catalog(shape)
        self.workloads = {where: (w.namespace, w.app) for where, w in names.workloads.items()}
        """(node, interface) -> (namespace, app)."""
        self.policies = {chain: (str(p.kind), p.namespace, p.name) for chain, p in names.policies.items()}
        self.series: tuple[dict[tuple[object, ...], int], ...] = ({}, {}, {})

    def route(self, node: str, fields: list[Fields]) -> list[tuple[int, int, int]]:
        """The three series (app, node, cluster) of each counter of ``node``, made when new, in order."""
        app_series, node_series, cluster_series = self.series
        routes = []
        workloads, policies = self.workloads, self.policies
        for counter in fields:
            namespace, app = workloads[(node, counter[3])]
            direction, kind, tier = counter[2], counter[0], counter[5]
            policy = policies.get(counter[4])
            if policy is None:
                at_app: tuple[object, ...] = (namespace, app, direction, tier)
                at_node: tuple[object, ...] = (node, direction)
                at_cluster: tuple[object, ...] = (namespace, app, direction)
            else:
                at_app = (namespace, app, direction, kind, tier, *policy)
                at_node = (node, direction, kind, tier, *policy)
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
        return routes


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
    nodes = [read_counters(message) for message in messages]
    routing = FloorRouting(shape)

    def route_all() -> None:
        for node, fields in enumerate(nodes):
            routing.route(f"node-{node}", fields)

    route_all()  # the series exist, as after the first node of each app and policy
    gc.disable()  # the floor's own lists would be scanned again and again
    try:
        floor = {
            "read": _best(args.repeat, lambda: [read_counters(message) for message in messages]),
            "store": _best(args.repeat, lambda: [store(fields) for fields in nodes]),
            "route": _best(args.repeat, route_all),
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
