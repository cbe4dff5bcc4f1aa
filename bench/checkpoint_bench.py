"""What a checkpoint costs at a million series: size, capture (under the lock), encode,
write (file and etcd), restore.

    .venv/bin/python -m bench.checkpoint_bench [--series 1000000] [--pods 1000 --policies 40]
                                               [--no-etcd] [--repeat 3]

An :class:`~aggregator.accountant.Accountant` is filled the way the exposition scale test
does it (``tests/test_exposition.py::test_scale_1000_pods_40_policies``): per node, ``pods``
pods x ``policies`` policies x 2 directions, an accept and a deny counter each plus a
no-policy drop per pod and direction, resolved by a fake catalog; nodes are added until
the exported series (label sets, each a packets and a bytes sample) reach ``--series``.

Measured, ``--repeat`` times each (best and worst shown where they differ):

* the capture alone, :meth:`Accountant.capture` with the garbage collector as it is (what
  the keeper did before :func:`calico_accountant.runtime.heap.collector_paused`) -- it runs under the
  accountant's lock, so ingest waits for it;
* :meth:`CheckpointKeeper.write` as the aggregator runs it (capture and encoding with the
  collector paused, then the write) into a :class:`FileCheckpointStore` in a temporary
  directory (``$BENCH_DIR`` or the default) and an :class:`EtcdCheckpointStore` in a real
  etcd on loopback (``tests.support.etcd_server``; data in /dev/shm when available), with the
  longest wait of a small snapshot applied in a loop on another thread meanwhile;
* :meth:`CheckpointKeeper.restore` into a fresh accountant: load, decode, restore (what a
  restarted aggregator, or a standby taking over, does before it serves);
* a full garbage collection of the process at this size (it holds the GIL: every thread,
  the event loop with the leader's keep-alives included, waits for it).

A measurement, not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aetcd import rpc

from aggregator.accountant import Accountant
from aggregator.checkpoint.etcd import EtcdCheckpointStore
from aggregator.checkpoint.file import FileCheckpointStore
from aggregator.checkpoint.keeper import CheckpointKeeper, RestoreOutcome, WriteFigures
from aggregator.checkpoint.stores import CheckpointStore
from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.spec import EtcdSpec, parse_datastore_spec
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from calico_accountant.records import CounterRecord, Direction
from tests.support.accounting import FakeCatalog, accept, deny, no_policy_drop, snapshot
from tests.support.etcd_server import EtcdServer, etcd_available

_T = TypeVar("_T")


def _node_records(pods: int, policies: int, bump: int) -> list[CounterRecord]:
    records = []
    for pod in range(pods):
        iface = f"cali{pod:011x}"
        for direction in (Direction.INGRESS, Direction.EGRESS):
            prefix = "cali-pi-" if direction is Direction.INGRESS else "cali-po-"
            for policy in range(policies):
                chain = f"{prefix}_policy{policy:03d}"
                ids = (f"r{pod}-{policy}",)
                records.append(accept(iface, chain, pod + policy + bump, direction=direction, ids=ids))
                records.append(
                    deny(iface, chain, policy + bump, direction=direction, ids=(f"j{pod}", *ids, f"n{pod}"))
                )
            records.append(no_policy_drop(iface, pod + bump, direction=direction))
    return records


def _catalog(nodes: int, pods: int, policies: int) -> FakeCatalog:
    catalog = FakeCatalog()
    for node in range(nodes):
        for pod in range(pods):
            catalog.add_pod(
                f"node-{node}", f"cali{pod:011x}", f"ns{pod % 50}", f"pod-{node}-{pod}", f"app{pod % 20}"
            )
    for policy in range(policies):
        for prefix in ("cali-pi-", "cali-po-"):
            catalog.add_policy(f"{prefix}_policy{policy:03d}", f"policy-{policy}", f"ns{policy % 50}")
    return catalog


def _accountant(catalog: FakeCatalog) -> Accountant:
    limits = Limits(max_nodes=1000, max_counters_per_node=10_000_000)
    return Accountant(catalog, ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE, limits=limits))


def build(target: int, pods: int, policies: int) -> tuple[Accountant, FakeCatalog, int]:
    """An accountant with at least ``target`` series; the counters it holds."""
    first, moved = _node_records(pods, policies, 0), _node_records(pods, policies, 5)
    probe = _accountant(_catalog(1, pods, policies))
    probe.apply(snapshot("node-0", first), 0)
    per_node = probe.view(0).series_count
    nodes = max(1, -(-target // per_node))
    catalog = _catalog(nodes, pods, policies)
    accountant = _accountant(catalog)
    for node in range(nodes):
        accountant.apply(snapshot(f"node-{node}", first, sequence=1), 1)
        accountant.apply(snapshot(f"node-{node}", moved, sequence=2), 2)
    return accountant, catalog, nodes * len(first)


def timed(repeat: int, work: Callable[[], _T]) -> tuple[list[float], _T]:
    """Each run's seconds (the garbage collector left on, as in the aggregator)."""
    times, results = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        results.append(work())
        times.append(time.perf_counter() - started)
    return times, results[-1]


def best(repeat: int, work: Callable[[], _T]) -> tuple[float, _T]:
    times, result = timed(repeat, work)
    return min(times), result


