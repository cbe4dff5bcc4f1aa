"""What planning asks about a policy chain: its verdict rules, its identity comment, its
members (a group), and whether it can pass packets; :class:`ChainFacts` answers each once
per table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence, Set

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES, POLICY_CHAIN_PREFIXES, is_identity_comment
from calico_accountant.records import RuleAction
from node_agent.attribution.marks import MarkBits
from node_agent.iptables_save import Rule, comments_of, has_extra_match, mark_guards_of, set_xmark_of

_POLICY_CHAIN_PREFIXES_TUPLE = tuple(POLICY_CHAIN_PREFIXES)
DROP_TARGETS = frozenset({"DROP", "REJECT"})
"""Targets that drop a packet outright."""


def chain_verdicts(rules: Sequence[Rule], marks: MarkBits) -> list[tuple[Rule, RuleAction]]:
    """The rules of a policy chain that give a verdict, in order, with that verdict.

    Plumbing (RETURN, NFLOG, scratch marks, the comment-only identity rule) is skipped.
    A v3.30+ deny is two rules, ``MARK --set-xmark D/D`` then ``-m mark --mark D/D -j
    DROP``: the MARK is the verdict (in Calico Enterprise an NFQUEUE rule can sit between
    them, so only the MARK counts every denied packet) and the guarded DROP is its
    follow-up, not a second verdict.  The drop bit ``D`` is learned from that DROP.
    """
    # Each rule's mark facts are read from its body once (a node with thousands of policy
    # chains has tens of thousands of these rules): a MARK rule's ``--set-xmark``, a drop's
    # single ``--mark`` guard when it has nothing else to match on.
    facts: list[tuple[int, int] | tuple[int, int, bool] | None] = []
    # Bits the chain clears (``--set-xmark 0x0/S``) are scratch bits of match blocks
    # (before v3.30 scratch0 is 0x40000, the same bit v3.30 uses to drop): a rule setting
    # one only records that one alternative of a match matched, it is no verdict.
    scratch = 0
    drop_guards: list[tuple[int, int, bool]] = []
    for rule in rules:
        target = rule.target
        if target == "MARK":
            mark = set_xmark_of(rule.body)
            if mark is not None and mark[0] == 0:
                scratch |= mark[1]
            facts.append(mark)
        elif target in DROP_TARGETS:
            guard = _single_guard(rule.body)
            if guard is not None:
                drop_guards.append(guard)
            facts.append(guard)
        else:
            facts.append(None)
    drop_bits = {
        value
        for value, mask, negated in drop_guards
        if value == mask and not negated and value not in (marks.accept, marks.pass_) and not value & scratch
    }
    found: list[tuple[Rule, RuleAction]] = []
    for rule, fact in zip(rules, facts, strict=True):
        target = rule.target
        if target in DROP_TARGETS:
            # A follow-up: the DROP guarded by a drop bit alone (the MARK was the verdict).
            if drop_bits and fact is not None and fact[0] in drop_bits and fact[0] == fact[1]:
                continue
            found.append((rule, RuleAction.DENY))
        elif target == "MARK":
            if fact is None:
                continue
            value, mask = fact[0], fact[1]
            if not value or value & mask != value:
                continue
            if value == marks.accept:
                found.append((rule, RuleAction.ALLOW))
            elif value == marks.pass_:
                found.append((rule, RuleAction.PASS))
            elif value in drop_bits:
                found.append((rule, RuleAction.DENY))
        elif target == "LOG":
            found.append((rule, RuleAction.LOG))
    return found


def _single_guard(body: str) -> tuple[int, int, bool] | None:
    """The one ``[!] --mark value/mask`` match of a rule that matches on nothing else, or None.

    Most drops of a node's thousands of policy chains are the same follow-up rule
    (``-m mark --mark D/D -j DROP``) in different chains, with different rule ids: the answer
    for a body in felix's form (``-A CHAIN`` + the ``cali:`` id comment + the rest) depends on
    the rest only (chain and id hold no space, and every match is told by spaces), so it is
    worked out once per distinct rest.  Only for a chain name as felix writes them: a token
    such as ``!`` in its place is read as part of the matches by the whole-body reading."""
    space = body.find(" ", 3)
    if space != -1 and body.startswith(_LEADING_ID, space) and _CHAIN_NAME.fullmatch(body, 3, space):
        start = space + len(_LEADING_ID)
        end = body.find('"', start)
        if end != -1 and " " not in body[start:end]:
            return _single_guard_of_rest(body[end + 1 :])
    return _single_guard_of_body(body)


_LEADING_ID = ' -m comment --comment "cali:'
_CHAIN_NAME = re.compile(r"[A-Za-z0-9][\w.:/+-]*")


@functools.lru_cache(maxsize=4096)
def _single_guard_of_rest(rest: str) -> tuple[int, int, bool] | None:
    """:func:`_single_guard` of any felix-form body ending in ``rest``."""
    return _single_guard_of_body("-A x" + _LEADING_ID + 'y"' + rest)


def _single_guard_of_body(body: str) -> tuple[int, int, bool] | None:
    guards = mark_guards_of(body)
    if len(guards) != 1 or has_extra_match(body):
        return None
    return guards[0]


def pass_guarded(rule: Rule, marks: MarkBits) -> bool:
    """True for a rule only packets with the pass bit clear reach (the next policy jump,
    an NFLOG or the tier's drop): its counter excludes passed packets."""
    if has_extra_match(rule.body):
        return False
    return any(
        value == 0 and mask & marks.pass_ and not negated
        for value, mask, negated in mark_guards_of(rule.body)
    )


def identity_comment(rules: Sequence[Rule]) -> str:
    """Felix's ``Policy ns/name ingress`` / ``<Kind> ...`` / ``Profile ...`` comment of a chain."""
    for rule in rules[:2]:
        if " ingress" in rule.body or " egress" in rule.body:
            for comment in comments_of(rule.body):
                if is_identity_comment(comment):
                    return comment
    return ""


class ChainFacts:
    """What planning asks about the chains an endpoint chain jumps to (verdicts, identity
    comment, group members, whether they can pass), each answer computed once per table."""

    __slots__ = ("_comments", "_members", "_pass", "_verdicts", "chains", "marks", "present")

    def __init__(self, chains: Mapping[str, Sequence[Rule]], present: Set[str], marks: MarkBits) -> None:
        self.chains = chains
        self.present = present
        """Chains in the dump: with rules, or only declared (an empty policy)."""
        self.marks = marks
        self._verdicts: dict[str, list[tuple[Rule, RuleAction]]] = {}
        self._comments: dict[str, str] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        self._pass: dict[str, bool | None] = {}

    def verdicts_of(self, name: str) -> list[tuple[Rule, RuleAction]] | None:
        """The verdict rules of a policy chain; None when the chain is not in the dump."""
        if name not in self.present:
            return None
        found = self._verdicts.get(name)
        if found is None:
            found = self._verdicts[name] = chain_verdicts(self.chains.get(name, ()), self.marks)
        return found

    def chain_comment(self, name: str) -> str:
        comment = self._comments.get(name)
        if comment is None:
            comment = self._comments[name] = identity_comment(self.chains.get(name, ()))
        return comment

    def group_members(self, name: str) -> tuple[str, ...]:
        members = self._members.get(name)
        if members is None:
            members = self._members[name] = tuple(
                rule.target
                for rule in self.chains.get(name, ())
                if rule.target.startswith(_POLICY_CHAIN_PREFIXES_TUPLE)
            )
        return members

    def has_pass(self, name: str) -> bool | None:
        """Whether a policy or group can pass packets; None when that is unknown (chain not in the dump)."""
        if name in self._pass:
            return self._pass[name]
        answer: bool | None = False
        if name not in self.present:
            answer = None
        else:
            for target in self.group_members(name) if name.startswith(GROUP_CHAIN_PREFIXES) else (name,):
                rules = self.verdicts_of(target)
                if rules is None:
                    answer = None
                    break
                if any(action is RuleAction.PASS for _, action in rules):
                    answer = True
                    break
        self._pass[name] = answer
        return answer
