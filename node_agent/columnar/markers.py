"""Stages 4 and 5 of the columnar parse: the rare rules of endpoint chains that are read
one by one (:attr:`~node_agent.columnar.rules.RuleClass.SPECIAL`): tier markers, which
give every rule its tier, and drops and profile jumps, which give their own records.

Why by comment cache: what a rule's comments say depends only on its probe (the text
after felix's leading id comment, which is no marker), so thousands of tier markers and
drops share a handful of answers.
"""

from __future__ import annotations

import itertools
import operator

from calico_accountant.felix.chains import (
    ADMIN_DOWN_MARKER,
    NO_POLICY_MARKER,
    NO_PROFILE_MARKER,
    PROFILE_ACCEPTED_MARKER,
    PROFILE_CHAIN_PREFIXES,
    START_OF_POLICIES_MARKER,
    START_OF_TIER_MARKER,
    UNTIERED,
)
from calico_accountant.records import Kind
from node_agent.attribution.chains import ChainFacts
from node_agent.attribution.plans import RecordPlan, new_key, new_plan
from node_agent.columnar.rows import Irregular, Rows, body_of
from node_agent.columnar.rules import RuleColumns
from node_agent.columnar.runs import Runs
from node_agent.iptables_save import comments_of

__all__ = ["special_plans", "tier_column"]

_CommentKey = tuple[bool, str]
"""What a rule's comments depend on: (no leading id comment, probe)."""


def tier_column(rows: Rows, columns: RuleColumns, runs: Runs, specials: list[int]) -> list[str]:
    """The tier in effect at every slot ("" outside endpoint chains).

    Why events: every endpoint chain starts untiered and only ``Start of tier T`` /
    ``Start of policies`` markers (MARK rules, among ``specials``) change it, from that
    rule on; the few (slot, tier) changes are expanded to one tier per slot C-level.
    """
    targets = columns.targets
    probes = columns.probes
    cache: dict[_CommentKey, str | None] = {}
    events = [
        (start, UNTIERED if endpoint else "")
        for start, endpoint in zip(runs.starts, runs.endpoint, strict=True)
    ]
    for index in specials:
        if targets[index] != "MARK":
            continue
        if START_OF_TIER_MARKER in probes[index]:
            key = (rows.leading_ids[index] is None, probes[index])
            if key not in cache:
                cache[key] = _last_tier_marker(body_of(rows, index))
            new_tier = cache[key]
            if new_tier is not None:
                events.append((index, new_tier))
        elif START_OF_POLICIES_MARKER in probes[index]:
            events.append((index, UNTIERED))
    events.sort(key=operator.itemgetter(0))  # stable: a marker on a chain's first rule wins
    event_starts = [start for start, _ in events]
    event_lengths = list(map(operator.sub, [*event_starts[1:], rows.count], event_starts))
    return list(
        itertools.chain.from_iterable(map(itertools.repeat, [tier for _, tier in events], event_lengths))
    )


def _last_tier_marker(body: str) -> str | None:
    """The tier a ``Start of tier T`` marker switches to (the last such comment), or None."""
    new_tier = None
    for comment in comments_of(body):
        if comment.startswith(START_OF_TIER_MARKER):
            new_tier = comment[len(START_OF_TIER_MARKER) :]
    return new_tier


def special_plans(
    rows: Rows,
    columns: RuleColumns,
    runs: Runs,
    tier_of: list[str],
    specials: list[int],
    facts: ChainFacts,
    source: str,
) -> list[RecordPlan]:
    """The ``no_policy_drop``/``no_profile_drop`` plans of felix's drop rules and the
    ``profile_accept`` plans of profile jumps followed by their accept return, in slot order.

    :class:`Irregular` for a profile jump to a chain not in the dump: the general path
    words that ``missing_chain`` diagnostic.
    """
    targets = columns.targets
    probes = columns.probes
    rule_ids = columns.rule_ids
    family = rows.family
    first_line = rows.first_line
    cache: dict[_CommentKey, list[tuple[bool, str]]] = {}
    plans: list[RecordPlan] = []
    for index in specials:
        target = targets[index]
        if target in ("DROP", "REJECT"):
            if ADMIN_DOWN_MARKER in probes[index]:
                if ADMIN_DOWN_MARKER in comments_of(body_of(rows, index)):
                    direction, interface = runs.direction_of[index], runs.interface_of[index]
                    counter_key = new_key(
                        (
                            Kind.ENDPOINT_ADMIN_DROP,
                            family,
                            direction,
                            interface,
                            "",
                            "",
                            -1,
                            "",
                            runs.endpoint_of[index],
                        )
                    )
                    plans.append(
                        new_plan(
                            (counter_key, (index,), (rule_ids[index],), "", (), first_line + index, source)
                        )
                    )
                continue
            if " if no " not in probes[index]:
                continue
            direction, interface = runs.direction_of[index], runs.interface_of[index]
            key = (rows.leading_ids[index] is None, probes[index])
            markers = cache.get(key)
            if markers is None:
                markers = cache[key] = _drop_markers(body_of(rows, index))
            for no_policy, tier in markers:
                kind = Kind.NO_POLICY_DROP if no_policy else Kind.NO_PROFILE_DROP
                drop_tier = (tier or tier_of[index]) if no_policy else ""
                counter_key = new_key(
                    (kind, family, direction, interface, "", drop_tier, -1, "", runs.endpoint_of[index])
                )
                plans.append(
                    new_plan((counter_key, (index,), (rule_ids[index],), "", (), first_line + index, source))
                )
        elif target.startswith(PROFILE_CHAIN_PREFIXES):
            if target not in runs.present:
                raise Irregular
            following = index + 1
            if following < runs.end_of[index] and PROFILE_ACCEPTED_MARKER in probes[following]:
                direction, interface = runs.direction_of[index], runs.interface_of[index]
                counter_key = new_key(
                    (
                        Kind.PROFILE_ACCEPT,
                        family,
                        direction,
                        interface,
                        target,
                        "",
                        -1,
                        "",
                        runs.endpoint_of[index],
                    )
                )
                comment = facts.chain_comment(target)
                ids = (rule_ids[following],)
                plans.append(
                    new_plan((counter_key, (following,), ids, comment, (), first_line + following, source))
                )
    return plans


def _drop_markers(body: str) -> list[tuple[bool, str]]:
    """(True, tier or "") per ``... if no policies passed packet`` comment, (False, "") per
    ``... if no profiles matched``, in comment order."""
    found: list[tuple[bool, str]] = []
    for comment in comments_of(body):
        match = NO_POLICY_MARKER.match(comment)
        if match:
            found.append((True, match["tier"] or ""))
        elif NO_PROFILE_MARKER.match(comment):
            found.append((False, ""))
    return found
