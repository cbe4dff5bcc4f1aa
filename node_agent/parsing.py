"""The parser's public API: dumps of one node in, counter records out.

:func:`parse_node` is the one-shot parse (the ``parse`` command, ``report``, tests).
:class:`SteadyStateParser` is what the agent uses: the same result, but when a table's
rule text is unchanged since the previous read it splits off only the
``[packets:bytes]`` prefixes, and re-evaluates only the records whose counters moved.
"""

from __future__ import annotations

import gc
import itertools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant.records import CounterRecord, Diagnostic, ParseResult
from node_agent.attribution import CompiledPlans, plan_table
from node_agent.columnar import parse_columnar
from node_agent.iptables_save import MAX_COUNTER, decode_input, scan

__all__ = ["SteadyStateParser", "parse_node"]

_COUNTER_PREFIX = re.compile(r"\n\[(\d+):(\d+)\] ")
"""Splits a table into [text, packets, bytes, text, packets, bytes, ...]: the text pieces
are the rule set (the "skeleton"), the rest its counters.  ``\\n[`` is a literal prefix,
so the regex engine skips ahead with a fast search instead of trying every position."""


def _split_counters(text: str) -> list[str]:
    """[skeleton, packets, bytes, skeleton, ...] of a table; see :data:`_COUNTER_PREFIX`."""
    # iptables-save starts with a comment line; only a bare excerpt starts with a rule.
    return _COUNTER_PREFIX.split("\n" + text if text.startswith("[") else text)


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

    skeleton: list[str] | None
    """The rule text of the read (:func:`_split_counters`, counters left out); None until
    a later read asks, so a one-off parse never pays for it."""
    text: str | None
    """The read's text, kept until the skeleton is split off it."""
    compiled: CompiledPlans
    structural: list[Diagnostic]
    rules_seen: int
    lines_seen: int
    counter_text: tuple[list[str], list[str]] | None = None
    """The read's packet and byte counters as text, slot by slot (to spot which changed)."""
    counters: tuple[list[int], list[int]] | None = None
    """The same as numbers."""
    records: tuple[list[CounterRecord], list[CounterRecord]] | None = None
    """The read's single-slot and deny records, when it had no counter diagnostics."""


class SteadyStateParser:
    """Parses successive reads of the same node, reusing what unchanged rule text taught it.

    Correctness never depends on the cache: the fast path is taken only when the table
    text minus its counter prefixes is identical to the previous read's; then the saved
    attribution plan is evaluated on the new counters.
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
        if remembered.skeleton is None:
            assert remembered.text is not None
            remembered.skeleton = _split_counters(remembered.text)[0::3]
            remembered.text = None
        parts = _split_counters(text)
        if parts[0::3] != remembered.skeleton:
            return False
        packet_text = parts[1::3]
        byte_text = parts[2::3]
        compiled = remembered.compiled
        split: tuple[list[CounterRecord], list[CounterRecord]] | None
        if remembered.counter_text is not None and remembered.counters is not None:
            # Most counters do not move between reads: convert and re-evaluate only those that did.
            previous_packets, previous_bytes = remembered.counter_text
            changed = set(
                itertools.compress(
                    range(len(packet_text)),
                    map(
                        operator.or_,
                        map(operator.ne, packet_text, previous_packets),
                        map(operator.ne, byte_text, previous_bytes),
                    ),
                )
            )
            packets = remembered.counters[0][:]
            bytes_ = remembered.counters[1][:]
            for slot in changed:
                packets[slot] = int(packet_text[slot])
                bytes_[slot] = int(byte_text[slot])
                if packets[slot] > MAX_COUNTER or bytes_[slot] > MAX_COUNTER:
                    return False
            if remembered.records is not None:
                split = compiled.reevaluate(remembered.records, packets, bytes_, changed)
            else:
                split = compiled.evaluate_split(packets, bytes_)
        else:
            packets = list(map(int, packet_text))
            bytes_ = list(map(int, byte_text))
            if max(packets, default=0) > MAX_COUNTER or max(bytes_, default=0) > MAX_COUNTER:
                return False
            split = compiled.evaluate_split(packets, bytes_)
        if split is not None:
            records, diagnostics = split[0] + split[1], list[Diagnostic]()
        else:
            records, diagnostics = compiled.evaluate(packets, bytes_)
        remembered.counter_text = (packet_text, byte_text)
        remembered.counters = (packets, bytes_)
        remembered.records = split
        _add_records(result, records)
        result.diagnostics.extend(remembered.structural)
        result.diagnostics.extend(diagnostics)
        result.rules_seen += remembered.rules_seen
        result.lines_seen += remembered.lines_seen
        self.fast_path_reads += 1
        return True

    def _parse_full(
        self, source: str, text: str, decode_diagnostics: list[Diagnostic], result: ParseResult
    ) -> None:
        self.full_reads += 1
        columnar = None if decode_diagnostics else parse_columnar(text, source, self._family)
        if columnar is not None:
            split = columnar.compiled.evaluate_split(columnar.packets, columnar.bytes)
            if split is not None:
                records, diagnostics = split[0] + split[1], list[Diagnostic]()
            else:
                records, diagnostics = columnar.compiled.evaluate(columnar.packets, columnar.bytes)
            _add_records(result, records)
            result.diagnostics.extend(columnar.structural)
            result.diagnostics.extend(diagnostics)
            result.rules_seen += columnar.rule_lines
            result.lines_seen += columnar.lines
            # The skeleton is split off only if a later read needs it (see _Remembered).
            self._remembered[source] = _Remembered(
                None,
                text,
                columnar.compiled,
                columnar.structural,
                columnar.rule_lines,
                columnar.lines,
                columnar.counter_text,
                (columnar.packets, columnar.bytes),
                split,
            )
            return
        scanned = scan(text, source, self._family)
        plans, structural = plan_table(scanned.table)
        compiled = CompiledPlans(plans)
        records, diagnostics = compiled.evaluate(scanned.table.packets, scanned.table.bytes)
        all_structural = decode_diagnostics + scanned.diagnostics + structural
        _add_records(result, records)
        result.diagnostics.extend(all_structural)
        result.diagnostics.extend(diagnostics)
        result.rules_seen += scanned.rule_lines
        result.lines_seen += scanned.lines
        if scanned.counters_in_prefix_form and scanned.rule_lines and not decode_diagnostics:
            self._remembered[source] = _Remembered(
                None, text, compiled, all_structural, scanned.rule_lines, scanned.lines
            )
        else:
            self._remembered.pop(source, None)


def _add_records(result: ParseResult, records: list[CounterRecord]) -> None:
    """Append one table's records; the first table's list is taken as it is (no copy)."""
    if result.records:
        result.records.extend(records)
    else:
        result.records = records
