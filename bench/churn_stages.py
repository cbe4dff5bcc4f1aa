"""Where a churn read's time goes, stage by stage, and what an incremental read would cost.

Run from the repository root::

    .venv/bin/python -m bench.churn_stages [--runs 3] [--pool 3300] [--quick]

The node and its reads are ``bench/churn_bench.py``'s (``sized_model(1000, 40, pool=3300)``,
one workload in ten moving, one pod's chains gone then back).  For the read after each
churn (``gone``, ``back``) it prints, in one process, the median of ``--runs`` timings (ms):

* the agent's parser as it is (``SteadyStateParser``, warm: the previous read's template
  built) on a steady read and on the churn read, and the read after the churn (which
  rebuilds the fast path's template);
* the cold columnar parse stage by stage (``node_agent.columnar``: rows, runs, rule columns,
  chain facts, tiers, special plans, jumps, accepted jumps, denies, policy rules, compiling
  the plans, evaluating the records);
* the steps an incremental read would take, each done here with the code it would run:
  ``split`` (the text into counters and rule lines, and the rule lines into per-chain
  blocks), ``compare`` (each block against the previous read's), ``re-plan`` (a cold
  parse of a table holding only the changed endpoint chains and the chains they jump to:
  an upper bound on re-planning them), ``records`` (putting the records of ~7,000 chains
  back together from per-chain lists) and ``template`` (the fast path's template of the
  new text, for the next read).

A measurement, not a test: it asserts nothing and its incremental steps are prototypes,
not the parser.
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.churn_bench import Tables
from calico_accountant.felix.endpoints import endpoint_chain
from calico_accountant.wire.delta import index_records
from node_agent.attribution.compiled import CompiledPlans
from node_agent.attribution.planning import plan_policy_rules
from node_agent.columnar import parse_columnar
from node_agent.columnar.assemble import compile_plans
from node_agent.columnar.denies import exact_denies
from node_agent.columnar.jumps import accepted_jumps, jumps_of, policy_tiers
from node_agent.columnar.markers import special_plans, tier_column
from node_agent.columnar.rows import split_rows
from node_agent.columnar.rules import RuleClass, chain_facts, positions, rule_columns
from node_agent.columnar.runs import chain_runs
from node_agent.parsing import _COUNTER_PREFIX, SteadyStateParser, _framed, _template_of
from tests.support.felix_render import render_restore, sized_model

_T = TypeVar("_T")
_CHAIN_OF_RULE = operator.itemgetter(slice(3, None))


def _timed(call: Callable[[], _T]) -> tuple[_T, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def cold_stages(text: str) -> dict[str, float]:
    """The columnar cold parse's stages (as ``node_agent.columnar._parse`` runs them), ms each."""
    times: dict[str, float] = {}
    rows, times["rows"] = _timed(lambda: split_rows(text, None))
    runs, times["runs"] = _timed(lambda: chain_runs(rows))
    columns, times["rule columns"] = _timed(lambda: rule_columns(rows, runs))
    facts, times["chain facts"] = _timed(lambda: chain_facts(rows, columns, runs))
    specials = positions(columns.classes, RuleClass.SPECIAL)
    tier_of, times["tiers"] = _timed(lambda: tier_column(rows, columns, runs, specials))
    special, times["special plans"] = _timed(
        lambda: special_plans(rows, columns, runs, tier_of, specials, facts, "s")
    )
    jumps, times["jumps"] = _timed(lambda: jumps_of(columns, tier_of, facts))
    accepted, times["accepted jumps"] = _timed(lambda: accepted_jumps(jumps, columns, runs, facts))
    (exact, _), times["denies"] = _timed(
        lambda: exact_denies(rows, columns, runs, jumps, accepted, facts, "s")
    )
    policy, times["policy rules"] = _timed(
        lambda: plan_policy_rules(facts.chains, facts, policy_tiers(jumps, facts), rows.family, "s")
    )
    compiled, times["compile"] = _timed(
        lambda: compile_plans(rows, columns, accepted, exact, special + policy, "s")
    )
    _, times["evaluate"] = _timed(lambda: compiled.evaluate_split(rows.packets, rows.octets))
    times["cold total"] = sum(times.values())
    return times


