"""What one read costs a real agent, in steady state and when one pod's chains come or go.

Run from the repository root::

    .venv/bin/python -m bench.churn_bench [--steady 6] [--cycles 1] [--interval 2] [--pool 3300] [--quick]

A real aggregator (no datastore) and a real agent process on loopback.  The agent's save
command is ``cat`` of a file that this script replaces after each read with the node's next
table, so each read gets a new one:

* steady reads: the same rules; the counters of one workload in ten move (the endpoint
  chains of the workloads whose index is the read's number modulo 10 are scaled up); the
  first ``--warmup`` of them are left out of the figures (the first builds the fast path's
  template; meanwhile the aggregator applies the first full snapshot, competing for the cores);
* churn reads: one pod's chains gone (every line naming its interface: its chains'
  declarations and rules and the dispatch jumps to them), then, a few reads later, back;
  ``--cycles`` times (on a shared machine one churn read is one sample of a noisy time:
  several cycles give a median).

The node is ``sized_model(1000, 40, pool=--pool)``: with the default pool of 3,300 policies
it has ~4,950 distinct policy chains (``--quick``: 250 x 20 from a pool of 800).  Each read's
time is the agent's own ``calico_accountant_agent_read_duration_seconds`` (its ``_sum`` and
``_count`` scraped after every read): running ``cat``, reading the pipe, decoding and parsing.
Printed: every read's time with its kind, the median steady read, each churn read and the
ratio churn / steady (the issue's target: at most 2), the medians of the churn reads and of
the reads after them, with the machine's load average.

A measurement, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.felix_render import render_restore, sized_model
from tests.support.ports import free_port
from tests.support.processes import processes
from tests.support.scrape import http_get
from tests.support.waits import wait_until

_COUNTERS = re.compile(r"^\[([0-9]+):([0-9]+)\]")
_ENDPOINT_RULE = re.compile(r"^\[[0-9]+:[0-9]+\] -A cali-[tf]w-(\S+) ")
_METRIC = "calico_accountant_agent_read_duration_seconds"


class Tables:
    """The node's successive tables: one group of workloads in ten moves at each read."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.base = self.lines[:]
        interfaces: dict[str, int] = {}
        self.by_group: list[list[int]] = [[] for _ in range(10)]
        for index, line in enumerate(self.lines):
            match = _ENDPOINT_RULE.match(line)
            if match:
                group = interfaces.setdefault(match[1], len(interfaces)) % 10
                self.by_group[group].append(index)
        self.interfaces = list(interfaces)
        self.moves = [1] * 10
        self.hidden: set[int] = set()

    def move(self, step: int) -> None:
        """Scale the counters of group ``step % 10``'s endpoint chains up once more
        (scaling keeps every deny, entered - accepted - next, at or above zero)."""
        group = step % 10
        self.moves[group] += 1
        factor = self.moves[group]
        for index in self.by_group[group]:
            line = self.base[index]
            match = _COUNTERS.match(line)
            assert match is not None
            self.lines[index] = f"[{int(match[1]) * factor}:{int(match[2]) * factor}]{line[match.end() :]}"

    def hide(self, interface: str | None) -> None:
        """Leave out every line naming ``interface`` (None: show them all again)."""
        self.hidden = (
            set()
            if interface is None
            else {index for index, line in enumerate(self.base) if interface in line}
        )

    def text(self) -> str:
        if not self.hidden:
            return "\n".join(self.lines)
        return "\n".join(line for index, line in enumerate(self.lines) if index not in self.hidden)


@dataclass
class Read:
    kind: str
    seconds: float
    load: float


def _scrape(port: int) -> tuple[float, int]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    if status != 200:
        return 0.0, 0
    total = count = 0.0
    for line in body.splitlines():
        if line.startswith(_METRIC + "_sum "):
            total = float(line.split()[1])
        elif line.startswith(_METRIC + "_count "):
            count = float(line.split()[1])
    return total, int(count)


def _read_since(port: int, count: int) -> bool:
    """Whether the agent has made a read since its ``count``-th."""
    return _scrape(port)[1] > count


def _replace(path: Path, text: str) -> None:
    temporary = path.with_suffix(".next")
    temporary.write_text(text)
    os.replace(temporary, path)


