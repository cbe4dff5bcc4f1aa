"""What forgetting nodes costs: a shard handing nodes over, housekeeping expiring them.

    .venv/bin/python -m bench.forget_bench [--nodes 200] [--forget 20] [--levels workload,node,cluster]

An accountant is filled with ``--nodes`` nodes of :mod:`bench.cluster_shape` (each node's
first full snapshot), then ``--forget`` of them are forgotten twice over, on two identical
accountants: all in one call (:meth:`Accountant.forget_nodes`, what a hand-over and
housekeeping do) and one node a call (what they did before).  Every series labelled with a
node is looked at once per call, so one call for all of them pays that pass once.  Seconds
of the accountant's lock held, printed; nothing asserted.
"""

from __future__ import annotations

import argparse
import gc
import time

from aggregator.accountant import Accountant
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from bench.cluster_shape import Shape, catalog, node_records
from tests.support.accounting import snapshot


def _filled(shape: Shape, levels: str) -> Accountant:
    accountant = Accountant(
        catalog(shape),
        ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE, limits=Limits(max_counters=100_000_000)),
        options=SeriesOptions(levels=parse_levels(levels)),
    )
    for node in range(shape.nodes):
        accountant.apply(snapshot(f"node-{node}", node_records(shape, node, 0), sequence=1), 1.0)
    gc.collect()
    gc.freeze()  # as the aggregator does after full snapshots
    return accountant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--forget", type=int, default=20)
    parser.add_argument("--levels", default="workload,node,cluster")
    args = parser.parse_args()
    shape = Shape(args.nodes)
    gone = [f"node-{node}" for node in range(args.forget)]
    for mode in ("at once", "one a call"):
        accountant = _filled(shape, args.levels)
        series = accountant.view(2.0).series_count
        started = time.perf_counter()
        if mode == "at once":
            removed = accountant.forget_nodes(gone)
        else:
            removed = sum(accountant.forget_nodes([node]) for node in gone)
        took = time.perf_counter() - started
        print(
            f"{args.nodes} nodes, {series:,} series ({args.levels}): {args.forget} nodes forgotten {mode} "
            f"in {took:.2f} s ({took / args.forget * 1000:.0f} ms a node), {removed:,} series removed"
        )
        del accountant
        gc.unfreeze()
        gc.collect()


if __name__ == "__main__":
    main()
