"""Long-run fuzzing of the parser, the wire decoding and the ingest service (outside CI).

    .venv/bin/python -m bench.fuzz --target parser --inputs 500000
    .venv/bin/python -m bench.fuzz --target wire --inputs 1000000
    .venv/bin/python -m bench.fuzz --target ingest --inputs 40000
    .venv/bin/python -m bench.fuzz --target all     # each target in a fresh process, then a table
    .venv/bin/python -m bench.fuzz --target parser --atheris --inputs 200000   # coverage-guided
    .venv/bin/python -m bench.fuzz --target parser --seed 1 --replay 12345     # one input again

The inputs and the oracles are those of the CI fuzz tests (:mod:`tests.support.mutations`,
:mod:`tests.support.fuzzing`), drawn from a seeded random source: input ``i`` of seed ``s``
is always the same, so every failure is printed with the ``--replay`` command that runs it
again, and its bytes are saved under ``--failures``.

* parser: a seed dump (sample, real or rendered) mutated, then parsed by both paths (75 %);
  read by a steady-state parser after its undamaged self, twice (20 %); or given a huge
  line and parsed under tracemalloc, whose peak must stay under 32 bytes per input byte
  plus 64 KiB (5 %; these run last, in one tracemalloc session).
* wire: a stream of 1-4 messages (random bytes or fields, mutated, absurd, chunked, rarely
  a huge one) through one ``ChunkAssembler`` and ``decode_snapshot``.
* ingest: one whole stream per input (:func:`tests.support.mutations.ingest_stream`)
  against an in-process aggregator on 127.0.0.1; every 500 streams its state is checked
  against its caps, every 5000 and at the end a genuine agent's snapshots for a fresh node
  must be counted exactly.

A failure is any problem an oracle reports, an exception out of the code under test, a
``MemoryError`` (parser and wire run under an address-space cap, ``--max-memory-mb``), or
an input running longer than ``--timeout`` seconds (the watchdog prints the stacks and the
replay command, then exits 3).  Reported per target: inputs, seconds, inputs per second,
failures, peak RSS (``ru_maxrss``), the RSS at 1 %, 10 %, 50 % and 100 % of the run, and
the slowest input, so that growth (a leak) or a near-hang shows; progress lines every 30 s
add the RSS and Python's allocated blocks (``sys.getallocatedblocks``: objects a leak would
keep, whatever the allocator does with freed memory).  The last line of a run is
``FUZZ-RESULT {json}``.

``--atheris`` (parser, wire): coverage-guided with atheris/libFuzzer instead of the
mutators: node_agent and calico_accountant are instrumented, libFuzzer mutates a corpus
seeded with the same inputs, and any oracle problem is raised as a crash (libFuzzer then
writes the input to ``crash-*`` in the current directory).  libFuzzer prints its own
figures (``stat::peak_rss_mb`` ...).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("parser", "wire", "ingest")
DEFAULT_INPUTS = {"parser": 500_000, "wire": 1_000_000, "ingest": 40_000}
DEFAULT_TIMEOUT = {"parser": 20.0, "wire": 20.0, "ingest": 120.0}


def rss_mb() -> float:
    """Resident set size now (``VmRSS``), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def input_rng(seed: int, index: int) -> random.Random:
    """The random source of input ``index``: the same for every run with ``seed``."""
    return random.Random((seed << 40) | index)


@dataclass
class Report:
    target: str
    seed: int
    inputs: int = 0
    seconds: float = 0.0
    failures: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rss_samples: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    slowest: tuple[float, int] = (0.0, -1)
    """The longest any one input took (seconds) and its index: a near-hang shows here."""

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "seed": self.seed,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "inputs_per_second": round(self.inputs / self.seconds) if self.seconds else 0,
            "failures": self.failures,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_mb": {k: round(v, 1) for k, v in self.rss_samples.items()},
            "slowest_input": {"seconds": round(self.slowest[0], 3), "index": self.slowest[1]},
            "outcomes": dict(self.outcomes.most_common()),
            "notes": self.notes,
        }


