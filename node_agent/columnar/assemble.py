"""Stage 8 of the columnar parse: the plans as columns, ready to evaluate.

Why columns: :class:`~node_agent.attribution.compiled.CompiledPlans` evaluates plans laid out as
one list per field, so the accept and deny plans of the jumps are built straight into
that layout (a ``CounterKey`` per record, C-level) without a ``RecordPlan`` per record;
only the few other plans (drops, profiles, policy rules) are converted.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES
from calico_accountant.records import CounterKey, Direction, EndpointKind, Kind
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.compiled import CompiledPlans, PlanColumns
from node_agent.attribution.plans import RecordPlan, new_key
from node_agent.columnar.jumps import AcceptedJumps
from node_agent.columnar.rows import Rows
from node_agent.columnar.rules import RuleColumns
from node_agent.columnar.runs import Runs

__all__ = ["compile_plans"]

_T = TypeVar("_T")


def compile_plans(
    rows: Rows,
    columns: RuleColumns,
    runs: Runs,
    facts: ChainFacts,
    accepted: AcceptedJumps,
    exact: list[bool] | None,
    other_plans: list[RecordPlan],
    source: str,
) -> CompiledPlans:
    """The ``policy_accept`` plan of every accepted jump, then ``other_plans``, and the
    ``policy_deny`` plan of every accepted jump whose deny is ``exact`` (None: all).

    ``accepted`` is consumed: its columns become the plans' columns, without copies.
    """

    def denied(column: list[_T]) -> list[_T]:
        return list(column if exact is None else itertools.compress(column, exact))

    get_id = columns.rule_ids.__getitem__  # [-1] is "": the id of slot -1
    first_line = rows.first_line
    ends = _EndpointColumns.of(accepted, runs, facts)
    deny_entered = denied(accepted.entered)
    deny_accepted = denied(accepted.following)
    deny_after = denied(accepted.after)
    deny = PlanColumns(
        _keys(Kind.POLICY_DENY, rows.family, accepted, ends, exact),
        (deny_entered, deny_accepted, deny_after),
        list(
            zip(map(get_id, deny_entered), map(get_id, deny_accepted), map(get_id, deny_after), strict=True)
        ),
        denied(ends.comments),
        denied(ends.members),
        list(map(operator.add, deny_entered, itertools.repeat(first_line))),
        [source] * len(deny_entered),
    )
    single = PlanColumns(
        _keys(Kind.POLICY_ACCEPT, rows.family, accepted, ends, None),
        (accepted.following,),
        list(zip(map(get_id, accepted.following))),
        ends.comments,
        ends.members,
        list(map(operator.add, accepted.following, itertools.repeat(first_line))),
        [source] * len(accepted.entered),
    )
    # After the denies took copies of the shared columns: extending in place is safe.
    single.extend(PlanColumns.of(other_plans, 1))
    return CompiledPlans.from_columns(single, deny)


@dataclass(slots=True)
class _EndpointColumns:
    """What only the records of accepted jumps say, one entry per jump: the chain comment
    and group members of its target, and its endpoint chain's direction, interface and kind."""

    comments: list[str]
    members: list[tuple[str, ...]]
    directions: list[Direction | None]
    interfaces: list[str]
    endpoints: list[EndpointKind]

    @classmethod
    def of(cls, accepted: AcceptedJumps, runs: Runs, facts: ChainFacts) -> _EndpointColumns:
        distinct = dict.fromkeys(accepted.targets)
        comment_of = {target: facts.chain_comment(target) for target in distinct}
        members_of = {
            target: facts.group_members(target) if target.startswith(GROUP_CHAIN_PREFIXES) else ()
            for target in distinct
        }
        entered = accepted.entered
        return cls(
            list(map(comment_of.__getitem__, accepted.targets)),
            list(map(members_of.__getitem__, accepted.targets)),
            list(map(runs.direction_of.__getitem__, entered)),
            list(map(runs.interface_of.__getitem__, entered)),
            list(map(runs.endpoint_of.__getitem__, entered)),
        )


def _keys(
    kind: Kind, family: int, accepted: AcceptedJumps, ends: _EndpointColumns, selected: list[bool] | None
) -> list[CounterKey]:
    """The record keys of the accepted jumps (those ``selected``, or all)."""

    def pick(column: list[_T]) -> Iterable[_T]:
        return column if selected is None else itertools.compress(column, selected)

    return list(
        map(
            new_key,
            zip(
                itertools.repeat(kind),
                itertools.repeat(family),
                pick(ends.directions),
                pick(ends.interfaces),
                pick(accepted.targets),
                pick(accepted.tiers),
                itertools.repeat(-1),
                itertools.repeat(""),
                pick(ends.endpoints),
            ),
        )
    )
