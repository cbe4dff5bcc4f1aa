"""What ``calico-accountant parse --format summary`` prints of a node's dumps, without the records.

The summary is counts: lines, rules, records per kind, diagnostics.  A full parse builds a
``CounterKey`` and a ``CounterRecord`` for each of ~130k records on a big node (plus their
rule-id tuples) only for the summary to count their kinds: about a quarter of the whole
command's time, page faults of the memory they take included.  :func:`summarize_node` runs
the same columnar stages as :func:`~node_agent.parsing.parse_node` up to the plans
(:func:`~node_agent.columnar.plan_columnar`) and counts the plans' kinds where every plan
would give one record (no unreadable counter, no negative deny: what the column-wise
evaluation needs); any other input, and any such read that does not qualify, is parsed by
:func:`~node_agent.parsing.parse_node`'s parser and its records counted.  The summary is
the one :meth:`ParseSummary.of` gives for ``parse_node``'s result
(``tests/test_parser_summary.py``).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from calico_accountant.records import Diagnostic, Kind, ParseResult
from node_agent.attribution.compiled import deny_counts
from node_agent.columnar import ColumnarPlan, plan_columnar
from node_agent.columnar.assemble import deny_slots, plan_kinds
from node_agent.iptables_save import decode_input
from node_agent.nftables.document import looks_like_nft_json
from node_agent.parsing import SteadyStateParser

__all__ = ["ParseSummary", "plan_records", "summarize_node"]

_KIND_OF = operator.attrgetter("key.kind")


@dataclass(slots=True)
class ParseSummary:
    """A node's parse as counts, with its diagnostics in order (they are printed too)."""

    lines_seen: int = 0
    rules_seen: int = 0
    kinds: Counter[Kind] = field(default_factory=Counter)
    """Records per kind."""
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @classmethod
    def of(cls, result: ParseResult) -> ParseSummary:
        """The summary of a parse's result."""
        summary = cls()
        summary.add(result)
        return summary

    @property
    def records(self) -> int:
        return sum(self.kinds.values())

    def add(self, result: ParseResult) -> None:
        """Count in the result of another parse."""
        self.kinds.update(map(_KIND_OF, result.records))
        self.diagnostics.extend(result.diagnostics)
        self.rules_seen += result.rules_seen
        self.lines_seen += result.lines_seen

    def diagnostic_counts(self) -> dict[str, int]:
        """Diagnostics per code, as :meth:`ParseResult.diagnostic_counts` counts them."""
        return ParseResult(diagnostics=self.diagnostics).diagnostic_counts()


def summarize_node(
    inputs: Sequence[tuple[str, str | bytes]],
    *,
    family: int | None = None,
    retain: list[object] | None = None,
) -> ParseSummary:
    """:meth:`ParseSummary.of` ``parse_node(inputs, family=family)``, without building the
    records of the tables the columnar path counts.

    ``retain``: what the counts were taken from is appended to it, for a process about to
    end that need not free ~500k objects one by one (``parse`` ends without teardown).
    """
    summary = ParseSummary()
    parser = SteadyStateParser(family=family)
    for source, data in inputs:
        text, decode_diagnostics = decode_input(data, source)
        plan = (
            None if decode_diagnostics or looks_like_nft_json(text) else plan_columnar(text, source, family)
        )
        if retain is not None and plan is not None:
            retain.append(plan)
        kinds = None if plan is None else plan_records(plan)
        if plan is not None and kinds is not None:
            summary.kinds.update(kinds)
            summary.diagnostics.extend(plan.structural)
            summary.rules_seen += plan.rows.count
            summary.lines_seen += plan.rows.line_count
        else:
            result = parser.parse([(source, data)])
            if retain is not None:
                retain.append(result)
            summary.add(result)
    return summary


def plan_records(plan: ColumnarPlan) -> Counter[Kind] | None:
    """The records per kind of a table's columnar plan, when the plans' column-wise
    evaluation gives every plan its record and no diagnostic
    (:meth:`~node_agent.attribution.compiled.CompiledPlans.evaluate_split` is not None: no
    unreadable counter and no deny below zero); else None.  A columnar parse has no
    unreadable counter (its row pattern takes digits only, and counters past u64 send the
    table to the general path), so only the denies are checked."""
    entered, accepted, after = deny_slots(plan.accepted, plan.exact)
    for counters in (plan.rows.packets, plan.rows.octets):
        if min(deny_counts([*counters, 0], entered, accepted, after), default=0) < 0:
            return None
    return plan_kinds(plan.accepted, plan.exact, plan.other_plans)