_STRIP = re.compile(r"\n\[[0-9]+:[0-9]+\] ")
"""A rule line's counter prefix with its newline (``parsing._COUNTER_PREFIX`` without the group)."""


def stripped(text: str) -> str:
    """The rule text without counters, one C-level substitution over the whole text."""
    return _STRIP.sub("\n", _framed(text))


def chain_starts(text: str, names: list[str]) -> dict[str, int]:
    """Where each of ``names`` (a previous read's chains, in its order) has its first rule
    in the stripped ``text``: one forward ``str.find`` per chain from a moving cursor, so
    the text is searched once in all (a chain gone costs one search to the end)."""
    starts: dict[str, int] = {}
    cursor = 0
    for name in names:
        found = text.find("\n-A " + name + " ", cursor)
        if found != -1:
            starts[name] = found
            cursor = found
    return starts


def split_blocks(text: str, names: list[str]) -> dict[str, str]:
    """Each chain's rule lines without counters (one string per chain), found by
    :func:`chain_starts` in the stripped text: what an incremental read compares."""
    plain = stripped(text)
    starts = chain_starts(plain, names)
    ordered = sorted(starts.items(), key=operator.itemgetter(1))
    ends = [start for _, start in ordered[1:]] + [plain.rfind("\n-A ") + 1]
    return {name: plain[start:end] for (name, start), end in zip(ordered, ends, strict=True)}


def naive_blocks(text: str) -> dict[str, str]:
    """Each chain's rule lines without counters, told line by line (a Python step per rule
    line): the straightforward split, for comparison."""
    parts = _COUNTER_PREFIX.split(_framed(text))
    rules = parts[2::2]
    blocks: dict[str, list[str]] = {}
    for rule in rules:
        blocks.setdefault(rule.split(" ", 2)[1], []).append(rule)
    return {name: "\n".join(block) for name, block in blocks.items()}


def changed_chains(previous: dict[str, str], current: dict[str, str]) -> tuple[list[str], list[str]]:
    """Chains added or rewritten, and chains removed."""
    changed = [name for name, block in current.items() if previous.get(name) != block]
    removed = [name for name in previous if name not in current]
    return changed, removed


def _targets(block: str, present: dict[str, str]) -> list[str]:
    found = []
    for rule in block.split("\n"):
        _, jump, after = rule.rpartition(" -j ")
        target = after.split(" ", 1)[0]
        if jump and target in present:
            found.append(target)
    return found


def subtable(blocks: dict[str, str], changed: list[str]) -> str:
    """A table holding only the changed endpoint chains and the chains they jump to (and
    those chains' own targets: group members): what re-planning those chains reads."""
    wanted = [name for name in changed if endpoint_chain(name) is not None]
    targets = dict.fromkeys(target for name in wanted for target in _targets(blocks[name], blocks))
    targets.update(
        dict.fromkeys(member for target in list(targets) for member in _targets(blocks[target], blocks))
    )
    names = [name for name in blocks if name in targets or name in wanted]
    lines = ["*filter", *(f":{name} - [0:0]" for name in names)]
    for name in names:
        lines.extend(f"[1:1] {rule}" for rule in blocks[name].strip("\n").split("\n"))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _copied(compiled: CompiledPlans) -> list[list[object]]:
    """Every column of the plans copied: what putting per-chain columns back together costs
    at the least (one pass over each column)."""
    copies: list[list[object]] = []
    for columns in (compiled.single, compiled.deny):
        keys, slots, rule_ids, comments, members, lines, sources = columns
        every: tuple[Sequence[object], ...] = (keys, *slots, rule_ids, comments, members, lines, sources)
        copies.extend(list(column) for column in every)
    return copies


