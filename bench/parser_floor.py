"""The least a pure-Python cold parse of a big dump must spend, whatever its algorithm.

Run from the repository root::

    .venv/bin/python -m bench.parser_floor [--pods 1000 --policies 40] [--runs 5]

The issue's cold target is 0.8 M lines/s for ``calico-accountant parse --format summary``
of the 1000 x 40 dump (147k lines), i.e. about 184 ms minus the command's start-up.  This
script times, in fresh processes (as the CLI runs), only the steps no parser producing
this project's records can skip, each with the fastest C-level primitive found:

* read the file and decode it (UTF-8);
* take every rule line apart into packets, bytes, chain and rule id (one ``re.split``;
  nothing is left out that a record needs);
* convert the packet and byte counters to integers;
* build one :class:`~calico_accountant.records.CounterKey` and one
  :class:`~calico_accountant.records.CounterRecord` (with its rule-id tuple) per record,
  half of them with one rule id (accepts), half with three (denies), as many records as
  the real parse yields.

No planning at all: no chain runs, no classification, no pairing of jumps and returns, no
deny arithmetic, no diagnostics.  The real parser does all of that on top, so its cold
time cannot be below this sum.  It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import functools, gc, itertools, re, sys, time
from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind
gc.disable()
path, records = sys.argv[1], int(sys.argv[2])
laps = {}
last = start = time.perf_counter()
def lap(name):
    global last
    now = time.perf_counter()
    laps[name] = (now - last) * 1000
    last = now
with open(path, "rb") as handle:
    text = handle.read().decode()
lap("read+decode")
row = re.compile(r'\n\[([0-9]+):([0-9]+)\] -A ([^ \n]+) (?:-m comment --comment "cali:([^"\\\' \n]*)")?')
parts = row.split(text)
lap("split")
packets = list(map(int, parts[1::5]))
bytes_ = list(map(int, parts[2::5]))
lap("ints")
chains, ids = parts[3::5], parts[4::5]
half = min(records // 2, len(ids) - 2)
new_key = functools.partial(tuple.__new__, CounterKey)
new_record = functools.partial(tuple.__new__, CounterRecord)
R = itertools.repeat
def keys(kind):
    fields = (R(kind), R(4), R(Direction.INGRESS), chains[:half], chains[:half], R("default"), R(-1), R(""))
    return list(map(new_key, zip(*fields)))
accept_keys = keys(Kind.POLICY_ACCEPT)
deny_keys = keys(Kind.POLICY_DENY)
lap("keys")
accept_ids = list(zip(ids[:half]))
deny_ids = list(zip(ids[:half], ids[1 : half + 1], ids[2 : half + 2]))
lap("rule_id_tuples")
accepts = list(map(new_record, zip(accept_keys, packets, bytes_, accept_ids, R(""), R(()))))
denies = list(map(new_record, zip(deny_keys, packets[1:], bytes_[1:], deny_ids, R(""), R(()))))
lap("records")
laps["total"] = (time.perf_counter() - start) * 1000
print(" ".join(f"{name}={value:.1f}" for name, value in laps.items()))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    from node_agent.parsing import parse_node
    from tests.support.felix_render import render_restore, sized_model

    text = render_restore(sized_model(args.pods, args.policies, seed=1)).text
    lines = text.count("\n")
    records = len(parse_node([("ipv4", text)]).records)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "filter.save"
        path.write_text(text)
        for _ in range(args.runs):
            output = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), str(records)],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            laps = dict(item.split("=") for item in output.split())
            if "total" not in best or float(laps["total"]) < best["total"]:
                best = {name: float(value) for name, value in laps.items()}
    print(
        f"{args.pods}x{args.policies}: {lines} lines, {records} records; "
        f"fastest of {args.runs} fresh processes (ms):"
    )
    for name, value in best.items():
        print(f"  {name:>15} {value:7.1f}")
    budget = lines / 0.8e6 * 1000
    print(f"  the cold target (0.8 M lines/s) allows {budget:.1f} ms for the whole parse of this dump;")
    print(f"  these unavoidable steps alone take {best['total']:.1f} ms ({best['total'] / budget:.0%} of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
