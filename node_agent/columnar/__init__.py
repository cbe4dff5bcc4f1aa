"""The cold parse of a well-formed ``iptables-save -c`` filter table, column by column.

A big node prints ~150k rule lines, almost all of them the same two shapes in endpoint
chains (a guarded jump to a policy, then ``Return if policy accepted``).  A Python loop
per line costs more than the whole target time of a parse, so this path takes the table
apart with one regular-expression ``split`` (counters, chain, target and rule id of
every line, as flat columns) and builds the records of policy jumps with C-level
``map``/``zip``/``compress``.  Python loops run only over the rare rules that need a
closer look (tier markers, drops, profiles) and over the small non-endpoint chains,
which reuse the general planner's helpers.

It is a fast path, never the only path: :func:`parse_columnar` returns None for anything
it does not fully understand (escapes or odd quoting, other tables, ``-P``/``-N`` forms,
bad counters, undeclared or interleaved chains, a missing chain...), and the caller then
runs the general :func:`~node_agent.iptables_save.scan` +
:func:`~node_agent.attribution.planning.plan_table`, which gives the same result for input
this path accepts (``tests/test_parser_paths.py``).

The stages, each a function of what the earlier ones returned (one module each):

1. :mod:`~node_agent.columnar.rows`: the text split into columns (counters, chain,
   leading rule id, rest of line);
2. :mod:`~node_agent.columnar.runs`: the chains as runs of consecutive slots;
3. :mod:`~node_agent.columnar.rules`: each rule's target, class and rule id, and the
   non-endpoint chains as the general planner's rules;
4. and 5. :mod:`~node_agent.columnar.markers`: the tier of every rule, and the drop and
   profile records;
6. :mod:`~node_agent.columnar.jumps`: policy and group jumps and their accept returns;
7. :mod:`~node_agent.columnar.denies`: which denies are exact;
8. :mod:`~node_agent.columnar.assemble`: the plans as columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from calico_accountant.records import Diagnostic
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.compiled import CompiledPlans
from node_agent.attribution.marks import MarkBits
from node_agent.attribution.planning import plan_policy_rules
from node_agent.columnar.assemble import compile_plans
from node_agent.columnar.denies import exact_denies
from node_agent.columnar.jumps import Jumps, accepted_jumps, jumps_of, policy_tiers
from node_agent.columnar.markers import special_plans, tier_column
from node_agent.columnar.rows import Head, Irregular, split_rows
from node_agent.columnar.rules import RuleClass, chain_facts, positions, rule_columns
from node_agent.columnar.runs import chain_runs

__all__ = ["ColumnarParse", "TiersOf", "parse_columnar"]

TiersOf = Callable[[Jumps, ChainFacts], dict[str, str]]
"""How the tier of each policy chain is worked out from the table's jumps (the tier of its
first jump: :func:`~node_agent.columnar.jumps.policy_tiers`); the incremental re-parse
(:mod:`node_agent.columnar.incremental`) passes its own, over the jumps of every endpoint
chain, when it parses only some of them."""


@dataclass(slots=True)
class ColumnarParse:
    """What the columnar parse of one table yields: the same as scan + plan_table would."""

    compiled: CompiledPlans
    structural: list[Diagnostic]
    packets: list[int]
    octets: list[int]
    rule_lines: int
    lines: int
    # What the incremental re-parse of a later read reuses (node_agent.columnar.incremental):
    names: list[str]
    """The chains with rules, in table order (one run each), and where their rules are."""
    starts: list[int]
    lengths: list[int]
    endpoint: list[bool]
    declared: set[str]
    first_line: int
    family: int
    marks: MarkBits
    jumps: Jumps
    accepts: int
    """How many of ``compiled.single``'s plans are accepts of jumps (they come first)..."""
    specials: int
    """... and how many drop and profile plans follow them (then the policy rules' plans)."""
    tiers: dict[str, str]
    """The tier of each policy (and group) chain, as its ``policy_rule`` plans have it."""
    endpoint_targets: set[str]
    """What the rules of endpoint chains jump or go to (a superset after a re-parse): the
    chains whose change can change an endpoint chain's plans."""


def parse_columnar(
    text: str,
    source: str,
    family: int | None,
    tiers_of: TiersOf = policy_tiers,
    known: Head | None = None,
) -> ColumnarParse | None:
    """The columnar parse of one table's text, or None when the general path must do it
    (``known``: see :func:`~node_agent.columnar.rows.split_rows`)."""
    try:
        return _parse(text, source, family, tiers_of, known)
    except Irregular:
        return None


def _parse(
    text: str, source: str, family: int | None, tiers_of: TiersOf, known: Head | None
) -> ColumnarParse:
    """The stages in order; any of them raises :class:`Irregular` for the general path."""
    rows = split_rows(text, family, known)
    runs = chain_runs(rows)
    columns = rule_columns(rows, runs)
    facts = chain_facts(rows, columns, runs)
    specials = positions(columns.classes, RuleClass.SPECIAL)
    tier_of = tier_column(rows, columns, runs, specials)
    special = special_plans(rows, columns, runs, tier_of, specials, facts, source)
    jumps = jumps_of(columns, tier_of, facts)
    accepted = accepted_jumps(jumps, columns, runs, facts)
    exact, structural = exact_denies(rows, columns, runs, jumps, accepted, facts, source)
    tiers = tiers_of(jumps, facts)
    policy_rules = plan_policy_rules(facts.chains, facts, tiers, rows.family, source)
    accepts = len(accepted.entered)
    compiled = compile_plans(rows, columns, runs, facts, accepted, exact, special + policy_rules, source)
    return ColumnarParse(
        compiled,
        structural,
        rows.packets,
        rows.octets,
        rows.count,
        rows.line_count,
        runs.names,
        runs.starts,
        runs.lengths,
        runs.endpoint,
        rows.declared,
        rows.first_line,
        rows.family,
        facts.marks,
        jumps,
        accepts,
        len(special),
        tiers,
        set().union(
            *(
                columns.targets[start : start + length]
                for start, length, endpoint in zip(runs.starts, runs.lengths, runs.endpoint, strict=True)
                if endpoint
            )
        ),
    )