def run(text: str, plan: list[str], interval: float, directory: Path) -> list[Read]:
    """Read by read: write the table for ``plan[i]``, wait for the agent's read, record it."""
    tables = Tables(text)
    current = directory / "node.save"
    _replace(current, tables.text())
    grpc, metrics = free_port(), free_port()
    reads: list[Read] = []
    with processes(directory) as group:
        group.aggregator(grpc, metrics)
        _, port = group.agent(
            "churn-node", grpc, [f"cat {current}"], "--interval", str(interval), "--no-ipv6"
        )
        wait_until(lambda: _scrape(port)[1] >= 1, timeout=120)
        last_sum, last_count = _scrape(port)
        reads.append(Read("cold", last_sum, os.getloadavg()[0]))
        gone = tables.interfaces[len(tables.interfaces) // 2]
        for step, kind in enumerate(plan, start=1):
            if kind == "gone":
                tables.hide(gone)
            elif kind == "back":
                tables.hide(None)
            else:  # steady, warm-up and after-churn reads
                tables.move(step)
            _replace(current, tables.text())
            wait_until(functools.partial(_read_since, port, last_count), timeout=60 + interval, interval=0.05)
            total, count = _scrape(port)
            if count != last_count + 1:
                raise RuntimeError(f"expected one read, the agent made {count - last_count}")
            reads.append(Read(kind, total - last_sum, os.getloadavg()[0]))
            print(f"  read {step:2}: {kind:<7} {reads[-1].seconds * 1000:7.1f} ms  load {reads[-1].load:.2f}")
            last_sum, last_count = total, count
    return reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steady", type=int, default=6, help="steady reads before each churn (default 6)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="steady reads left out first, while the aggregator applies the first snapshot (default 5)",
    )
    parser.add_argument("--cycles", type=int, default=1, help="pod gone and back this many times (default 1)")
    parser.add_argument("--interval", type=float, default=2.0, help="the agent's --interval (default 2)")
    parser.add_argument("--pool", type=int, default=3300, help="policies in the pool (default 3300)")
    parser.add_argument("--quick", action="store_true", help="a 250 x 20 node from a pool of 800")
    args = parser.parse_args(argv)
    pods, policies, pool = (250, 20, 800) if args.quick else (1000, 40, args.pool)
    text = render_restore(sized_model(pods, policies, seed=1, pool=pool)).text
    print(f"node {pods}x{policies}, pool {pool}: {text.count(chr(10))} lines, {len(text) / 1e6:.1f} MB")
    steady = ["steady"] * args.steady
    # "after": the read after a churn one, which builds the fast path's template again.
    cycle = [*steady, "gone", "after", *steady, "back", "after"]
    plan = ["warmup"] * args.warmup + cycle * args.cycles + steady
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        reads = run(text, plan, args.interval, Path(directory))
    # Warm-up reads are left out: the first one builds the fast path's template, and while
    # they run the aggregator applies the first full snapshot, competing for the cores.
    steady_times = [read.seconds for read in reads if read.kind == "steady"]
    median = statistics.median(steady_times)
    print(f"\nsteady: median {median * 1000:.1f} ms over {len(steady_times)} reads")
    for index, read in enumerate(reads):
        if read.kind in ("gone", "back"):
            after = reads[index + 1].seconds if index + 1 < len(reads) else float("nan")
            print(
                f"churn ({read.kind}): {read.seconds * 1000:.1f} ms = {read.seconds / median:.1f} x steady; "
                f"the read after it {after * 1000:.1f} ms = {after / median:.1f} x steady"
            )
    for kind in ("gone", "back"):
        churn = [index for index, read in enumerate(reads) if read.kind == kind]
        if len(churn) > 1:
            churn_median = statistics.median(reads[index].seconds for index in churn)
            after_median = statistics.median(
                reads[index + 1].seconds for index in churn if index + 1 < len(reads)
            )
            print(
                f"churn ({kind}), median of {len(churn)}: {churn_median * 1000:.1f} ms = "
                f"{churn_median / median:.2f} x steady; the read after it {after_median * 1000:.1f} ms = "
                f"{after_median / median:.2f} x steady"
            )
    loads = [read.load for read in reads]
    middle = statistics.median(loads)
    print(f"load average during the reads: {min(loads):.2f}-{max(loads):.2f} (median {middle:.2f})")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
