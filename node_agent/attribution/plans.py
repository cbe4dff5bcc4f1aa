"""What a record plan is, and its reference evaluation: one plan, one read, at a time.

:mod:`node_agent.attribution.compiled` evaluates the same plans column-wise and must give
the same records.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic


class RecordPlan(NamedTuple):
    """Which rule counters make up one record.  One slot: that rule's value; three slots
    (a deny): ``a - b - c``, slot ``-1`` standing for zero.  A named tuple: a big node
    has ~100k plans and :func:`evaluate` unpacks them on every read."""

    key: CounterKey
    slots: tuple[int, ...]
    rule_ids: tuple[str, ...]
    chain_comment: str = ""
    group_members: tuple[str, ...] = ()
    line: int = 0
    source: str = ""


new_key = functools.partial(tuple.__new__, CounterKey)
"""Builds a CounterKey from a full tuple of its fields, without the Python-level __new__."""
new_plan = functools.partial(tuple.__new__, RecordPlan)
new_record = functools.partial(tuple.__new__, CounterRecord)
"""Builds a CounterRecord from a full tuple of its fields, without the Python-level __new__."""


def evaluate_plan(
    plan: RecordPlan, packets: Sequence[int], octets: Sequence[int]
) -> CounterRecord | Diagnostic | None:
    """One plan's record from one read's counters (``-1`` marks an unreadable counter).

    None when the record would read an unreadable counter (the bad line already has its
    diagnostic); a ``deny_negative`` diagnostic when a deny comes out below zero (a
    counter reset between the reads of one table, or a hand-edited dump).
    """
    key, slots, rule_ids, chain_comment, group_members, line, source = plan
    if len(slots) == 1:
        slot = slots[0]
        value_packets = packets[slot]
        if value_packets < 0:
            return None
        return new_record((key, value_packets, octets[slot], rule_ids, chain_comment, group_members))
    entered, accepted, after = slots
    after_packets = packets[after] if after >= 0 else 0
    after_octets = octets[after] if after >= 0 else 0
    if packets[entered] < 0 or packets[accepted] < 0 or after_packets < 0:
        return None
    value_packets = packets[entered] - packets[accepted] - after_packets
    value_octets = octets[entered] - octets[accepted] - after_octets
    if value_packets < 0 or value_octets < 0:
        return Diagnostic(
            "deny_negative",
            f"deny for {key.chain} on {key.interface} computes to {value_packets} packets: "
            "counters inconsistent, left out",
            line,
            source,
        )
    return new_record((key, value_packets, value_octets, rule_ids, chain_comment, group_members))


def evaluate(
    plans: Sequence[RecordPlan],
    packets: Sequence[int],
    octets: Sequence[int],
) -> tuple[list[CounterRecord], list[Diagnostic]]:
    """Records from plans and one read's counters; see :func:`evaluate_plan`."""
    records: list[CounterRecord] = []
    diagnostics: list[Diagnostic] = []
    for plan in plans:
        outcome = evaluate_plan(plan, packets, octets)
        if isinstance(outcome, Diagnostic):
            diagnostics.append(outcome)
        elif outcome is not None:
            records.append(outcome)
    return records, diagnostics
