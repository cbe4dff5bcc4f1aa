"""Plans laid out column-wise and evaluated with C-level loops: the agent's steady state.

The same records as :func:`node_agent.attribution.plans.evaluate`, without a Python loop
per record; after the first read only the records whose counters changed are rebuilt.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic
from node_agent.attribution.plans import RecordPlan, evaluate, new_plan, new_record


class PlanColumns(NamedTuple):
    """Plans of one shape laid out column-wise: one list per field, the slots as one list
    per slot position (one for single-slot plans, three for denies)."""

    keys: list[CounterKey]
    slots: tuple[list[int], ...]
    rule_ids: list[tuple[str, ...]]
    comments: list[str]
    members: list[tuple[str, ...]]
    lines: list[int]
    sources: list[str]

    @classmethod
    def of(cls, plans: Sequence[RecordPlan], width: int) -> PlanColumns:
        return cls(
            [plan.key for plan in plans],
            tuple([plan.slots[position] for plan in plans] for position in range(width)),
            [plan.rule_ids for plan in plans],
            [plan.chain_comment for plan in plans],
            [plan.group_members for plan in plans],
            [plan.line for plan in plans],
            [plan.source for plan in plans],
        )

    def extend(self, other: PlanColumns) -> None:
        """Append another's plans (of the same width) in place."""
        self.keys.extend(other.keys)
        for column, more in zip(self.slots, other.slots, strict=True):
            column.extend(more)
        self.rule_ids.extend(other.rule_ids)
        self.comments.extend(other.comments)
        self.members.extend(other.members)
        self.lines.extend(other.lines)
        self.sources.extend(other.sources)

    def plans(self) -> list[RecordPlan]:
        keys, slots, rule_ids, comments, members, lines, sources = self
        return list(
            map(
                new_plan,
                zip(keys, zip(*slots, strict=True), rule_ids, comments, members, lines, sources, strict=True),
            )
        )


