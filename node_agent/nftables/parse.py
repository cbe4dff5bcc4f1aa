"""``nft -j list table ip[6] calico`` to counter records, with a steady-state fast path.

The records are the iptables parser's, by the same attribution
(:func:`~node_agent.attribution.planning.plan_table` and
:class:`~node_agent.attribution.compiled.CompiledPlans`) over the filter layer read as a
filter table (:mod:`node_agent.nftables.translate`).  Only tables named ``calico`` of
family ``ip``/``ip6`` are Calico's; other tables in the input (``nft -j list ruleset``)
only count as rules seen.

Steady state: ``nft -j`` prints every counter as ``"packets": P, "bytes": B``.  One
regular-expression split takes the text apart into those numbers and the text between
them; when the text between is the previous read's, the rules are the same and only
counters moved: the numbers that changed are converted and only the records reading them
rebuilt (:meth:`~node_agent.attribution.compiled.CompiledPlans.reevaluate`), without
decoding the JSON.  The fast path is used only if the full parse showed that those
numbers are exactly the rules' counters, in order.
"""

from __future__ import annotations

import itertools
import operator
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
_MAX_COUNTER = 2**64 - 1


@dataclass(slots=True)
class _CompiledTable:
    compiled: CompiledPlans
    counter_slots: list[int]
    """The slot of each of this table's ``"packets"`` occurrences in the text, in order."""
    packets: list[int]
    octets: list[int]
    split: tuple[list[CounterRecord], list[CounterRecord]] | None
    """The last read's single-slot and deny records (None: a counter was unreadable)."""


@dataclass(slots=True)
class _Remembered:
    skeleton: list[str]
    """The text between the counters (``_COUNTERS.split`` without the numbers)."""
    counter_text: tuple[list[str], list[str]]
    """The last read's packet and byte numbers, as text."""
    owners: list[tuple[_CompiledTable, int]]
    """For each counter in the text, its table and slot."""
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
        parts = _COUNTERS.split(text)
        remembered = self._remembered.get(source)
        if remembered is not None and self._fast(remembered, parts, result):
            return remembered.rules_seen
        return self._full(source, text, parts, result)

    def _fast(self, remembered: _Remembered, parts: list[str], result: ParseResult) -> bool:
        """Only the counters changed since the last read: re-evaluate what reads them."""
        skeleton = parts[0::3]
        if len(skeleton) != len(remembered.skeleton) or skeleton != remembered.skeleton:
            return False
        new_packets, new_octets = parts[1::3], parts[2::3]
        old_packets, old_octets = remembered.counter_text
        changed = [
            index
            for index in itertools.compress(
                range(len(new_packets)),
                map(
                    operator.or_,
                    map(operator.ne, new_packets, old_packets),
                    map(operator.ne, new_octets, old_octets),
                ),
            )
        ]
        try:
            values = [(int(new_packets[index]), int(new_octets[index])) for index in changed]
        except ValueError:  # over int()'s digit limit: the full parse reports it
            return False
        if any(p > _MAX_COUNTER or o > _MAX_COUNTER for p, o in values):
            return False
        changed_slots: dict[int, list[int]] = {}
        owners = remembered.owners
        for index, (packet_count, octet_count) in zip(changed, values, strict=True):
            table, slot = owners[index]
            table.packets[slot] = packet_count
            table.octets[slot] = octet_count
            changed_slots.setdefault(id(table), []).append(slot)
        for table in remembered.tables:
            slots = changed_slots.get(id(table))
            split = None
            if table.split is not None:
                split = (
                    table.compiled.reevaluate(table.split, table.packets, table.octets, slots, readable=True)
                    if slots
                    else table.split
                )
            else:
                split = table.compiled.evaluate_split(table.packets, table.octets)
            table.split = split
            if split is not None:
                _extend(result, split[0] + split[1])
            else:
                records, diagnostics = table.compiled.evaluate(table.packets, table.octets)
                _extend(result, records)
                result.diagnostics.extend(diagnostics)
        remembered.counter_text = (new_packets, new_octets)
        result.diagnostics.extend(remembered.structural)
        result.rules_seen += remembered.rules_seen
        result.lines_seen += remembered.items
        self.fast_path_reads += 1
        return True

    def _full(self, source: str, text: str, parts: list[str], result: ParseResult) -> int:
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
            split = compiled.evaluate_split(packets, octets)
            if split is not None:
                _extend(result, split[0] + split[1])
            else:
                records, diagnostics = compiled.evaluate(packets, octets)
                _extend(result, records)
                result.diagnostics.extend(diagnostics)
            tables.append(_CompiledTable(compiled, read.counter_slots, packets, octets, split))
        if not calico_tables and not document.diagnostics:
            structural.append(
                Diagnostic(
                    "no_calico_table", "no `table ip calico` or `table ip6 calico` in the input", 0, source
                )
            )
        result.diagnostics.extend(structural)
        result.rules_seen += rules_seen
        result.lines_seen += document.items
        owners = [(table, slot) for table in tables for slot in table.counter_slots]
        counter_text = (parts[1::3], parts[2::3])
        if not document.diagnostics and _counters_match(counter_text, owners):
            self._remembered[source] = _Remembered(
                parts[0::3], counter_text, owners, tables, structural, rules_seen, document.items
            )
        else:
            self._remembered.pop(source, None)
        return rules_seen


def _counters_match(
    counter_text: tuple[list[str], list[str]], owners: list[tuple[_CompiledTable, int]]
) -> bool:
    """Whether the ``"packets"`` numbers of the text are exactly the tables' rule counters
    in slot order (no counter outside Calico's tables, no named counter objects)."""
    packets, octets = counter_text
    if not owners or len(packets) != len(owners):
        return False
    return all(
        table.packets[slot] == int(p) and table.octets[slot] == int(o)
        for (table, slot), p, o in zip(owners, packets, octets, strict=True)
    )


def _extend(result: ParseResult, records: list[CounterRecord]) -> None:
    if result.records:
        result.records.extend(records)
    else:
        result.records = records
