"""The cold parse as a whole process, next to a Go port of the original's algorithm.

Run from the repository root::

    .venv/bin/python -m bench.parser_vs_go [--runs 7] [--quick]

Needs the Go toolchain (Debian: ``apt-get install golang-go``; a benchmark-only tool, not a
dependency of the project); without ``go`` on the PATH the Go column is skipped with a
message.  ``bench/go_monzo/`` is a port of monzo/calico-accountant's two-pass regex parser
(its header names the source); it is built offline into a temporary directory (standard
library only).

Two dumps, rendered by ``tests.support.felix_render.sized_model`` (layout v3.30, IPv4):

* ``1000x40``: 1000 pods x 40 policies each from a pool of 160 (the issue's reference dump);
* ``many``: 1000 pods x 40 policies each from a pool of 3,300: ~4,950 distinct policy chains
  on the node, as in a cluster with thousands of policies (``--quick``: pool 800).

For each it prints (best of ``--runs``; the machine's load average with each figure, as a
shared machine's noise only adds time):

* whole-process times: ``calico-accountant parse --format summary FILE`` and the Go binary on
  FILE, each minus its own start-up (the same command on a one-pod dump), wall and CPU
  (user + system, from ``wait4``), and their ratio (the issue's target: at most 0.8).  The
  commands run interleaved, one of each per round, so all see the same spells of load;
  ``--baseline DIR`` times another checkout's CLI in the same rounds (e.g. ``git archive
  main | tar -x -C DIR``: before/after in one run);
* in-process: the cold parse (``parse_node`` on a fresh parser) and the steady state (a
  ``SteadyStateParser`` re-reading dumps of the same rules with new counters), in M lines/s.

A measurement, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import render_restore, sized_model

ROOT = Path(__file__).resolve().parent.parent
GO_SOURCE = ROOT / "bench" / "go_monzo"
CLI_COMMAND = Path(sys.executable).parent / "calico-accountant"
TARGET_RATIO = 0.8


@dataclass(frozen=True)
class Dump:
    name: str
    pods: int
    policies: int
    pool: int | None


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def report(what: str, figure: str) -> None:
    print(f"  {what:<28}{figure}  {load()}", flush=True)


def best(function: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` runs (noise on a shared machine only adds time)."""
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def build_go(directory: Path) -> Path | None:
    """The Go port built into ``directory``; None (with a message) without ``go``."""
    go = shutil.which("go")
    if go is None:
        print("go not found: the Go port is skipped (Debian: apt-get install golang-go)", file=sys.stderr)
        return None
    binary = directory / "monzo"
    environment = {
        **os.environ,
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOCACHE": str(directory / "gocache"),
        "GOPATH": str(directory / "gopath"),
    }
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=GO_SOURCE, env=environment, check=True)
    return binary


@dataclass
class Timed:
    """One command's best wall and CPU (user + system) seconds over the runs."""

    argv: list[str]
    env: dict[str, str] | None = None
    wall: float = float("inf")
    cpu: float = float("inf")

    def run(self) -> None:
        process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, env=self.env)
        start = time.perf_counter()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"{self.argv} exited with status {status}")
        self.wall = min(self.wall, wall)
        self.cpu = min(self.cpu, usage.ru_utime + usage.ru_stime)


def interleaved(commands: list[Timed], runs: int) -> None:
    """Each command once per round, ``runs`` rounds after a warm-up round: every command
    sees the same spells of load from the machine's other users."""
    for command in commands:
        command.run()
    for command in commands:
        command.wall = command.cpu = float("inf")
    for _ in range(runs):
        for command in commands:
            command.run()


def cli(path: Path, checkout: Path | None = None) -> Timed:
    """``calico-accountant parse --format summary PATH``, of this checkout or ``checkout``."""
    command = [str(CLI_COMMAND)] if CLI_COMMAND.exists() else [sys.executable, "-m", "calico_accountant_cli"]
    env = None if checkout is None else {**os.environ, "PYTHONPATH": str(checkout)}
    return Timed([*command, "parse", "--format", "summary", str(path)], env)


