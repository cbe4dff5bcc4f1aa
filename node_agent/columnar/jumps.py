"""Stage 6 of the columnar parse: the policy and group jumps of endpoint chains (the bulk
of a table), paired with their ``Return if policy accepted`` rules, column-wise.

Why column-wise: a big node has ~70k such jumps, all the same two-rule shape, so every
per-jump value (target, tier, the accept rule after it, the rule after that) is one
C-level ``map``/``compress`` over slot lists; Python loops run only per distinct target.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES, POLICY_ACCEPTED_MARKER
from node_agent.attribution.chains import ChainFacts
from node_agent.columnar.rows import Irregular
from node_agent.columnar.rules import RuleClass, RuleColumns
from node_agent.columnar.runs import Runs

__all__ = ["AcceptedJumps", "Jumps", "accepted_jumps", "jumps_of", "policy_tiers"]


@dataclass(slots=True)
class Jumps:
    """Every policy/group jump of the endpoint chains, in slot order."""

    slots: list[int]
    targets: list[str]
    tiers: list[str]
    distinct: list[str]
    """The targets, each once, in order of first jump."""
    groups: bool
    """Whether any target is a group chain."""


def jumps_of(columns: RuleColumns, tier_of: list[str], facts: ChainFacts) -> Jumps:
    """The jumps (:attr:`RuleClass.JUMP` slots) with their targets and tiers.

    :class:`Irregular` when a target or a group's member is not in the dump: the general
    path words that ``missing_chain`` diagnostic.
    """
    classes = columns.classes
    # ``operator.is_`` (classes are enum members): a builtin call, twice as fast per slot as
    # the bound ``RuleClass.JUMP.__eq__``.
    slots = list(
        itertools.compress(range(len(classes)), map(operator.is_, classes, itertools.repeat(RuleClass.JUMP)))
    )
    targets = list(map(columns.targets.__getitem__, slots))
    distinct = list(dict.fromkeys(targets))
    present = facts.present
    groups = False
    for target in distinct:
        if target not in present:
            raise Irregular
        if target.startswith(GROUP_CHAIN_PREFIXES):
            groups = True
            for member in facts.group_members(target):
                if member not in present:
                    raise Irregular
    return Jumps(slots, targets, list(map(tier_of.__getitem__, slots)), distinct, groups)


def policy_tiers(jumps: Jumps, facts: ChainFacts) -> dict[str, str]:
    """The tier of each policy (and group) chain: that of its first jump, as the general
    planner records it for the ``policy_rule`` records of the policy chains."""
    if not jumps.groups:
        return dict(zip(reversed(jumps.targets), reversed(jumps.tiers), strict=True))
    tiers: dict[str, str] = {}
    for target, tier in zip(jumps.targets, jumps.tiers, strict=True):
        if target.startswith(GROUP_CHAIN_PREFIXES):
            for member in facts.group_members(target):
                tiers.setdefault(member, tier)
        tiers.setdefault(target, tier)
    return tiers


@dataclass(slots=True)
class AcceptedJumps:
    """The jumps followed (in their chain) by ``Return if policy accepted``: one
    ``policy_accept`` record each (the accept rule's counter), and a ``policy_deny`` one
    (entered - accepted - after) where that is exact.  Columns, one entry per such jump."""

    entered: list[int]
    """The jump's slot: what entered the policy."""
    following: list[int]
    """The accept return's slot."""
    after: list[int]
    """The slot of the rule after the accept return, or -1 at the end of the chain."""
    targets: list[str]
    tiers: list[str]


def accepted_jumps(jumps: Jumps, columns: RuleColumns, runs: Runs, facts: ChainFacts) -> AcceptedJumps:
    """The jumps whose next rule, in the same chain, is their accept return.  What only
    their records say (endpoint, comments, members) is left to
    :func:`~node_agent.columnar.assemble.compile_plans`: ``parse --format summary`` counts
    these jumps without it."""
    end_of = runs.end_of
    following_of = list(map(operator.add, jumps.slots, itertools.repeat(1)))
    # probes[count] is "": a jump on the last slot reads it (and its end test fails anyway).
    flags = list(
        map(
            operator.and_,
            map(operator.lt, following_of, map(end_of.__getitem__, jumps.slots)),
            map(
                operator.contains,
                map(columns.probes.__getitem__, following_of),
                itertools.repeat(POLICY_ACCEPTED_MARKER),
            ),
        )
    )
    entered = list(itertools.compress(jumps.slots, flags))
    targets = list(itertools.compress(jumps.targets, flags))
    following = list(itertools.compress(following_of, flags))
    # The rule after the accept, or -1 where the accept ends its chain (rare: fixed up one
    # by one; each arithmetic pass over 70k slots makes 70k new ints).
    after = list(map(operator.add, following, itertools.repeat(1)))
    for at in itertools.compress(
        range(len(after)), map(operator.ge, after, map(end_of.__getitem__, entered))
    ):
        after[at] = -1
    return AcceptedJumps(
        entered,
        following,
        after,
        targets,
        list(itertools.compress(jumps.tiers, flags)),
    )
