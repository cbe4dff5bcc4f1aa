"""``nft -j list table ip[6] calico`` to counter records, with a steady-state fast path.

The records are the iptables parser's, by the same attribution
(:func:`~node_agent.attribution.planning.plan_table` and
:class:`~node_agent.attribution.compiled.CompiledPlans`) over the filter layer read as a
filter table (:mod:`node_agent.nftables.translate`).  Only tables named ``calico`` of
family ``ip``/``ip6`` are Calico's; other tables in the input (``nft -j list ruleset``)
only count as rules seen.

Steady state: ``nft -j`` prints every counter as ``"packets": P, "bytes": B``.  When a
read with those numbers taken out is the same text as the previous read, the rules are
the same and only the counters moved: the numbers are read with one regular expression
and the saved plans evaluated again, without decoding the JSON.  The fast path is used
only if the full parse showed that those numbers are exactly the rules' counters, in
order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from calico_accountant.records import CounterRecord, Diagnostic, ParseResult
from node_agent.attribution.compiled import CompiledPlans
from node_agent.attribution.planning import plan_table
from node_agent.nftables.document import read_document
from node_agent.nftables.translate import to_filter_table

__all__ = ["TABLE_NAME", "NftParser"]

TABLE_NAME = "calico"
_COUNTERS = re.compile(r'"packets": ([0-9]+), "bytes": ([0-9]+)')


@dataclass(slots=True)
class _CompiledTable:
    compiled: CompiledPlans
    counter_slots: list[int]
    """The slot of each ``"packets"`` occurrence in the text, in order."""
    packets: list[int]
    octets: list[int]


@dataclass(slots=True)
class _Remembered:
    skeleton: str
    tables: list[_CompiledTable]
    structural: list[Diagnostic]
    rules_seen: int
    items: int


class NftParser:
    """Parses successive ``nft -j`` reads of the same sources (see the module docstring)."""

    def __init__(self, *, family: int | None = None) -> None:
        self._family = family
        self._remembered: dict[str, _Remembered] = {}
        self.fast_path_reads = 0
        self.full_reads = 0

    def parse_into(self, source: str, text: str, result: ParseResult) -> int:
        """Add one input's records and diagnostics to ``result``; returns its rules seen."""
        if not text.strip():
            result.diagnostics.append(
                Diagnostic("empty_input", "input is empty: no table to read", 0, source)
            )
            self._remembered.pop(source, None)
            return 0
        skeleton = _COUNTERS.sub("", text)
        remembered = self._remembered.get(source)
        if (
            remembered is not None
            and remembered.skeleton == skeleton
            and self._fast(remembered, text, result)
        ):
            return remembered.rules_seen
        return self._full(source, text, skeleton, result)

    def _fast(self, remembered: _Remembered, text: str, result: ParseResult) -> bool:
        found = _COUNTERS.findall(text)
        values = [(int(packets), int(octets)) for packets, octets in found]
        if any(p >= 2**64 or o >= 2**64 for p, o in values):
            return False
        position = 0
        for table in remembered.tables:
            for slot in table.counter_slots:
                table.packets[slot], table.octets[slot] = values[position]
                position += 1
        if position != len(values):
            return False
        for table in remembered.tables:
            records, diagnostics = table.compiled.evaluate(table.packets, table.octets)
            _extend(result, records)
            result.diagnostics.extend(diagnostics)
        result.diagnostics.extend(remembered.structural)
        result.rules_seen += remembered.rules_seen
        result.lines_seen += remembered.items
        self.fast_path_reads += 1
        return True

    def _full(self, source: str, text: str, skeleton: str, result: ParseResult) -> int:
        self.full_reads += 1
        document = read_document(text, source)
        structural = list(document.diagnostics)
        tables: list[_CompiledTable] = []
        rules_seen = 0
        calico_tables = 0
        for nft in document.tables:
            if nft.name != TABLE_NAME:
                rules_seen += len(nft.rules)
                continue
            family = self._family or nft.family
            if not family:
                structural.append(
                    Diagnostic(
                        "unsupported_family",
                        f"table {nft.family_name} {nft.name}: felix programs only ip and ip6",
                        0,
                        source,
                    )
                )
                rules_seen += len(nft.rules)
                continue
            calico_tables += 1
            read = to_filter_table(nft, source, family)
            rules_seen += read.rules
            plans, planning_diagnostics = plan_table(read.table)
            structural.extend(read.diagnostics)
            structural.extend(planning_diagnostics)
            compiled = CompiledPlans(plans)
            packets, octets = read.table.packets, read.table.octets
            records, diagnostics = compiled.evaluate(packets, octets)
            _extend(result, records)
            result.diagnostics.extend(diagnostics)
            slots = [slot for slot, value in enumerate(packets) if value >= 0]
            tables.append(_CompiledTable(compiled, slots, packets, octets))
        if not calico_tables and not document.diagnostics:
            structural.append(
                Diagnostic(
                    "no_calico_table", "no `table ip calico` or `table ip6 calico` in the input", 0, source
                )
            )
        result.diagnostics.extend(structural)
        result.rules_seen += rules_seen
        result.lines_seen += document.items
        if _counters_in_order(text, tables) and not document.diagnostics:
            self._remembered[source] = _Remembered(skeleton, tables, structural, rules_seen, document.items)
        else:
            self._remembered.pop(source, None)
        return rules_seen


def _counters_in_order(text: str, tables: list[_CompiledTable]) -> bool:
    """Whether the ``"packets"`` numbers of the text are exactly the tables' rule counters
    in slot order (no counter outside Calico's tables, no named counter objects)."""
    expected = [(table.packets[slot], table.octets[slot]) for table in tables for slot in table.counter_slots]
    found = [(int(packets), int(octets)) for packets, octets in _COUNTERS.findall(text)]
    return bool(expected) and expected == found


def _extend(result: ParseResult, records: list[CounterRecord]) -> None:
    if result.records:
        result.records.extend(records)
    else:
        result.records = records
