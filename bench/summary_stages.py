"""Where ``calico-accountant parse --format summary`` spends its time, stage by stage, in-process.

Run from the repository root::

    .venv/bin/python -m bench.summary_stages [--runs 7] [--quick]

The dumps are ``bench/parser_vs_go.py``'s (``1000x40`` and ``many``, layout v3.30, IPv4).
For each it prints the fastest of ``--runs`` timings (ms; noise on a shared machine only
adds time) of:

* the columnar stages ``node_agent.columnar.plan_columnar`` runs (rows, runs, rule columns,
  chain facts, tiers, special plans, jumps, accepted jumps, denies, policy rules);
* ``summary count``: what ``node_agent.summary`` adds (every deny checked non-negative, the
  plans' kinds counted);
* what the summary no longer does, for comparison: ``compile`` (keys, rule-id tuples,
  lines of every plan), ``evaluate`` (a ``CounterRecord`` each) and counting the records'
  kinds.

A process's page faults (the memory it touches for the first time) are not in these
figures: ``bench/parser_vs_go.py`` times the whole command.  A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import operator
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from bench.parser_vs_go import Dump
from node_agent.attribution.planning import plan_policy_rules
from node_agent.columnar import ColumnarPlan
from node_agent.columnar.assemble import compile_plans
from node_agent.columnar.denies import exact_denies
from node_agent.columnar.jumps import accepted_jumps, jumps_of, policy_tiers
from node_agent.columnar.markers import special_plans, tier_column
from node_agent.columnar.rows import split_rows
from node_agent.columnar.rules import RuleClass, chain_facts, positions, rule_columns
from node_agent.columnar.runs import chain_runs
from node_agent.summary import plan_records
from tests.support.felix_render import render_restore, sized_model

_T = TypeVar("_T")


def _timed(times: dict[str, float], name: str, call: Callable[[], _T]) -> _T:
    started = time.perf_counter()
    result = call()
    times[name] = (time.perf_counter() - started) * 1000
    return result


def stages(text: str) -> dict[str, float]:
    """One parse of ``text``, stage by stage (ms)."""
    times: dict[str, float] = {}
    rows = _timed(times, "rows", lambda: split_rows(text, None))
    runs = _timed(times, "runs", lambda: chain_runs(rows))
    columns = _timed(times, "rule columns", lambda: rule_columns(rows, runs))
    facts = _timed(times, "chain facts", lambda: chain_facts(rows, columns, runs))
    specials = positions(columns.classes, RuleClass.SPECIAL)
    tier_of = _timed(times, "tiers", lambda: tier_column(rows, columns, runs, specials))
    special = _timed(
        times, "special plans", lambda: special_plans(rows, columns, runs, tier_of, specials, facts, "s")
    )
    jumps = _timed(times, "jumps", lambda: jumps_of(columns, tier_of, facts))
    accepted = _timed(times, "accepted jumps", lambda: accepted_jumps(jumps, columns, runs, facts))
    exact, structural = _timed(
        times, "denies", lambda: exact_denies(rows, columns, runs, jumps, accepted, facts, "s")
    )
    tiers = policy_tiers(jumps, facts)
    policy = _timed(
        times, "policy rules", lambda: plan_policy_rules(facts.chains, facts, tiers, rows.family, "s")
    )
    plan = ColumnarPlan(
        rows,
        runs,
        columns,
        facts,
        jumps,
        accepted,
        exact,
        structural,
        tiers,
        special + policy,
        len(special),
        "s",
    )
    _timed(times, "summary count", lambda: plan_records(plan))
    times["summary total"] = sum(times.values())
    compiled = _timed(
        times,
        "compile",
        lambda: compile_plans(rows, columns, runs, facts, accepted, exact, plan.other_plans, "s"),
    )
    split = _timed(times, "evaluate", lambda: compiled.evaluate_split(rows.packets, rows.octets))
    assert split is not None
    _timed(times, "count records", lambda: Counter(map(_KIND_OF, split[0] + split[1])))
    return times


_KIND_OF = operator.attrgetter("key.kind")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=int, default=7, help="runs per figure, the fastest is kept (default 7)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller dumps (250 pods x 20 policies)")
    args = parser.parse_args(argv)
    dumps = (
        [Dump("250x20", 250, 20, None), Dump("many-250x20", 250, 20, 800)]
        if args.quick
        else [Dump("1000x40", 1000, 40, None), Dump("many", 1000, 40, 3300)]
    )
    gc.disable()  # as in the parse command
    for dump in dumps:
        text = render_restore(sized_model(dump.pods, dump.policies, seed=1, pool=dump.pool)).text
        best: dict[str, float] = {}
        for _ in range(args.runs):
            gc.collect()
            for name, value in stages(text).items():
                best[name] = min(best.get(name, value), value)
        print(f"\n{dump.name} (fastest of {args.runs}, ms)")
        for name, value in best.items():
            print(f"  {name:<16}{value:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
