"""Where a churn read's time goes, stage by stage: the re-parse and the cold parse.

Run from the repository root::

    .venv/bin/python -m bench.churn_stages [--runs 3] [--pool 3300] [--quick]

The node and its reads are ``bench/churn_bench.py``'s (``sized_model(1000, 40, pool=3300)``,
one workload in ten moving, one pod's chains gone then back).  For the read after each
churn (``gone``, ``back``) it prints, in one process, the median of ``--runs`` timings (ms):

* ``agent parser``: ``SteadyStateParser`` warm (a cold read, then two steady reads with other
  counters moving, so the fast path's template and its index of each counter's readers are
  built, as on a node) on a steady read, on the churn read and on the read after it (which
  makes the fast path's template from the re-parse's pieces), and how many reads were
  re-parsed;
* ``re-parse``: the churn read again, the re-parse (``node_agent.columnar.incremental``)
  stage by stage: ``counters`` (taken out of the text, ``findall``), ``compare`` (the
  previous read's text with the new counters put back against the new text, chunk by chunk:
  ``realign``), ``dependents`` (the chains that jump to a changed one), ``re-plan`` (the
  cold columnar parse of the smaller table: changed endpoint chains, the chains they jump
  to, changed policy chains, with the jumps of every endpoint chain merged for the tiers),
  ``move plans`` (the previous read's plans and records edited in place: the reused blocks'
  slots moved, the re-planned chains' plans put in), ``counter values`` (only the changed
  ones converted), ``records`` (those to evaluate found through the previous read's index of
  each counter's readers, and evaluated); the rest of the re-parse, the parser's work around
  it (the fast path's attempt, records into the result, freeing the previous read's state)
  and the read after;
* ``cold stages``: what the cold columnar parse of the same text costs, stage by stage.

A measurement, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from bench.churn_bench import Tables
from node_agent import parsing
from node_agent.attribution.compiled import CompiledPlans
from node_agent.attribution.planning import plan_policy_rules
from node_agent.columnar import incremental, replan, splice
from node_agent.columnar.assemble import compile_plans
from node_agent.columnar.denies import exact_denies
from node_agent.columnar.jumps import accepted_jumps, jumps_of, policy_tiers
from node_agent.columnar.markers import special_plans, tier_column
from node_agent.columnar.rows import split_rows
from node_agent.columnar.rules import RuleClass, chain_facts, positions, rule_columns
from node_agent.columnar.runs import chain_runs
from node_agent.parsing import SteadyStateParser
from tests.support.felix_render import render_restore, sized_model

_T = TypeVar("_T")


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
        lambda: compile_plans(rows, columns, runs, facts, accepted, exact, special + policy, "s")
    )
    _, times["evaluate"] = _timed(lambda: compiled.evaluate_split(rows.packets, rows.octets))
    times["cold total"] = sum(times.values())
    return times


_STAGES: dict[str, tuple[tuple[object, str], ...]] = {
    "counters": ((incremental, "counters_of"),),
    "compare": ((incremental, "realign"),),
    "dependents": ((replan, "dependents"), (replan, "referrers")),
    "re-plan": ((incremental, "parse_columnar"),),
    "move plans": ((incremental, "reused_blocks"), (incremental, "slot_map"), (splice.Splicer, "edit")),
    "counter values": ((incremental, "read_counters"),),
    "records": ((incremental, "stale_positions"), (incremental, "stale"), (CompiledPlans, "refresh")),
}
"""The re-parse's stages (``node_agent.columnar.incremental``), each the functions it runs."""


@contextlib.contextmanager
def _stage_timers(spent: dict[str, float]) -> Iterator[None]:
    """Every stage's functions wrapped to add their time (ms) to ``spent`` while inside."""
    saved: list[tuple[object, str, Any]] = []

    def timer(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0.0) + (time.perf_counter() - started) * 1000

        return timed

    for stage, places in _STAGES.items():
        for owner, name in places:
            function = getattr(owner, name)
            saved.append((owner, name, function))
            setattr(owner, name, timer(stage, function))
    try:
        yield
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)


def _warmed(before: tuple[str, str]) -> SteadyStateParser:
    """A parser after a cold read and two steady reads (other counters moving at each, as
    on a node): the template and the index of each counter's readers built."""
    parser = SteadyStateParser()
    for text in (*before, before[0]):
        parser.parse([("s", text)])
    return parser


def churn_read(before: tuple[str, str], text: str, following: str) -> dict[str, float]:
    """The agent's parser on the read of ``text`` after steady reads of ``before``: the
    whole read, the re-parse and its stages, and the read after it (ms)."""
    parser = _warmed(before)
    spent: dict[str, float] = {}
    reparse = incremental.reparse

    def timed_reparse(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return reparse(*args)
        finally:
            spent["re-parse"] = (time.perf_counter() - started) * 1000

    setattr(parsing, "reparse", timed_reparse)  # noqa: B010 (the parser's own name for it)
    try:
        with _stage_timers(spent):
            _, read = _timed(lambda: parser.parse([("s", text)]))
    finally:
        setattr(parsing, "reparse", reparse)  # noqa: B010
    if parser.changed_reads != 1:
        raise SystemExit("the churn read was not re-parsed: nothing to measure")
    _, after = _timed(lambda: parser.parse([("s", following)]))
    times = {"churn read": read, **spent}
    times["re-parse, other"] = spent["re-parse"] - sum(spent.get(stage, 0.0) for stage in _STAGES)
    times["outside the re-parse"] = read - spent["re-parse"]
    times["read after (template)"] = after
    return times


def agent_parser(before: tuple[str, str], text: str, following: str) -> dict[str, float]:
    """The agent's parser as it is: a steady read, the churn read, the read after it."""
    parser = _warmed(before)
    times: dict[str, float] = {}
    _, times["steady read"] = _timed(lambda: parser.parse([("s", before[1])]))
    _, times["churn read"] = _timed(lambda: parser.parse([("s", text)]))
    _, times["read after"] = _timed(lambda: parser.parse([("s", following)]))
    times["re-parsed"] = parser.changed_reads
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
    warm = tables.text()
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
        ("gone", (warm, steady), gone, after_gone),
        ("back", (gone, after_gone), back, after_back),
    ):
        agent = _medians([agent_parser(before, text, following) for _ in range(args.runs)])
        cold = _medians([cold_stages(text) for _ in range(args.runs)])
        churn = _medians([churn_read(before, text, following) for _ in range(args.runs)])
        gc.collect()
        print(f"\n== pod {kind} (median of {args.runs}, ms) load {os.getloadavg()[0]:.2f}")
        print("agent parser: " + "  ".join(f"{name} {value:.0f}" for name, value in agent.items()))
        print("cold stages:  " + "  ".join(f"{name} {value:.0f}" for name, value in cold.items()))
        print("re-parse:     " + "  ".join(f"{name} {value:.0f}" for name, value in churn.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
