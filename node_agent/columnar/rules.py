"""Stage 3 of the columnar parse: what each rule is (target, class, rule id), and the
non-endpoint chains as the general planner's :class:`~node_agent.iptables_save.Rule` tuples.

A big table has ~150k rule lines but only a few thousand distinct rests (the text after
the chain and leading id): a rule's target and class are worked out once per distinct
rest and spread to every line by a C-level dict lookup.
"""

from __future__ import annotations

import enum
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from calico_accountant.felix.chains import POLICY_JUMP_PREFIXES, PROFILE_CHAIN_PREFIXES
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.marks import learn_marks_from
from node_agent.columnar.rows import Irregular, Rows, body_of
from node_agent.columnar.runs import Runs
from node_agent.iptables_save import Rule, new_rule, rule_id_of, target_of

__all__ = [
    "CLASS_BY_PREFIX",
    "PREFIX_LENGTH",
    "RuleClass",
    "RuleColumns",
    "chain_facts",
    "positions",
    "rule_at",
    "rule_columns",
]


class RuleClass(enum.IntEnum):
    """How an endpoint-chain rule is planned, told by the first 8 characters of its target."""

    OTHER = 0
    """Nothing to plan (or not in an endpoint chain)."""
    JUMP = 1
    """A policy or group jump: the bulk, planned column-wise."""
    SPECIAL = 2
    """A tier marker (MARK), a drop or a profile jump: looked at one by one."""


PREFIX_LENGTH = 8
"""Felix's chain prefixes are 8 characters (``cali-pi-``); profile ones 9 (``cali-pri-``)."""
assert all(len(prefix) == PREFIX_LENGTH for prefix in POLICY_JUMP_PREFIXES), (
    "a jump is classed by its prefix alone: its first 8 characters must be the whole prefix"
)
CLASS_BY_PREFIX: dict[str, RuleClass] = {
    **{prefix: RuleClass.JUMP for prefix in POLICY_JUMP_PREFIXES},
    # The first 8 characters of a 9-character prefix: a profile jump is told apart later.
    **{prefix[:PREFIX_LENGTH]: RuleClass.SPECIAL for prefix in PROFILE_CHAIN_PREFIXES},
    **dict.fromkeys(("MARK", "DROP", "REJECT"), RuleClass.SPECIAL),
}
"""Endpoint-chain rules by the first 8 characters of their target (the only rules whose
class is not :attr:`RuleClass.OTHER`)."""


@dataclass(slots=True)
class RuleColumns:
    """Per slot: what a rule is.  ``rule_ids`` and ``probes`` have one more entry, "" at
    index ``count``, read for slot -1 ("no such rule") and for the slot past the last."""

    targets: list[str]
    classes: list[RuleClass]
    """:attr:`RuleClass.OTHER` for every rule outside endpoint chains."""
    rule_ids: list[str]
    probes: list[str]
    """What "does this rule's body contain <marker>" can be asked of: for markers made of
    words and spaces, the text after the leading id comment answers as the body would."""