def churn_read(before: str, after: str) -> dict[str, float]:
    """The incremental steps of the read of ``after`` following ``before``, ms each."""
    times: dict[str, float] = {}
    names = list(naive_blocks(before))
    previous = split_blocks(before, names)
    _, times["split (line by line)"] = _timed(lambda: naive_blocks(after))
    _, times["strip counters"] = _timed(lambda: stripped(after))
    current, times["split (anchored)"] = _timed(lambda: split_blocks(after, names))
    (changed, removed), times["compare"] = _timed(lambda: changed_chains(previous, current))
    # A chain the anchored split did not look for (a new one) is in the block before it,
    # which then differs: that block is split line by line, here the whole table is.
    every = naive_blocks(after)
    table = subtable(every, changed + [name for name in every if name not in previous])
    _, times["re-plan"] = _timed(lambda: parse_columnar(table, "s", None))
    cold = SteadyStateParser()
    records = cold.parse([("s", after)]).records
    remembered = cold._remembered["s"]
    compiled = remembered.compiled
    packets, octets = remembered.counters
    _, times["counters to int"] = _timed(
        lambda: [
            list(map(int, pair))
            for pair in zip(*(c.split(":") for c in _COUNTER_PREFIX.findall(_framed(after))), strict=True)
        ]
    )
    _, times["plans merged"] = _timed(lambda: _copied(compiled))
    _, times["records"] = _timed(lambda: compiled.evaluate_split(packets, octets))
    _, times["index"] = _timed(lambda: index_records(records))
    framed = _framed(after)
    _, times["template"] = _timed(lambda: _template_of(framed, remembered.rules_seen, remembered.counters))
    times["changed chains"] = len(changed)
    times["removed chains"] = len(removed)
    times["re-planned rules"] = table.count("\n[")
    return times


def agent_parser(previous: str, text: str, following: str) -> dict[str, float]:
    """The agent's parser as it is: a steady read, the churn read, the read after it."""
    parser = SteadyStateParser()
    parser.parse([("s", previous)])
    parser.parse([("s", previous)])  # builds the template
    times: dict[str, float] = {}
    _, times["steady read"] = _timed(lambda: parser.parse([("s", previous)]))
    _, times["churn read"] = _timed(lambda: parser.parse([("s", text)]))
    _, times["read after"] = _timed(lambda: parser.parse([("s", following)]))
    return times


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(sample[name] for sample in samples) for name in samples[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool", type=int, default=3300)
    parser.add_argument("--quick", action="store_true", help="250 pods x 20 policies from a pool of 800")
    args = parser.parse_args(argv)
    pods, policies, pool = (250, 20, 800) if args.quick else (1000, 40, args.pool)
    tables = Tables(render_restore(sized_model(pods, policies, seed=1, pool=pool)).text)
    tables.move(1)
    steady = tables.text()
    tables.hide(tables.interfaces[len(tables.interfaces) // 2])
    tables.move(2)
    gone = tables.text()
    tables.move(3)
    after_gone = tables.text()
    tables.hide(None)
    tables.move(4)
    back = tables.text()
    tables.move(5)
    after_back = tables.text()
    size = f"{len(steady) / 1e6:.1f} MB"
    print(f"node: {pods} pods x {policies} policies (pool {pool}), {size}, load {os.getloadavg()}")
    gc.disable()  # as the agent's parser does during a read
    for kind, before, text, following in (
        ("gone", steady, gone, after_gone),
        ("back", after_gone, back, after_back),
    ):
        agent = _medians([agent_parser(before, text, following) for _ in range(args.runs)])
        cold = _medians([cold_stages(text) for _ in range(args.runs)])
        incremental = _medians([churn_read(before, text) for _ in range(args.runs)])
        gc.collect()
        print(f"\n== pod {kind} (median of {args.runs}, ms) load {os.getloadavg()[0]:.2f}")
        print("agent parser: " + "  ".join(f"{name} {value:.0f}" for name, value in agent.items()))
        print("cold stages:  " + "  ".join(f"{name} {value:.0f}" for name, value in cold.items()))
        print("incremental:  " + "  ".join(f"{name} {value:.0f}" for name, value in incremental.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
