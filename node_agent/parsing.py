"""The parser's public API: dumps of one node in, counter records out.

:func:`parse_node` is the one-shot parse (the ``parse`` command, ``report``, tests).
:class:`SteadyStateParser` is what the agent uses: the same result, but when a table's
rule text is unchanged since the previous read it splits off only the
``[packets:bytes]`` prefixes, and re-evaluates only the records whose counters moved.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant.records import CounterRecord, Diagnostic, ParseResult
from node_agent.attribution import RecordPlan, evaluate_plan, plan_table
from node_agent.iptables_save import MAX_COUNTER, decode_input, scan

__all__ = ["SteadyStateParser", "parse_node"]

_COUNTER_PREFIX = re.compile(r"\n\[(\d+:\d+)\] ")
"""Splits a table into [text, "p:b", text, "p:b", ...]: the text pieces are the rule
set (the "skeleton"), the rest its counters.  ``\\n[`` is a literal prefix, so the regex
engine skips ahead with a fast search instead of trying every position."""


def parse_node(
    inputs: Sequence[tuple[str, str | bytes]],
    *,
    family: int | None = None,
) -> ParseResult:
    """Parse the tables of one node (e.g. its IPv4 and IPv6 ``iptables-save -c``).

    ``inputs`` are (source name, text) pairs; ``family`` forces 4 or 6 for all of them,
    otherwise each is detected from its header or its rules.  Never raises on bad input.
    """
    return SteadyStateParser(family=family).parse(inputs)


@dataclass(slots=True)
class _Remembered:
    """What one source's previous read taught us, for the fast path."""

    skeleton: list[str]
    counters: list[str]
    plans: list[RecordPlan]
    plans_of_slot: dict[int, list[int]]
    records: list[CounterRecord | None]
    """The previous read's record per plan (None: left out)."""
    value_diagnostics: dict[int, Diagnostic]
    """Per plan, the diagnostic its values gave (a negative deny)."""
    structural: list[Diagnostic]
    rules_seen: int
    lines_seen: int


class SteadyStateParser:
    """Parses successive reads of the same node, reusing what unchanged rule text taught it.

    Correctness never depends on the cache: the fast path is taken only when the table
    text minus its counter prefixes is identical to the previous read's, and then every
    record whose counters changed is evaluated again.
    """

    def __init__(self, *, family: int | None = None) -> None:
        self._family = family
        self._remembered: dict[str, _Remembered] = {}
        self.fast_path_reads = 0
        self.full_reads = 0

    def parse(self, inputs: Sequence[tuple[str, str | bytes]]) -> ParseResult:
        """One read of the node: all its records, zero-valued included, and diagnostics."""
        result = ParseResult()
        # A parse allocates ~100k tuples per big table and creates no reference cycles;
        # the cyclic collector's passes over them would double its time.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for source, data in inputs:
                text, decode_diagnostics = decode_input(data, source)
                if decode_diagnostics or not self._parse_unchanged(source, text, result):
                    self._parse_full(source, text, decode_diagnostics, result)
        finally:
            if collecting:
                gc.enable()
        return result

    def _parse_unchanged(self, source: str, text: str, result: ParseResult) -> bool:
        """The fast path; False (having done nothing) when the rule text changed."""
        remembered = self._remembered.get(source)
        if remembered is None:
            return False
        parts = _COUNTER_PREFIX.split("\n" + text)
        if parts[0::2] != remembered.skeleton:
            return False
        counters = parts[1::2]
        previous = remembered.counters
        changed = [slot for slot, (new, old) in enumerate(zip(counters, previous, strict=True)) if new != old]
        if changed:
            plans = remembered.plans
            affected = {index for slot in changed for index in remembered.plans_of_slot.get(slot, ())}
            needed = {slot for index in affected for slot in plans[index].slots if slot >= 0}
            packets = [0] * len(counters)
            bytes_ = [0] * len(counters)
            for slot in needed:
                pkts_text, _, bytes_text = counters[slot].partition(":")
                packets[slot] = int(pkts_text)
                bytes_[slot] = int(bytes_text)
                if packets[slot] > MAX_COUNTER or bytes_[slot] > MAX_COUNTER:
                    return False
            for index in affected:
                self._store(remembered, index, evaluate_plan(plans[index], packets, bytes_))
            remembered.counters = counters
        result.records.extend([record for record in remembered.records if record is not None])
        result.diagnostics.extend(remembered.structural)
        result.diagnostics.extend(remembered.value_diagnostics.values())
        result.rules_seen += remembered.rules_seen
        result.lines_seen += remembered.lines_seen
        self.fast_path_reads += 1
        return True

    @staticmethod
    def _store(remembered: _Remembered, index: int, outcome: CounterRecord | Diagnostic | None) -> None:
        if isinstance(outcome, Diagnostic):
            remembered.value_diagnostics[index] = outcome
            remembered.records[index] = None
        else:
            remembered.value_diagnostics.pop(index, None)
            remembered.records[index] = outcome

    def _parse_full(
        self, source: str, text: str, decode_diagnostics: list[Diagnostic], result: ParseResult
    ) -> None:
        self.full_reads += 1
        scanned = scan(text, source, self._family)
        plans, structural = plan_table(scanned.table)
        packets = scanned.table.packets
        bytes_ = scanned.table.bytes
        all_structural = decode_diagnostics + scanned.diagnostics + structural
        records_by_plan: list[CounterRecord | None] = []
        value_diagnostics: dict[int, Diagnostic] = {}
        for index, plan in enumerate(plans):
            outcome = evaluate_plan(plan, packets, bytes_)
            if isinstance(outcome, Diagnostic):
                value_diagnostics[index] = outcome
                outcome = None
            records_by_plan.append(outcome)
        result.records.extend([record for record in records_by_plan if record is not None])
        result.diagnostics.extend(all_structural)
        result.diagnostics.extend(value_diagnostics.values())
        result.rules_seen += scanned.rule_lines
        result.lines_seen += scanned.lines
        if not (scanned.counters_in_prefix_form and scanned.rule_lines and not decode_diagnostics):
            self._remembered.pop(source, None)
            return
        parts = _COUNTER_PREFIX.split("\n" + text)
        counters = parts[1::2]
        if len(counters) != scanned.rule_lines:
            self._remembered.pop(source, None)
            return
        plans_of_slot: dict[int, list[int]] = {}
        for index, plan in enumerate(plans):
            for slot in plan.slots:
                if slot >= 0:
                    plans_of_slot.setdefault(slot, []).append(index)
        self._remembered[source] = _Remembered(
            parts[0::2],
            counters,
            plans,
            plans_of_slot,
            records_by_plan,
            value_diagnostics,
            all_structural,
            scanned.rule_lines,
            scanned.lines,
        )