def rule_columns(rows: Rows, runs: Runs) -> RuleColumns:
    """Targets, classes, rule ids and probes of every rule; :class:`Irregular` for a line
    the row pattern did not take apart (a newline in a rest) or with escapes/odd quoting.

    Why per distinct rest: targets are the word after a line's last ``-j`` (or ``-g``), as
    the general scan finds them, and for a line with a leading id comment that is always
    inside the rest; the rare line without one is completed from its whole body.
    """
    # One pass over the rests finds the distinct ones and the target of every line: the
    # target is worked out on a rest's first sighting (_TargetOfRest.__missing__).
    target_of_rest = _TargetOfRest()
    targets = list(map(target_of_rest.__getitem__, rows.rests))
    distinct = list(target_of_rest)
    # The checks of ~18k distinct rests (a node with thousands of policy chains) as C-level
    # passes: one search of all of them joined, one quote count each.
    joined = "".join(distinct)
    if "\n" in joined or "\\" in joined or "'" in joined:
        raise Irregular
    if any(map((1).__and__, map(str.count, distinct, itertools.repeat('"')))):
        raise Irregular
    # Classes by target, not by rest: a lookup of a short target (one object per distinct
    # rest) is much cheaper than one of a ~100-character rest (each line its own object,
    # compared in full on a hit).
    distinct_targets = set(target_of_rest.values())
    prefixes = map(_PREFIX, distinct_targets)
    class_of_target = dict(
        zip(
            distinct_targets,
            map(CLASS_BY_PREFIX.get, prefixes, itertools.repeat(RuleClass.OTHER)),
            strict=True,
        )
    )
    classes = list(map(class_of_target.__getitem__, targets))
    # Every None (no leading id) is replaced in the loop below.
    rule_ids = cast(list[str], [*rows.leading_ids, ""])
    probes = [*rows.rests, ""]

    # Lines without felix's leading id comment (the pattern took only their chain): their
    # probe is the whole body.  Their target is the rest's (the body is "-A CHAIN " + rest
    # and a chain name holds no space) unless the rest starts with the jump; their rule id
    # is the rest's (a chain name holds no quote).
    rests = rows.rests
    for index in positions(rows.leading_ids, None):
        body = probes[index] = body_of(rows, index)
        rest = rests[index]
        if rest.startswith(("-j ", "-g ")):
            target = targets[index] = target_of(body)
            classes[index] = CLASS_BY_PREFIX.get(target[:PREFIX_LENGTH], RuleClass.OTHER)
        start = rest.find('"cali:')
        rule_ids[index] = rest[start + 6 : rest.find('"', start + 6)] if start != -1 else rule_id_of(body)

    for start, length, endpoint in zip(runs.starts, runs.lengths, runs.endpoint, strict=True):
        if not endpoint:
            classes[start : start + length] = itertools.repeat(RuleClass.OTHER, length)
    return RuleColumns(targets, classes, rule_ids, probes)


_PREFIX = operator.itemgetter(slice(PREFIX_LENGTH))


class _TargetOfRest(dict[str, str]):
    """Rest -> target, each worked out when first asked for (a C-level ``map`` over the
    rests calls Python only once per distinct rest)."""

    def __missing__(self, rest: str) -> str:
        target = self[rest] = _word_after_jump(rest)
        return target


def _word_after_jump(rest: str) -> str:
    """:func:`~node_agent.iptables_save.target_of`, with the common case (a ``-j``) C-level."""
    _, jump, after = rest.rpartition(" -j ")
    if not jump:
        return target_of(rest)
    return after.partition(" ")[0]


def positions(values: Sequence[object], wanted: object) -> list[int]:
    """Indexes of ``wanted`` in ``values`` (found by C-level ``list.index``: for rare values)."""
    return list(_positions(values, wanted))


def _positions(values: Sequence[object], wanted: object) -> Iterator[int]:
    start = 0
    try:
        while True:
            start = values.index(wanted, start)
            yield start
            start += 1
    except ValueError:
        return


def rule_at(rows: Rows, columns: RuleColumns, index: int) -> Rule:
    """The rule at slot ``index`` as the general scan gives it, for the planner's helpers."""
    return new_rule(
        (
            columns.targets[index],
            body_of(rows, index),
            index,
            rows.first_line + index,
            columns.rule_ids[index],
        )
    )


def chain_facts(rows: Rows, columns: RuleColumns, runs: Runs) -> ChainFacts:
    """What the planner asks about the chains endpoint chains jump to, and felix's mark bits.

    Why the general planner's helpers: the chains other than endpoint chains (policies,
    groups, profiles, ...) hold ~2% of a big table's rules, so they are built as
    :class:`Rule` tuples and the same code as the general path plans them.  The mark bits
    are learned from the endpoint chains' first rules only (built lazily, as far as needed).
    """

    def rules_of(run: int) -> list[Rule]:
        return [rule_at(rows, columns, index) for index in range(runs.starts[run], runs.ends[run])]

    other_chains = {name: rules_of(run) for run, name in enumerate(runs.names) if not runs.endpoint[run]}
    marks = learn_marks_from((runs.names[run], rules_of(run)) for run in runs.endpoint_runs)
    return ChainFacts(other_chains, runs.present, marks)
