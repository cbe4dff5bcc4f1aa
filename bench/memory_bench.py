"""Where the aggregator's memory per stored counter goes: bytes and objects per counter, by
the line that allocated them (tracemalloc), and the objects the garbage collector tracks.

    .venv/bin/python -m bench.memory_bench [--nodes 20] [--levels app,node,cluster]

The cluster of :mod:`bench.cluster_shape`; each node's first full snapshot is the baseline
and a second moves every counter (as ``levels_bench``).  What the snapshots themselves hold
(the records a decoder or this benchmark builds) is freed before measuring.  A measurement,
not a test: nothing asserts a size.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections import Counter

from aggregator.accountant import Accountant
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from bench.cluster_shape import Shape, catalog, node_records
from tests.support.accounting import snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--levels", default="app,node,cluster")
    parser.add_argument("--top", type=int, default=15, help="allocation sites to list")
    args = parser.parse_args()
    shape = Shape(args.nodes)
    accountant = Accountant(
        catalog(shape),
        ledger=Ledger(
            first_snapshot=FirstSnapshot.BASELINE,
            limits=Limits(max_nodes=args.nodes + 1, max_counters=100_000_000),
        ),
        options=SeriesOptions(levels=parse_levels(args.levels)),
    )
    gc.collect()
    tracked_before = Counter(type(o).__name__ for o in gc.get_objects())
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    counters = 0
    for node in range(args.nodes):
        first = node_records(shape, node, 0)
        counters += len(first)
        accountant.apply(snapshot(f"node-{node}", first, sequence=1), 1)
        accountant.apply(snapshot(f"node-{node}", node_records(shape, node, 5), sequence=2), 2)
        del first
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    per = total / counters
    print(f"{args.nodes} nodes, {counters:,} counters, levels {args.levels}: {per:,.0f} B a counter")
    print(f"{'B/counter':>10} {'objects':>8}  allocated at")
    for stat in stats[: args.top]:
        print(f"{stat.size_diff / counters:>10,.1f} {stat.count_diff / counters:>8.2f}  {stat.traceback}")
    tracked = Counter(type(o).__name__ for o in gc.get_objects())
    tracked.subtract(tracked_before)
    print(f"objects the collector tracks: {sum(tracked.values()) / counters:.2f} a counter")
    for name, count in tracked.most_common(8):
        print(f"  {name}: {count / counters:.2f}")


if __name__ == "__main__":
    main()