class Watchdog:
    """Ends the process when one input runs longer than ``timeout`` seconds (a hang or
    an unbounded loop), after printing every thread's stack and the replay command."""

    def __init__(self, timeout: float, describe: Callable[[int], str]) -> None:
        self.timeout = timeout
        self.describe = describe
        self.index = -1
        self.started = time.monotonic()
        threading.Thread(target=self._watch, name="fuzz-watchdog", daemon=True).start()

    def begin(self, index: int) -> None:
        self.index, self.started = index, time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            if self.index >= 0 and time.monotonic() - self.started > self.timeout:
                print(f"\nTIMEOUT: input {self.index} ran over {self.timeout:g} s", flush=True)
                print(self.describe(self.index), flush=True)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(3)


class Run:
    """The loop every target shares: inputs, watchdog, failures, RSS samples, progress."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.report = Report(args.target, args.seed)
        self.failures_dir = Path(args.failures)
        self.shown = 0
        self.status: Callable[[], str] | None = None
        """More to print on each progress line (the ingest target: what the aggregator holds)."""

    def replay_command(self, index: int) -> str:
        return f"python -m bench.fuzz --target {self.args.target} --seed {self.args.seed} --replay {index}"

    def fail(self, index: int, problems: list[str], data: bytes | list[bytes] | None) -> None:
        self.report.failures += 1
        if self.shown < 20:
            self.shown += 1
            print(f"FAILURE input {index}: {'; '.join(p[:300] for p in problems[:3])}", flush=True)
            print(f"  replay: {self.replay_command(index)}", flush=True)
        if data is not None:
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            stem = self.failures_dir / f"{self.args.target}-{self.args.seed}-{index}"
            blob = data if isinstance(data, bytes) else b"".join(len(m).to_bytes(4, "big") + m for m in data)
            stem.with_suffix(".bin").write_bytes(blob)
            stem.with_suffix(".txt").write_text("\n".join(problems) + "\n")

    def loop(
        self, one: Callable[[int], None], indices: Sequence[int], check: Callable[[int], None] | None = None
    ) -> None:
        """Run ``one`` on every index; adds to the report's inputs and seconds.  The RSS
        samples at 1 %, 10 % and 50 % are those of the first loop of a run."""
        total = len(indices)
        marks = {max(1, total // 100): "1%", max(1, total // 10): "10%", max(1, total // 2): "50%"}
        watchdog = Watchdog(self.args.timeout, lambda index: f"replay: {self.replay_command(index)}")
        started = last_print = time.perf_counter()
        for done, index in enumerate(indices, start=1):
            watchdog.begin(index)
            began = time.perf_counter()
            one(index)
            took = time.perf_counter() - began
            if took > self.report.slowest[0]:
                self.report.slowest = (took, index)
            if check is not None:
                check(done)
            if done in marks:
                self.report.rss_samples.setdefault(marks[done], rss_mb())
            now = time.perf_counter()
            if now - last_print > 30:
                last_print = now
                rate = done / (now - started)
                print(
                    f"  {self.args.target}: {done}/{total} inputs, {rate:,.0f}/s, "
                    f"{self.report.failures} failures, RSS {rss_mb():.0f} MiB, "
                    f"{sys.getallocatedblocks():,} Python blocks"
                    + (f"; {self.status()}" if self.status is not None else ""),
                    flush=True,
                )
        watchdog.begin(-1)
        self.report.inputs += total
        self.report.seconds += time.perf_counter() - started
        self.report.rss_samples["100%"] = rss_mb()

    def indices(self) -> range:
        return range(self.args.start, self.args.start + self.args.inputs)


# --- parser ------------------------------------------------------------------------------


def parser_input(rng: random.Random) -> tuple[str, bytes, bytes]:
    """(mode, the undamaged seed, the input) for one parser input."""
    from tests.support.mutations import huge_line, mutate_counters, mutate_dump, seed_dumps

    seeds = seed_dumps()
    good = rng.choice(seeds)[1]
    draw = rng.random()
    max_huge = rng.choices((4096, 65536, 1 << 20), (90, 9, 1))[0]
    if draw < 0.75:
        return "parse", good, mutate_dump(rng, good, corpus=seeds, max_huge=max_huge)
    if draw < 0.95:
        if rng.random() < 0.5:
            return "steady", good, mutate_counters(rng, good, interesting=rng.choice((0.0, 0.05, 0.5)))
        return "steady", good, mutate_dump(rng, good, corpus=seeds, max_huge=max_huge)
    return (
        "memory",
        good,
        huge_line(rng, mutate_dump(rng, good, corpus=seeds), max_huge=rng.choice((65536, 1 << 20))),
    )


def parser_problems_of(mode: str, good: bytes, data: bytes) -> list[str]:
    """The oracles for one input (``memory`` mode measures under tracemalloc: fastest when
    the caller keeps it tracing, see :func:`run_parser`)."""
    from node_agent.parsing import parse_node
    from tests.support.fuzzing import parser_problems, peak_traced, steady_problems

    if mode == "parse":
        return parser_problems(data)
    if mode == "steady":
        return steady_problems(good, data)
    problems: list[str] = []
    for columnar in (True, False):
        peak = peak_traced(lambda: parse_node([("fuzz", data)], columnar=columnar))  # noqa: B023
        if peak > 32 * len(data) + 64 * 1024:
            problems.append(f"parse (columnar={columnar}) peaked at {peak} bytes for {len(data)} input bytes")
    return problems


def run_parser(run: Run) -> None:
    from tests.support.fuzzing import wire_rejects
    from tests.support.mutations import seed_dumps

    seed_dumps()  # rendered once, before the clock starts
    report = run.report
    rejected = Counter[str]()
    deferred: list[int] = []

    def one(index: int) -> None:
        rng = input_rng(run.args.seed, index)
        mode, good, data = parser_input(rng)
        if mode == "memory" and not tracemalloc.is_tracing():
            deferred.append(index)
            return
        report.outcomes[mode] += 1
        try:
            problems = parser_problems_of(mode, good, data)
        except MemoryError:
            problems = ["MemoryError"]
        if problems:
            run.fail(index, problems, data)
        elif mode == "parse" and index % 20 == 0:
            # How often a damaged dump gives a record the aggregator's length caps refuse
            # (not a failure: felix never writes names that long).
            from node_agent.parsing import parse_node

            for record in parse_node([("fuzz", data)]).records:
                reason = wire_rejects(record)
                if reason is not None:
                    rejected[" ".join(reason.split(" ")[:5])] += 1
                    break

    run.loop(one, run.indices())
    # The memory-mode inputs last, under one tracemalloc session: starting and stopping it
    # for each input grew this process by ~5 KB a time (CPython's tracemalloc, not the
    # parser: the same parses untraced keep a flat RSS), which would hide a real leak.
    tracemalloc.start()
    try:
        run.loop(one, deferred)
    finally:
        tracemalloc.stop()
    report.inputs -= len(deferred)  # visited twice: deferred, then run
    if rejected:
        report.notes.append(f"sampled inputs with a record the wire caps refuse: {dict(rejected)}")


# --- wire --------------------------------------------------------------------------------


def wire_messages(rng: random.Random) -> list[bytes]:
    from tests.support.mutations import (
        absurd_snapshot,
        chunk_stream,
        huge_snapshot,
        mutate_message,
        random_message,
        valid_snapshot,
    )

    draw = rng.random()
    if draw < 0.25:
        return [random_message(rng) for _ in range(rng.randint(1, 4))]
    if draw < 0.55:
        return [
            mutate_message(rng, valid_snapshot(rng).SerializeToString()) for _ in range(rng.randint(1, 3))
        ]
    if draw < 0.75:
        return [absurd_snapshot(rng).SerializeToString()]
    if draw < 0.999:
        chunks = [c.SerializeToString() for c in chunk_stream(rng)]
        return [mutate_message(rng, c) if rng.random() < 0.2 else c for c in chunks]
    return [huge_snapshot(rng, max_bytes=1 << 20).SerializeToString()]


def run_wire(run: Run) -> None:
    from calico_accountant.wire.chunks import ChunkAssembler
    from tests.support.fuzzing import wire_problems

    report = run.report

    def one(index: int) -> None:
        messages = wire_messages(input_rng(run.args.seed, index))
        assembler = ChunkAssembler()
        problems: list[str] = []
        for data in messages:
            try:
                outcome, found = wire_problems(data, assembler)
            except MemoryError:
                outcome, found = "crash", ["MemoryError"]
            report.outcomes[outcome] += 1
            problems += found
        if problems:
            run.fail(index, problems, messages)

    run.loop(one, run.indices())


# --- ingest ------------------------------------------------------------------------------


INGEST_WEIGHTS = {
    "random": 20,
    "mutated": 25,
    "absurd": 15,
    "chunks": 15,
    "sequence": 15,
    "codes": 8,
    "huge": 1,
    "pending": 1,
}


def ingest_messages(rng: random.Random, pending_bytes: int) -> tuple[str, list[bytes]]:
    from tests.support.mutations import ingest_stream

    kind = rng.choices(list(INGEST_WEIGHTS), list(INGEST_WEIGHTS.values()))[0]
    return kind, ingest_stream(rng, kind, max_huge=6 << 20, pending_bytes=pending_bytes, nodes=64)


def run_ingest(run: Run) -> None:
    from tests.support.fuzzing import IngestHarness

    harness = IngestHarness()
    report = run.report
    codes = Counter[str]()
    seen_errors = 0

    def one(index: int) -> None:
        nonlocal seen_errors
        kind, messages = ingest_messages(input_rng(run.args.seed, index), harness.PENDING_BYTES)
        outcome = harness.stream(messages)
        report.outcomes[kind] += 1
        codes[outcome.code.name] += 1
        codes["acks"] += len(outcome.acks)
        codes["messages"] += len(messages)
        problems = list(outcome.problems)
        if len(harness.errors.records) > seen_errors:
            problems += harness.errors.summary()[seen_errors:]
            seen_errors = len(harness.errors.records)
        if problems:
            run.fail(index, problems, messages)

    def check(done: int) -> None:
        problems: list[str] = []
        if done % 500 == 0:
            problems += harness.state_problems()
        if done % 5000 == 0 or done == run.args.inputs:
            problems += harness.genuine_problems()
        if problems:
            run.fail(run.args.start + done - 1, ["after this stream: " + p for p in problems], None)

    run.status = harness.held
    try:
        run.loop(one, run.indices(), check)
        report.notes.append(f"stream endings: {dict(codes.most_common())}")
        report.notes.append(f"the aggregator holds {harness.held()}")
    finally:
        harness.close()


# --- replay and atheris --------------------------------------------------------------------


def replay(args: argparse.Namespace) -> int:
    rng = input_rng(args.seed, args.replay)
    if args.target == "parser":
        mode, good, data = parser_input(rng)
        print(f"parser input {args.replay}: mode {mode}, {len(data)} bytes")
        problems = parser_problems_of(mode, good, data)
    elif args.target == "wire":
        from calico_accountant.wire.chunks import ChunkAssembler
        from tests.support.fuzzing import wire_problems

        assembler = ChunkAssembler()
        problems = []
        for data in wire_messages(rng):
            outcome, found = wire_problems(data, assembler)
            print(f"  message of {len(data)} bytes: {outcome}")
            problems += found
    else:
        from tests.support.fuzzing import IngestHarness

        harness = IngestHarness()
        try:
            kind, messages = ingest_messages(rng, harness.PENDING_BYTES)
            ended = harness.stream(messages)
            print(f"ingest input {args.replay}: {kind}, {len(messages)} messages -> {ended.code.name}")
            print(f"  {ended.details[:300]}; acks {[a.sequence for a in ended.acks]}")
            problems = ended.problems + harness.errors.summary() + harness.state_problems()
        finally:
            harness.close()
    print("\n".join(problems) or "no problem")
    return 1 if problems else 0


def run_atheris(args: argparse.Namespace) -> int:
    """Coverage-guided: libFuzzer drives; the oracles decide.  Does not return."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    # Instrumented for coverage: only what is imported inside this block, so before anything
    # else imports these packages.
    with atheris.instrument_imports(include=["node_agent", "calico_accountant"]):
        import calico_accountant.wire.chunks
        import calico_accountant.wire.snapshots  # noqa: F401
        import node_agent.parsing  # noqa: F401
    from calico_accountant.wire.chunks import ChunkAssembler
    from tests.support.fuzzing import parser_problems, wire_problems

    corpus = Path(args.corpus or tempfile.mkdtemp(prefix=f"fuzz-{args.target}-corpus-"))
    corpus.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    if args.target == "parser":
        from tests.support.mutations import seed_dumps

        seeds = [data for _, data in seed_dumps()]
        max_len = 1 << 16
    else:
        seeds = [m for index in range(200) for m in wire_messages(input_rng(args.seed, index))]
        max_len = 1 << 14
    for index, data in enumerate(seeds):
        if len(data) <= max_len:
            (corpus / f"seed-{index}").write_bytes(data)
    count = 0
    started = time.perf_counter()

    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        if args.target == "parser":
            problems = parser_problems(data)
        else:
            problems = wire_problems(data, ChunkAssembler())[1]
        if problems:
            raise AssertionError("; ".join(problems))
        if count == args.inputs:
            seconds = time.perf_counter() - started
            result = {
                "target": f"{args.target} (atheris)",
                "inputs": count,
                "seconds": round(seconds, 1),
                "inputs_per_second": round(count / seconds),
                "failures": 0,
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
            print("FUZZ-RESULT " + json.dumps(result), flush=True)

    del rng
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={args.inputs}",
            f"-max_len={max_len}",
            f"-timeout={int(args.timeout)}",
            f"-rss_limit_mb={args.max_memory_mb}",
            f"-seed={args.seed + 1}",
            "-print_final_stats=1",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz() exits


# --- main --------------------------------------------------------------------------------


def run_all(args: argparse.Namespace) -> int:
    """Each target in its own process (so peak RSS is per target), then one table."""
    results = []
    for target in TARGETS:
        inputs = args.inputs or DEFAULT_INPUTS[target]
        command = [sys.executable, "-m", "bench.fuzz", "--target", target, "--inputs", str(inputs)]
        command += ["--seed", str(args.seed), "--failures", args.failures]
        print(f"$ {' '.join(command[1:])}", flush=True)
        output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False).stdout
        print(output, end="", flush=True)
        results += [json.loads(line[12:]) for line in output.splitlines() if line.startswith("FUZZ-RESULT ")]
    print_table(results)
    return 1 if any(r["failures"] for r in results) or len(results) < len(TARGETS) else 0


