"""Felix's accept and pass mark bits of one filter table, learned from its rules.

Felix allocates its bits from the mark mask it is configured with, so they are read off
the markers it writes, never hard-coded.  (The drop bit of a v3.30+ deny is learned per
policy chain, by :func:`node_agent.attribution.chains.chain_verdicts`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from calico_accountant.felix.chains import (
    ANY_ENDPOINT_CHAIN_PREFIXES,
    POLICY_ACCEPTED_MARKER,
    POLICY_JUMP_PREFIXES,
    PROFILE_ACCEPTED_MARKER,
    START_OF_POLICIES_MARKER,
    START_OF_TIER_MARKER,
)
from node_agent.iptables_save import FilterTable, Rule, mark_guards_of, set_xmark_of

_ENDPOINT_CHAIN_PREFIXES_TUPLE = ANY_ENDPOINT_CHAIN_PREFIXES


DEFAULT_ACCEPT_MARK = 0x10000
"""Felix >= 3.1 with the default mask 0xffff0000; used only when no rule shows the bit."""


@dataclass(frozen=True, slots=True)
class MarkBits:
    """Felix's mark bits for this table, learned from its rules."""

    accept: int
    pass_: int


def learn_marks(table: FilterTable) -> MarkBits:
    """The accept and pass bits, from the markers felix writes; never hard-coded.

    ``Return if policy/profile accepted`` guards on ``accept/accept``; ``Start of ...``
    clears the pass bit (before v3.28); every policy jump is guarded by ``0x0/pass``
    (``0x0/accept|pass`` inside groups and in v3.28's combined clear).
    """
    return learn_marks_from(table.chains.items())


def learn_marks_from(chains: Iterable[tuple[str, Sequence[Rule]]]) -> MarkBits:
    """:func:`learn_marks` over (chain name, rules) pairs in table order; it stops at the
    first chains that show both bits, so a lazy iterable is materialized only that far."""
    accept = 0
    pass_ = 0
    for name, rules in chains:
        if not name.startswith(_ENDPOINT_CHAIN_PREFIXES_TUPLE):
            continue
        for rule in rules:
            body = rule.body
            if (
                not accept
                and rule.target == "RETURN"
                and (POLICY_ACCEPTED_MARKER in body or PROFILE_ACCEPTED_MARKER in body)
            ):
                for value, mask, negated in mark_guards_of(body):
                    if value == mask and not negated:
                        accept = mask
            if not pass_ and rule.target.startswith(POLICY_JUMP_PREFIXES):
                for value, mask, negated in mark_guards_of(body):
                    if value == 0 and not negated:
                        pass_ = mask
            if (
                not pass_
                and rule.target == "MARK"
                and (START_OF_POLICIES_MARKER in body or START_OF_TIER_MARKER in body)
            ):
                mark = set_xmark_of(body)
                if mark is not None and mark[0] == 0:
                    pass_ = mark[1]
            if accept and pass_:
                break
        if accept and pass_:
            break
    if pass_ & accept:
        pass_ &= ~accept
    if not accept:
        # Felix allocates accept, then pass, from the lowest free bits of its mask.
        accept = (pass_ & -pass_) >> 1 if pass_ else DEFAULT_ACCEPT_MARK
    if not pass_:
        pass_ = accept << 1
    return MarkBits(accept=accept, pass_=pass_)
