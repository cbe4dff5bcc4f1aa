"""Where a first full snapshot's counter goes: decoding, the ledger, each stage of routing.

    .venv/bin/python -m bench.first_snapshot_bench [--nodes 40] [--levels app,node,cluster] [--repeat 3]

What an aggregator pays per counter when every agent sends its first full snapshot (a start,
a restart without a checkpoint): ``--nodes`` nodes of :mod:`bench.cluster_shape`, encoded as
agents encode them (key ids defined), then, in this process and in thread CPU time (other
processes' load does not count, their effect on caches does), the best of ``--repeat``:

* ``decode``: :func:`~calico_accountant.wire.snapshots.decode_snapshot` of the parsed message;
* ``ledger``: :meth:`~aggregator.ledger.ledger.Ledger.applying` on an empty ledger;
* ``apply``: :meth:`~aggregator.accountant.Accountant.apply`, the ledger and the series together;
* the routing stages one after another over all counters (on a fresh series state): resolving
  (once per run of a workload's chain), every exported level's label sets, finding or creating
  the series and holding them, keeping the route.

The heap is frozen after each node as the aggregator does.  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime

from aggregator.accountant import Accountant
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from aggregator.series.routes import Slot
from aggregator.series.state import SeriesState
from bench.cluster_shape import Shape, catalog, node_records
from calico_accountant.runtime.heap import freeze_when_grown
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.delta import index_records
from calico_accountant.wire.keyed import KeyIds, encode_read
from calico_accountant.wire.snapshots import DecodedSnapshot, build_snapshot, decode_snapshot


def _messages(shape: Shape) -> list[pb.NodeSnapshot]:
    messages = []
    for node in range(shape.nodes):
        encoded = encode_read(KeyIds(), None, index_records(node_records(shape, node, 0)), by_id=True)
        message = build_snapshot(
            node=f"node-{node}", agent_instance_id=f"agent-{node}", sequence=1, read_time=datetime.now(UTC),
            full=True, records=encoded.defined, key_ids=encoded.defined_ids, values=encoded.values,
            removed=encoded.removed, removed_ids=encoded.removed_ids,
        )  # fmt: skip
        messages.append(pb.NodeSnapshot.FromString(message.SerializeToString()))
    return messages


def prepared(nodes: int) -> tuple[Shape, list[pb.NodeSnapshot], int]:
    """``nodes`` nodes' first snapshots as messages, and their counters; the heap frozen (what
    a run measures is then the only garbage the collector scans)."""
    shape = Shape(nodes)
    messages = _messages(shape)
    counters = sum(len(message.counters) for message in messages)
    gc.collect()
    gc.freeze()
    return shape, messages, counters


def empty_ledger() -> Ledger:
    return Ledger(first_snapshot=FirstSnapshot.BASELINE, limits=Limits(max_counters=100_000_000))


def _timed_pass(shape: Shape, levels: str, messages: list[pb.NodeSnapshot]) -> dict[str, float]:
    """Seconds of thread CPU per stage, summed over every node."""
    seconds = dict.fromkeys(("decode", "ledger", "apply"), 0.0)
    for message in messages:  # each decoded snapshot dropped at once, as ingest does
        started = time.thread_time()
        decode_snapshot(message)
        seconds["decode"] += time.thread_time() - started
    updates: list[DecodedSnapshot] = [decode_snapshot(message) for message in messages]
    ledger = empty_ledger()
    for update in updates:
        started = time.thread_time()
        for _ in ledger.applying(update, 0.0, 1000):
            pass
        seconds["ledger"] += time.thread_time() - started
        freeze_when_grown()
    options = SeriesOptions(levels=parse_levels(levels))
    accountant = Accountant(catalog(shape), ledger=empty_ledger(), options=options)
    for update in updates:
        started = time.thread_time()
        accountant.apply(update, 0.0)
        seconds["apply"] += time.thread_time() - started
        freeze_when_grown()
    seconds.update(_routing_stages(accountant.ledger, shape, options))
    return seconds


def _routing_stages(ledger: Ledger, shape: Shape, options: SeriesOptions) -> dict[str, float]:
    """Route every counter of ``ledger`` afresh, one stage at a time over all of them."""
    state = SeriesState(catalog(shape), options)
    router = state.router
    counters = [
        (node, row, counter, ledger.chain_comments(node))
        for node in ledger.node_names()
        for row, counter in ledger.node_rows(node)
    ]
    gc.disable()  # the stages' own lists would be scanned again and again
    try:
        started = time.thread_time()
        resolutions = [
            router.resolve(node, counter.key, counter.chain_comment, counter.group_members, comments)
            for node, _, counter, comments in counters
        ]
        resolved = time.thread_time()
        refs = [
            router.candidate_refs(resolution.names, counter.key)
            for resolution, (_, _, counter, _) in zip(resolutions, counters, strict=True)
        ]
        labelled = time.thread_time()
        slots: list[tuple[Slot, ...]] = []
        for counter_refs in refs:
            held = tuple(slot for slot in map(state._admit, counter_refs) if slot is not None)
            state._hold(held)
            slots.append(held)
        admitted = time.thread_time()
        for (node, row, _, _), resolution, held in zip(counters, resolutions, slots, strict=True):
            router.register(node, row, resolution, held)
        registered = time.thread_time()
    finally:
        gc.enable()
    return {
        "route: resolve": resolved - started,
        "route: label sets": labelled - resolved,
        "route: series found and held": admitted - labelled,
        "route: kept": registered - admitted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--levels", default="app,node,cluster")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape, messages, counters = prepared(args.nodes)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for stage, took in _timed_pass(shape, args.levels, messages).items():
            best[stage] = min(best.get(stage, took), took)
    heading = f"{args.nodes} nodes, {counters:,} counters, levels {args.levels}"
    print(f"{heading}; us a counter, best of {args.repeat}:")
    for stage, took in best.items():
        print(f"  {stage:<32} {took / counters * 1e6:6.2f}")
    routing = sum(took for stage, took in best.items() if stage.startswith("route"))
    print(f"  {'route: all stages':<32} {routing / counters * 1e6:6.2f}")


if __name__ == "__main__":
    main()
