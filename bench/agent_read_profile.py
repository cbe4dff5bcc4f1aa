"""Where an agent's read goes, stage by stage, in one process (no aggregator, no gRPC).

Run from the repository root::

    .venv/bin/python -m bench.agent_read_profile [--steady 6] [--pool 3300] [--quick]

The agent's own read path, as ``node_agent.agent`` runs it: a :class:`~node_agent.reader.NodeReader`
with the agent's parser (``reader._default_parser()``) running a real ``cat`` of a file that
this script replaces before each read with the node's next table (the same sequence as
``bench/churn_bench.py``: one workload in ten moving per steady read, one pod's chains gone
then back).  After each read it builds what the streamer sends (``compute_delta`` and
``build_snapshot``), as the agent does between reads.  Per read it prints:

* ``read``: :attr:`NodeRead.seconds`, what ``calico_accountant_agent_read_duration_seconds``
  observes;
* inside it: ``cmd`` (``cat`` and reading its pipe), ``parse`` (decoding included), and the
  garbage collector's passes that fell inside the read (ms, generation);
* after it: the delta (records changed) and the snapshot build, and the collector's passes
  that fell there.

Everything runs in this one process, so the figures are the code's own cost without the
aggregator and gRPC competing for the GIL and the cores; ``bench/churn_bench.py`` measures
the same sequence from outside a real agent.  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.churn_bench import Tables, _replace
from calico_accountant.records import CounterKey, CounterRecord, ParseResult
from calico_accountant.wire.delta import compute_delta
from calico_accountant.wire.snapshots import build_snapshot
from node_agent import reader as reader_module
from tests.support.felix_render import render_restore, sized_model

_Pass = tuple[float, int]


class Collections:
    """The collector's passes (seconds, generation) since the last :meth:`take`."""

    def __init__(self) -> None:
        self.passes: list[_Pass] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.passes.append((time.perf_counter() - self._started, info["generation"]))

    def take(self) -> list[_Pass]:
        taken, self.passes = self.passes, []
        return taken


def _shown(passes: list[_Pass]) -> str:
    big = [f"{seconds * 1000:.0f}/g{generation}" for seconds, generation in passes if seconds >= 0.002]
    return f"{sum(seconds for seconds, _ in passes) * 1000:5.1f}" + (f" [{' '.join(big)}]" if big else "")


class Timings:
    """The parser's and the command runner's time in the current read."""

    def __init__(self) -> None:
        self.parse = 0.0
        self.command = 0.0

    def timed_parser(self, parser: Any) -> Any:
        parse = parser.parse

        def timed(inputs: Any) -> ParseResult:
            started = time.perf_counter()
            try:
                result: ParseResult = parse(inputs)
                return result
            finally:
                self.parse = time.perf_counter() - started

        parser.parse = timed
        return parser

    def timed_runner(
        self, runner: Callable[[str, float], Awaitable[reader_module.CommandOutput]]
    ) -> Callable[[str, float], Awaitable[reader_module.CommandOutput]]:
        async def timed(command: str, timeout: float) -> reader_module.CommandOutput:
            started = time.perf_counter()
            try:
                return await runner(command, timeout)
            finally:
                self.command = time.perf_counter() - started

        return timed


async def profile(text: str, plan: list[str], directory: Path) -> None:
    tables = Tables(text)
    path = directory / "node.save"
    collections = Collections()
    timings = Timings()
    node_reader = reader_module.NodeReader(
        [f"cat {path}"],
        parser=timings.timed_parser(reader_module._default_parser()),
        runner=timings.timed_runner(reader_module.run_command),
    )
    gone = tables.interfaces[len(tables.interfaces) // 2]
    acked: dict[CounterKey, CounterRecord] | None = None
    gc.callbacks.append(collections)
    try:
        for step, kind in enumerate(plan):
            if kind == "gone":
                tables.hide(gone)
            elif kind == "back":
                tables.hide(None)
            elif kind == "steady":
                tables.move(step)
            _replace(path, tables.text())
            collections.take()
            read = await node_reader.read()
            in_read = collections.take()
            started = time.perf_counter()
            if acked is None:
                records, removed = list(read.records.values()), []
            else:
                delta = compute_delta(acked, read.records)
                records, removed = list(delta.changed), list(delta.removed)
            delta_seconds = time.perf_counter() - started
            build_snapshot(
                node="profile",
                agent_instance_id="profile",
                sequence=step + 1,
                read_time=read.read_time,
                full=acked is None,
                records=records,
                removed=removed,
                sources=read.sources,
                diagnostic_counts=read.diagnostic_totals,
                diagnostics=read.result.diagnostics[:20],
                agent_version="bench",
            )
            snapshot_seconds = time.perf_counter() - started - delta_seconds
            acked = dict(read.records)
            print(
                f"{step:3} {kind:<7} read {read.seconds * 1000:6.1f} = cmd {timings.command * 1000:5.1f}"
                f" + parse {timings.parse * 1000:6.1f} + other"
                f" {(read.seconds - timings.command - timings.parse) * 1000:5.1f} (gc {_shown(in_read)})"
                f" | delta {delta_seconds * 1000:5.1f} ({len(records)})"
                f" snapshot {snapshot_seconds * 1000:5.1f}"
                f" gc {_shown(collections.take())}  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        gc.callbacks.remove(collections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steady", type=int, default=6, help="steady reads before each churn (default 6)")
    parser.add_argument("--pool", type=int, default=3300, help="policies in the pool (default 3300)")
    parser.add_argument("--quick", action="store_true", help="a 250 x 20 node from a pool of 800")
    args = parser.parse_args(argv)
    pods, policies, pool = (250, 20, 800) if args.quick else (1000, 40, args.pool)
    text = render_restore(sized_model(pods, policies, seed=1, pool=pool)).text
    print(f"node {pods}x{policies}, pool {pool}: {text.count(chr(10))} lines, {len(text) / 1e6:.1f} MB (ms)")
    steady = ["steady"] * args.steady
    plan = ["cold", "steady", *steady, "gone", *steady, "back", *steady]
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(profile(text, plan, Path(directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