class IngestProbe:
    """Small snapshots of another node applied in a loop on a thread: the longest wait."""

    def __init__(self, accountant: Accountant) -> None:
        self.accountant = accountant
        self.sequence = itertools.count(1)
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ingest)

    def _ingest(self) -> None:
        records = [accept("cali0", "cali-pi-_policy000", 1)]
        while not self._stop.is_set():
            started = time.perf_counter()
            self.accountant.apply(snapshot("probe", records, sequence=next(self.sequence)), 3)
            self.waits.append(time.perf_counter() - started)
            time.sleep(0.001)

    def __enter__(self) -> IngestProbe:
        self.waits.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._ingest)
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def longest(self) -> float:
        return max(self.waits)


@dataclass
class StoreFigures:
    writes: list[WriteFigures]
    ingest_wait: float
    restores: list[float]
    growth: int | None = None
    """etcd's database growth over the writes, in bytes (etcd keeps every revision until compacted)."""


def measure_store(
    accountant: Accountant,
    catalog: FakeCatalog,
    store: Callable[[], CheckpointStore],
    probe: IngestProbe,
    repeat: int,
) -> StoreFigures:
    async def measure() -> StoreFigures:
        keeper = CheckpointKeeper(accountant, store())
        writes = [await keeper.write() for _ in range(repeat - 1)]
        with probe:
            writes.append(await keeper.write())
        await keeper.store.close()
        restores = []
        for _ in range(repeat):
            fresh = CheckpointKeeper(_accountant(catalog), store())
            started = time.perf_counter()
            assert await fresh.restore() is RestoreOutcome.RESTORED
            restores.append(time.perf_counter() - started)
            await fresh.store.close()
        return StoreFigures(writes, probe.longest, restores)

    return asyncio.run(measure())


async def _etcd_db_size(spec: EtcdSpec) -> int:
    channel = EtcdChannel(spec)
    try:
        status = await rpc.MaintenanceStub(channel.get()).Status(rpc.StatusRequest(), timeout=10)
        return int(status.dbSize)
    finally:
        await channel.close()


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if high - low < 0.05 else f"{low:.2f}-{high:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--pods", type=int, default=1000, help="pods per node")
    parser.add_argument("--policies", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-etcd", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    accountant, catalog, counters = build(args.series, args.pods, args.policies)
    view = accountant.view(3)
    print(
        f"state: {len(accountant.ledger.nodes())} nodes x {args.pods} pods x {args.policies} policies x 2 "
        f"directions: {counters:,} counters, {view.series_count:,} series "
        f"({2 * view.series_count:,} samples), built in {time.perf_counter() - started:.0f} s"
    )
    captures, _ = timed(args.repeat, accountant.capture)
    probe = IngestProbe(accountant)
    with probe:
        accountant.capture()
    waited = probe.longest
    views, _ = timed(args.repeat, lambda: accountant.view(3))
    print(
        f"capture with the collector as it is (before collector_paused): {_span(captures)} s under the lock "
        f"(a small snapshot of another node waited up to {waited:.2f} s); a scrape's copy under the "
        f"same lock: {_span(views)} s"
    )
    rows: list[tuple[str, StoreFigures]] = []
    with tempfile.TemporaryDirectory(
        prefix="checkpoint-bench-", dir=os.environ.get("BENCH_DIR")
    ) as directory:
        path = Path(directory) / "checkpoint"
        rows.append(
            (
                f"file {directory}",
                measure_store(accountant, catalog, lambda: FileCheckpointStore(path), probe, args.repeat),
            )
        )
    if not args.no_etcd and etcd_available():
        with EtcdServer() as etcd:
            spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
            assert isinstance(spec, EtcdSpec)
            before = asyncio.run(_etcd_db_size(spec))
            figures = measure_store(
                accountant, catalog, lambda: EtcdCheckpointStore(spec), probe, args.repeat
            )
            figures.growth = asyncio.run(_etcd_db_size(spec)) - before
            rows.append(("etcd, loopback", figures))
    size = rows[0][1].writes[-1].size
    print(f"checkpoint: {size / 1e6:.1f} MB ({size / max(1, view.series_count):.1f} bytes per series)")
    print(
        f"{'store':<34} {'capture s':>10} {'encode s':>10} {'write s':>9} "
        f"{'ingest wait s':>14} {'restore s':>10}"
    )
    for name, figures in rows:
        print(
            f"{name[:34]:<34} {_span([f.capture for f in figures.writes]):>10} "
            f"{_span([f.encode for f in figures.writes]):>10} {_span([f.save for f in figures.writes]):>9} "
            f"{figures.ingest_wait:>14.2f} {_span(figures.restores):>10}"
        )
        if figures.growth is not None:
            writes = len(figures.writes)
            print(
                f"  etcd database grew {figures.growth / 1e6:.0f} MB over {writes} checkpoints "
                f"({figures.growth / writes / 1e6:.1f} MB each: old generations are deleted, but etcd keeps "
                "every revision until it is compacted)"
            )
    started = time.perf_counter()
    gc.collect()
    print(f"a full garbage collection at this size: {time.perf_counter() - started:.2f} s (holding the GIL)")


if __name__ == "__main__":
    main()