class CompiledPlans:
    """Plans laid out column-wise so a read is evaluated with C-level loops (``map``,
    ``zip``) instead of a Python loop per record: the agent's steady state.

    Records come out single-slot plans first, then denies, each group in plan order.
    """

    __slots__ = ("_deny_plans", "_first_line", "_readers", "_single_plans", "deny", "single")

    def __init__(self, plans: Sequence[RecordPlan]) -> None:
        self._setup(
            PlanColumns.of([plan for plan in plans if len(plan.slots) == 1], 1),
            PlanColumns.of([plan for plan in plans if len(plan.slots) == 3], 3),
        )

    @classmethod
    def from_columns(
        cls, single: PlanColumns, deny: PlanColumns, first_line: int | None = None
    ) -> CompiledPlans:
        """From columns built directly (the columnar cold parse), without a RecordPlan per
        record.  ``first_line``: every plan's line is that of its first slot, the columns'
        ``lines`` are not kept (a re-parse after churn would otherwise rewrite all of them
        whenever the lines before the rules change; they are only read for the diagnostics
        of a read that cannot be evaluated column-wise)."""
        compiled = cls.__new__(cls)
        compiled._setup(single, deny, first_line)
        return compiled

    def _setup(self, single: PlanColumns, deny: PlanColumns, first_line: int | None = None) -> None:
        # A deny's slot -1 ("no next rule") reads the zero the evaluation appends to the arrays.
        self.single = single
        self.deny = deny
        self._first_line = first_line
        self._single_plans: list[RecordPlan] | None = None
        self._deny_plans: list[RecordPlan] | None = None
        self._readers: tuple[int, ReaderIndex, ReaderIndex] | None = None
        """(table size, which single-slot plans and which denies read each slot), built by
        the first :meth:`reevaluate`."""

    @property
    def readers(self) -> tuple[int, ReaderIndex, ReaderIndex] | None:
        """(table size, which single-slot plans and which denies read each slot), once
        :meth:`reevaluate` built it or :meth:`use_readers` gave it."""
        return self._readers

    @property
    def single_plans(self) -> list[RecordPlan]:
        if self._single_plans is None:
            self._single_plans = self._with_lines(self.single).plans()
        return self._single_plans

    @property
    def deny_plans(self) -> list[RecordPlan]:
        if self._deny_plans is None:
            self._deny_plans = self._with_lines(self.deny).plans()
        return self._deny_plans

    def _with_lines(self, columns: PlanColumns) -> PlanColumns:
        if self._first_line is None:
            return columns
        return columns._replace(lines=list(map(self._first_line.__add__, columns.slots[0])))

    def evaluate(self, packets: list[int], octets: list[int]) -> tuple[list[CounterRecord], list[Diagnostic]]:
        """Every record of one read; the same records as :func:`evaluate` on ``plans``."""
        split = self.evaluate_split(packets, octets)
        if split is not None:
            return split[0] + split[1], []
        if min(packets, default=0) < 0 or min(octets, default=0) < 0:
            records, diagnostics = evaluate(self.single_plans, packets, octets)
            more, more_diagnostics = evaluate(self.deny_plans, packets, octets)
            return records + more, diagnostics + more_diagnostics
        packets = [*packets, 0]
        octets = [*octets, 0]
        more, diagnostics = evaluate(self.deny_plans, packets, octets)
        return self._singles(packets, octets, None) + more, diagnostics

    def evaluate_split(
        self, packets: list[int], octets: list[int]
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """The single-slot and the deny records of one read, apart; None when a counter is
        unreadable (-1) or a deny comes out negative (then :meth:`evaluate` words why)."""
        if min(packets, default=0) < 0 or min(octets, default=0) < 0:
            return None
        packets = [*packets, 0]
        octets = [*octets, 0]
        deny = self._denies(packets, octets, None)
        if deny is None:
            return None
        return self._singles(packets, octets, None), deny

    def reevaluate(
        self,
        previous: tuple[list[CounterRecord], list[CounterRecord]],
        packets: list[int],
        octets: list[int],
        changed: Sequence[int],
        *,
        readable: bool = False,
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """:meth:`evaluate_split` of a read whose counters differ from those that gave
        ``previous`` only in the ``changed`` slots: only the records reading one are
        rebuilt (in steady state most counters stay put, most of them at zero).
        ``readable``: the caller knows no counter is -1 (unreadable)."""
        if not changed:
            return previous[0][:], previous[1][:]
        if not readable and (min(packets, default=0) < 0 or min(octets, default=0) < 0):
            return None
        size = len(packets)
        packets = [*packets, 0]
        octets = [*octets, 0]
        if self._readers is None or self._readers[0] != size:
            self._readers = (size, ReaderIndex(self.single.slots, size), ReaderIndex(self.deny.slots, size))
        _, single_readers, deny_readers = self._readers
        return self._update(
            previous, packets, octets, (single_readers.positions(changed), deny_readers.positions(changed))
        )

    def refresh(
        self,
        previous: tuple[list[CounterRecord], list[CounterRecord]],
        packets: list[int],
        octets: list[int],
        positions: tuple[list[int], list[int]],
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """:meth:`evaluate_split` when only the single-slot and deny records at
        ``positions`` need evaluating (the others in ``previous`` are right as they are: a
        re-parse after churn knows which); None as there.  No counter may be -1."""
        return self._update(previous, [*packets, 0], [*octets, 0], positions)

    def _update(
        self,
        previous: tuple[list[CounterRecord], list[CounterRecord]],
        packets: list[int],
        octets: list[int],
        positions: tuple[list[int], list[int]],
    ) -> tuple[list[CounterRecord], list[CounterRecord]] | None:
        """``previous`` with the records at ``positions`` evaluated anew, from arrays ending
        in a 0; None when a derived deny is not exact."""
        single_positions, deny_positions = positions
        fresh_denies = self._denies(packets, octets, deny_positions)
        if fresh_denies is None:
            return None
        single = previous[0][:]
        for position, record in zip(
            single_positions, self._singles(packets, octets, single_positions), strict=True
        ):
            single[position] = record
        deny = previous[1][:]
        for position, record in zip(deny_positions, fresh_denies, strict=True):
            deny[position] = record
        return single, deny

    def _singles(
        self, packets: list[int], octets: list[int], positions: list[int] | None
    ) -> list[CounterRecord]:
        """Single-slot records (all, or those at ``positions``), from arrays ending in a 0."""
        keys, (slots,), rule_ids, comments, members, _, _ = _select(self.single, positions)
        return list(
            map(
                new_record,
                zip(
                    keys,
                    map(packets.__getitem__, slots),
                    map(octets.__getitem__, slots),
                    rule_ids,
                    comments,
                    members,
                    strict=True,
                ),
            )
        )

    def _denies(
        self, packets: list[int], octets: list[int], positions: list[int] | None
    ) -> list[CounterRecord] | None:
        """Deny records (all, or those at ``positions``); None if one comes out negative."""
        keys, (entered, accepted, after), rule_ids, comments, members, _, _ = _select(self.deny, positions)
        deny_packets = _deny_counts(packets, entered, accepted, after)
        deny_octets = _deny_counts(octets, entered, accepted, after)
        if min(deny_packets, default=0) < 0 or min(deny_octets, default=0) < 0:
            return None
        return list(
            map(new_record, zip(keys, deny_packets, deny_octets, rule_ids, comments, members, strict=True))
        )


class ReaderIndex:
    """Which plans of one column group read each counter slot, per slot position: a slot's
    first reader in a flat list (C-level lookups; in felix's tables a slot has one reader
    per slot position), any others in a dict."""

    __slots__ = ("columns",)

    def __init__(self, slot_columns: tuple[list[int], ...], size: int) -> None:
        self.columns: list[tuple[list[int], dict[int, list[int]]]] = []
        """Per slot position: (first reader of each slot, -1 for none; the others)."""
        for column in slot_columns:
            # Index ``size`` is the zero appended for slot -1 ("no next rule"): never changed.
            first = [-1] * (size + 1)
            more: dict[int, list[int]] = {}
            for position, slot in enumerate(column):
                if first[slot] == -1:
                    first[slot] = position
                else:
                    more.setdefault(slot % (size + 1), []).append(position)
            self.columns.append((first, more))

    def positions(self, slots: Sequence[int]) -> list[int]:
        """The positions of the plans that read any of ``slots`` (in no particular order)."""
        found: set[int] = set()
        for first, more in self.columns:
            found.update(map(first.__getitem__, slots))
            if more:
                for slot in more.keys() & set(slots):
                    found.update(more[slot])
        found.discard(-1)
        return list(found)


def _deny_counts(counters: list[int], entered: list[int], accepted: list[int], after: list[int]) -> list[int]:
    """Each deny's count (entered - accepted - after: the jump's, its accept return's and the
    next rule's counters), from a counter array ending in the 0 that slot -1 reads; a
    negative one makes a read's denies not column-wise evaluable (see :meth:`evaluate`)."""
    get = counters.__getitem__
    return list(map(_sub, map(_sub, map(get, entered), map(get, accepted)), map(get, after)))


def _select(columns: PlanColumns, positions: list[int] | None) -> PlanColumns:
    """The plans at ``positions`` (the evaluated columns only), or all of them."""
    if positions is None:
        return columns
    keys, slots, rule_ids, comments, members, _, _ = columns

    def pick(column: list[Any]) -> list[Any]:
        return list(map(column.__getitem__, positions))

    return PlanColumns(
        pick(keys), tuple(pick(slot) for slot in slots), pick(rule_ids), pick(comments), pick(members), [], []
    )


_sub = operator.sub