def net(big: Timed, small: Timed) -> str:
    return (
        f"{(big.wall - small.wall) * 1000:7.1f} ms net wall, {(big.cpu - small.cpu) * 1000:6.1f} ms net CPU "
        f"(start-up {small.wall * 1000:.1f} / {small.cpu * 1000:.1f})"
    )


def steady_seconds(dump: Dump, text: str, runs: int) -> float:
    model = sized_model(dump.pods, dump.policies, seed=1, pool=dump.pool)
    later = [render_restore(model.with_options(flow_seed=1000 + step)).text for step in range(runs)]
    parser = SteadyStateParser()
    parser.parse([("ipv4", text)])
    times = []
    for other in later:
        gc.collect()
        start = time.perf_counter()
        parser.parse([("ipv4", other)])
        times.append(time.perf_counter() - start)
    return min(times)


def measure(
    dump: Dump, runs: int, go: Path | None, directory: Path, tiny: Path, baseline: Path | None
) -> None:
    text = render_restore(sized_model(dump.pods, dump.policies, seed=1, pool=dump.pool)).text
    path = directory / f"{dump.name}.save"
    path.write_text(text)
    lines = text.count("\n")
    chains = sum(1 for line in text.splitlines() if line.startswith((":cali-pi-", ":cali-po-")))
    records = len(parse_node([("ipv4", text)]).records)
    size = f"{lines} lines, {len(text) / 1e6:.1f} MB"
    print(f"\n{dump.name}: {size}, {chains} policy chains, {records} records")

    pairs = {"this checkout": (cli(path), cli(tiny))}
    if baseline is not None:
        pairs[f"baseline {baseline}"] = (cli(path, baseline), cli(tiny, baseline))
    if go is not None:
        pairs["Go port of monzo's parser"] = (Timed([str(go), str(path)]), Timed([str(go), str(tiny)]))
    interleaved([command for pair in pairs.values() for command in pair], runs)
    for what, (big, small) in pairs.items():
        report(what if what.startswith("Go") else f"CLI, {what}", net(big, small))
    if go is not None:
        go_big, go_small = pairs["Go port of monzo's parser"]
        for what, (big, small) in pairs.items():
            if what.startswith("Go"):
                continue
            wall = (big.wall - small.wall) / (go_big.wall - go_small.wall)
            cpu = (big.cpu - small.cpu) / (go_big.cpu - go_small.cpu)
            verdict = "meets" if wall <= TARGET_RATIO else "MISSES"
            print(
                f"  ratio CLI / Go, {what}: wall {wall:.2f} ({verdict} the {TARGET_RATIO} target), "
                f"CPU {cpu:.2f}"
            )

    gc.collect()
    cold = best(lambda: parse_node([("ipv4", text)]), runs)
    report("in-process cold", f"{cold * 1000:7.1f} ms  {lines / cold / 1e6:.2f} M lines/s")
    steady = steady_seconds(dump, text, max(3, runs // 2))
    report("in-process steady", f"{steady * 1000:7.1f} ms  {lines / steady / 1e6:.2f} M lines/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="runs per figure, the best is kept (default 7)")
    parser.add_argument("--quick", action="store_true", help="smaller dumps (250 pods x 20 policies)")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose CLI is timed too, interleaved (PYTHONPATH)"
    )
    args = parser.parse_args(argv)
    dumps = (
        [Dump("250x20", 250, 20, None), Dump("many-250x20", 250, 20, 800)]
        if args.quick
        else [Dump("1000x40", 1000, 40, None), Dump("many", 1000, 40, 3300)]
    )
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.runs}")
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        go = build_go(directory)
        tiny = directory / "tiny.save"
        tiny.write_text(render_restore(sized_model(1, 1, seed=1)).text)
        for dump in dumps:
            measure(dump, args.runs, go, directory, tiny, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