def print_table(results: list[dict[str, Any]]) -> None:
    header = f"{'target':<8} {'inputs':>10} {'seconds':>8} {'inputs/s':>9} {'failures':>8} {'peak RSS':>9}"
    print(f"\n{header}  RSS 1%/10%/50%/100%")
    for r in results:
        samples = "/".join(f"{r['rss_mb'].get(k, 0):.0f}" for k in ("1%", "10%", "50%", "100%"))
        print(
            f"{r['target']:<8} {r['inputs']:>10,} {r['seconds']:>8.0f} {r['inputs_per_second']:>9,} "
            f"{r['failures']:>8} {r['peak_rss_mb']:>7.0f}MB  {samples} MB"
        )
    print(f"{'total':<8} {sum(r['inputs'] for r in results):>10,} {sum(r['seconds'] for r in results):>8.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m bench.fuzz")
    parser.add_argument("--target", choices=(*TARGETS, "all"), required=True)
    parser.add_argument("--inputs", type=int, default=0, help="inputs to try (default per target)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="index of the first input")
    parser.add_argument("--replay", type=int, default=None, help="run input REPLAY alone and explain it")
    parser.add_argument("--timeout", type=float, default=0, help="seconds one input may take")
    parser.add_argument("--max-memory-mb", type=int, default=4096, help="address-space cap (parser, wire)")
    parser.add_argument("--failures", default=str(Path(tempfile.gettempdir()) / "calico-accountant-fuzz"))
    parser.add_argument("--atheris", action="store_true", help="coverage-guided (parser, wire)")
    parser.add_argument("--corpus", default="", help="atheris corpus directory (default: a fresh one)")
    args = parser.parse_args(argv)
    if args.target == "all":
        return run_all(args)
    args.inputs = args.inputs or DEFAULT_INPUTS[args.target]
    args.timeout = args.timeout or DEFAULT_TIMEOUT[args.target]
    if args.replay is not None:
        return replay(args)
    if args.target != "ingest":
        cap = args.max_memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if args.atheris:
        if args.target == "ingest":
            parser.error("--atheris fuzzes the parser or the wire decoding")
        return run_atheris(args)
    run = Run(args)
    print(f"fuzzing {args.target}: {args.inputs:,} inputs from seed {args.seed}", flush=True)
    {"parser": run_parser, "wire": run_wire, "ingest": run_ingest}[args.target](run)
    result = run.report.as_json()
    print_table([result])
    seconds, index = run.report.slowest
    print(f"slowest input: {seconds:.3f} s ({run.replay_command(index)})")
    for note in run.report.notes:
        print(f"note: {note}")
    print(f"outcomes: {result['outcomes']}")
    print("FUZZ-RESULT " + json.dumps(result), flush=True)
    return 1 if run.report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
