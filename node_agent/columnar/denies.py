"""Stage 7 of the columnar parse: which ``policy_deny`` records are exact.

A deny is entered - accepted - after (the jump, its accept return, the rule after it),
by flow conservation inside the endpoint chain; it is left out, with a ``deny_not_exact``
diagnostic, where that could include passed packets (see ``docs/attribution.md``).
Why a stage of its own: in most tables no policy can pass, and then nothing here runs
per jump; otherwise only the jumps near a policy that may pass ask the general
planner's :func:`~node_agent.attribution.planning.deny_inexact_reason`.
"""

from __future__ import annotations

from calico_accountant.records import Diagnostic
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.planning import deny_inexact_reason
from node_agent.columnar.jumps import AcceptedJumps, Jumps
from node_agent.columnar.rows import Rows
from node_agent.columnar.rules import RuleColumns, rule_at
from node_agent.columnar.runs import Runs

__all__ = ["exact_denies"]


def exact_denies(
    rows: Rows,
    columns: RuleColumns,
    runs: Runs,
    jumps: Jumps,
    accepted: AcceptedJumps,
    facts: ChainFacts,
    source: str,
) -> tuple[list[bool] | None, list[Diagnostic]]:
    """Per accepted jump whether its deny is exact (None: all are), and a diagnostic per
    deny left out, in slot order."""
    structural: list[Diagnostic] = []
    passing = {target for target in jumps.distinct if facts.has_pass(target) is not False}
    if not passing:
        return None, structural
    end_of = runs.end_of
    # Per endpoint chain (told by its end), the tiers holding a policy that can (or, its
    # chain missing, may) pass packets: there an unguarded "after" rule also counts them.
    tiers_that_may_pass: dict[int, set[str]] = {}
    for index, target, tier in zip(jumps.slots, jumps.targets, jumps.tiers, strict=True):
        if target in passing:
            tiers_that_may_pass.setdefault(end_of[index], set()).add(tier)
    flags: list[bool] = []
    for index, target, tier, after in zip(
        accepted.entered, accepted.targets, accepted.tiers, accepted.after, strict=True
    ):
        may_pass = tier in tiers_that_may_pass.get(end_of[index], ())
        if target in passing or may_pass:
            after_rule = rule_at(rows, columns, after) if after >= 0 else None
            reason = deny_inexact_reason(target, after_rule, tier, may_pass, facts.marks, facts.has_pass)
            if reason:
                structural.append(
                    Diagnostic(
                        "deny_not_exact",
                        f"{rows.chains[index]}: deny for {reason}; left out",
                        rows.first_line + index,
                        source,
                    )
                )
                flags.append(False)
                continue
        flags.append(True)
    return flags, structural
