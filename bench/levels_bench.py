"""What each ``--levels`` setting costs as a cluster grows: series, scrape size and time, memory.

    .venv/bin/python -m bench.levels_bench [--nodes 100,1000] [--levels LEVELS [LEVELS ...]]

The cluster of :mod:`bench.cluster_shape` (110 pods x 10 policies a node, apps of ~10
replicas across nodes).  Every node's first full snapshot is the baseline and a second,
with every counter moved, is counted.

Each (nodes, levels) is measured in a fresh process (so RSS is that setting's alone), the
state frozen after each node's snapshots as the aggregator does
(:mod:`calico_accountant.runtime.heap`): exported label sets (each a packets and a bytes
sample), stored counters, the RSS after applying and what it grew by per stored counter
(``B/ctr``: from the RSS before the first snapshot, the catalog already built), one full
garbage collection of everything (frozen included: what housekeeping ran before), the pause
housekeeping takes now (a collection of what is not frozen and ``malloc_trim``), the
scrape's copy under the lock and the text render as a scrape makes it (the first scrape, and
the best of ``--scrapes`` later ones: the label texts are made with the series, so the first
costs about what the others do), the text's size and its gzip'd
size (level 1, what a scrape with ``Accept-Encoding: gzip`` gets) and the time of such a scrape
(the best of ``--scrapes``; render and gzip together: each part is compressed in a second
thread while the next one is rendered), what a scraped aggregator keeps per stored counter
(``B/ctr scraped``: the RSS after the scrapes, their text freed), and the peak RSS while
rendering.  A measurement, not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time

from aggregator.accountant import Accountant
from aggregator.exposition.text import render_parts
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from bench.cluster_shape import NAMESPACES, PODS, POLICIES, REPLICAS, Shape, catalog, node_records
from calico_accountant.runtime.heap import freeze_long_lived
from calico_accountant.runtime.http import gzip_parts
from calico_accountant.runtime.process import release_free_memory
from tests.support.accounting import snapshot


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(nodes: int, levels: str, scrapes: int = 3) -> dict[str, float]:
    shape = Shape(nodes)
    names = catalog(shape)
    limits = Limits(max_nodes=nodes + 1, max_counters_per_node=1_000_000, max_counters=100_000_000)
    accountant = Accountant(
        names,
        ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE, limits=limits),
        options=SeriesOptions(levels=parse_levels(levels)),
    )
    gc.collect()
    rss_before = _rss_mib()
    started = time.perf_counter()
    counters = 0
    for node in range(nodes):
        first = node_records(shape, node, 0)
        counters += len(first)
        accountant.apply(snapshot(f"node-{node}", first, sequence=1), 1)
        accountant.apply(snapshot(f"node-{node}", node_records(shape, node, 5), sequence=2), 2)
        freeze_long_lived()  # as the aggregator does after each full snapshot
    applied = time.perf_counter() - started
    del names
    gc_started = time.perf_counter()
    gc.unfreeze()
    gc.collect()  # what one full collection of everything costs (housekeeping's, when streams ended)
    full_gc = time.perf_counter() - gc_started
    freeze_long_lived()
    started = time.perf_counter()
    release_free_memory(collect_cycles=True)
    housekeeping = time.perf_counter() - started
    rss_after_apply = _rss_mib()
    started = time.perf_counter()
    view = accountant.view(3)
    copied = time.perf_counter() - started
    started = time.perf_counter()
    parts = [part.encode() for part in render_parts(view)]  # what a scrape does (serving.py)
    rendered = time.perf_counter() - started
    del parts
    rendered_again = gzipped = float("inf")  # the best of ``scrapes`` (the machine is shared)
    for _ in range(scrapes):
        started = time.perf_counter()
        parts = [part.encode() for part in render_parts(view)]
        rendered_again = min(rendered_again, time.perf_counter() - started)
        started = time.perf_counter()
        zipped = gzip_parts(part.encode() for part in render_parts(view))  # a scrape asking for gzip
        gzipped = min(gzipped, time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text_mb, gzip_mb = sum(map(len, parts)) / 1e6, sum(map(len, zipped)) / 1e6
    series = view.series_count
    del parts, zipped, view
    release_free_memory(collect_cycles=True)
    rss_scraped = _rss_mib()  # what a scraped aggregator keeps: its state and what scrapes leave
    return {
        "nodes": nodes,
        "series": series,
        "counters": counters,
        "apply_s": applied,
        "rss_mib": rss_after_apply,
        "bytes_per_counter": (rss_after_apply - rss_before) * 2**20 / counters,
        "full_gc_s": full_gc,
        "housekeeping_s": housekeeping,
        "copy_s": copied,
        "render_s": rendered,
        "render_again_s": rendered_again,
        "text_mb": text_mb,
        "gzip_mb": gzip_mb,
        "rss_scraped_mib": rss_scraped,
        "bytes_per_counter_scraped": (rss_scraped - rss_before) * 2**20 / counters,
        "gzip_s": gzipped,
        "peak_rss_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="100,1000", help="comma-separated cluster sizes")
    parser.add_argument(
        "--levels", nargs="+", default=["workload,node,cluster", "app,node,cluster", "node,cluster"]
    )
    parser.add_argument("--scrapes", type=int, default=3, help="later scrapes timed; the best is shown")
    parser.add_argument("--one", nargs=2, metavar=("NODES", "LEVELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.scrapes)))
        return
    header = (
        f"{'nodes':>6} {'levels':<22} {'series':>10} {'counters':>10} {'B/ctr':>6} {'RSS MiB':>8} "
        f"{'B/ctr scraped':>13} "
        f"{'peak MiB':>8} {'apply s':>8} {'full GC s':>9} {'hk s':>5} {'copy s':>7} {'render s':>8} "
        f"{'again s':>7} {'text MB':>8} {'gzip MB':>8} {'scrape gz s':>11}"
    )
    print(f"node: {PODS} pods x {POLICIES} policies; ~{REPLICAS} replicas an app; {NAMESPACES} namespaces")
    print(header)
    for nodes in (int(n) for n in args.nodes.split(",")):
        for levels in args.levels:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.levels_bench",
                    "--one",
                    str(nodes),
                    levels,
                    "--scrapes",
                    str(args.scrapes),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(done.stdout)
            print(
                f"{nodes:>6} {levels:<22} {m['series']:>10,} {m['counters']:>10,} "
                f"{m['bytes_per_counter']:>6,.0f} {m['rss_mib']:>8,.0f} "
                f"{m['bytes_per_counter_scraped']:>13,.0f} {m['peak_rss_mib']:>8,.0f} "
                f"{m['apply_s']:>8.1f} {m['full_gc_s']:>9.2f} {m['housekeeping_s']:>5.2f} "
                f"{m['copy_s']:>7.2f} {m['render_s']:>8.2f} {m['render_again_s']:>7.2f} "
                f"{m['text_mb']:>8.1f} {m['gzip_mb']:>8.1f} {m['gzip_s']:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
