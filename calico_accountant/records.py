"""The counter records the node agent derives from a filter table.

These types are the contract between the parser (``node_agent``), the wire encoding
(``calico_accountant.v1``) and the aggregator.  They carry raw dataplane names only
(interfaces, chain names, tiers); turning them into pods and policies is the
aggregator's job, because only it sees the datastore.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class Kind(enum.StrEnum):
    """What a counter measures.  The values are the ``kind`` strings of ``parse --format json``."""

    POLICY_ACCEPT = "policy_accept"
    """Packets a policy (or policy group) accepted for one endpoint: the ``Return if policy
    accepted`` rule that follows the jump in the endpoint chain."""
    POLICY_DENY = "policy_deny"
    """Packets a policy (or group) explicitly denied for one endpoint, by flow conservation
    inside the endpoint chain (never read from the shared policy chain)."""
    NO_POLICY_DROP = "no_policy_drop"
    """Packets no policy of a tier passed: ``[End of tier T. ]Drop|Reject if no policies passed packet``."""
    PROFILE_ACCEPT = "profile_accept"
    """``Return if profile accepted`` after a profile jump."""
    NO_PROFILE_DROP = "no_profile_drop"
    """``Drop|Reject if no profiles matched``."""
    POLICY_RULE = "policy_rule"
    """One verdict rule inside a shared policy chain: exact per node, never per endpoint."""
    ENDPOINT_ADMIN_DROP = "endpoint_admin_drop"
    """Packets dropped because the endpoint is administratively down: felix then renders its
    chain as the one rule ``Endpoint admin disabled`` (DROP), and no policy or profile."""


class Direction(enum.StrEnum):
    """Policy direction.  ``cali-tw-`` chains apply ingress policy, ``cali-fw-`` egress."""

    INGRESS = "ingress"
    EGRESS = "egress"


class EndpointKind(enum.StrEnum):
    """Whose chain an endpoint counter was read in: the ``endpoint`` of ``parse --format json``.

    Host endpoints (a HostEndpoint resource: a node's own interface, or all of them) get
    the same counter kinds as workloads, from their own chains (``docs/attribution.md``).
    ``policy_rule`` counters belong to no endpoint (they are read inside the shared policy
    chains) and always carry the default, :attr:`WORKLOAD`.
    """

    WORKLOAD = "workload"
    """``cali-tw-``/``cali-fw-``: traffic to or from a pod (or other workload)."""
    HOST = "host"
    """``cali-th-``/``cali-fh-``: traffic the host itself sends out of or receives on the
    interface (egress policy in ``cali-th-``, ingress in ``cali-fh-``)."""
    HOST_FORWARD = "host_forward"
    """``cali-thfw-``/``cali-fhfw-``: traffic forwarded through the interface, judged by
    ``applyOnForward`` policies."""


class RuleAction(enum.StrEnum):
    """The verdict of a rule inside a policy chain."""

    ALLOW = "allow"
    DENY = "deny"
    PASS = "pass"
    LOG = "log"


class Verdict(enum.StrEnum):
    """What happened to the packets a counter counts: the ``verdict`` label of the metrics,
    the ``verdict`` of a hit, and what the CLI filters on."""

    ACCEPT = "accept"
    DENY = "deny"
    PASS = "pass"
    LOG = "log"


class CounterKey(NamedTuple):
    """The identity of a counter on one node; stable across reads while the rule exists.

    A named tuple rather than a frozen dataclass: a big node has ~100k of them per read
    and tuples are several times cheaper to build and hash.

    ``rule_ids`` is not part of the identity: it is the ``cali:<hash>`` of the rule(s)
    the value is read from, used to detect that felix rewrote them (a counter reset).
    """

    kind: Kind
    family: int
    """4 or 6."""
    direction: Direction
    interface: str = ""
    """Workload or host endpoint interface (empty for ``policy_rule``); ``any-interface-at-all``
    for a host endpoint on every interface (felix's pseudo-interface)."""
    chain: str = ""
    """The policy, group or profile chain the counter is about (empty for the drops)."""
    tier: str = ""
    """Tier of the policy or drop rule; ``default`` for layouts before tiers; empty for profiles."""
    rule_index: int = -1
    """For ``policy_rule``: index of the verdict rule within its chain (0-based), else -1."""
    action: str = ""
    """For ``policy_rule``: a :class:`RuleAction` value, else empty."""
    endpoint: EndpointKind = EndpointKind.WORKLOAD
    """Whose chain the counter was read in; last, with a default, so that workload keys
    (the bulk) are built as before."""


class CounterRecord(NamedTuple):
    """One counter value read from one table at one time (a named tuple, for speed)."""

    key: CounterKey
    packets: int
    bytes: int
    rule_ids: tuple[str, ...] = ()
    """``cali:`` hashes of the rules the value comes from, in rule order (several for a
    derived deny).  A change means felix rewrote the rule and its counter restarted."""
    chain_comment: str = ""
    """The identity comment of ``key.chain`` when felix wrote one (v3.22+), e.g.
    ``Policy prod/default.db-access ingress``; the aggregator cross-checks its resolution."""
    group_members: tuple[str, ...] = ()
    """For a policy-group chain (``cali-gi-``/``cali-go-``): the policy chains it jumps to, in order."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something in the input that could not be used exactly, with where and why."""

    code: str
    """A short stable identifier, e.g. ``garbled_line``, ``deny_not_exact``; counted per code."""
    message: str
    line: int = 0
    """1-based line number in the input it came from, 0 when it is not about one line."""
    source: str = ""
    """Which input (file name, ``-`` or command)."""


@dataclass(slots=True)
class ParseResult:
    """Everything one parse of one or more tables of a node produced."""

    records: list[CounterRecord] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    rules_seen: int = 0
    """Rule lines understood (every good line is counted, even in tables we do not use)."""
    lines_seen: int = 0
    rules_by_source: dict[str, int] = field(default_factory=dict)
    """``rules_seen`` per input (what a snapshot reports for each table it read)."""

    def diagnostic_counts(self) -> dict[str, int]:
        """Diagnostics per code, the way the agent exports them as a metric."""
        counts: dict[str, int] = {}
        for diagnostic in self.diagnostics:
            counts[diagnostic.code] = counts.get(diagnostic.code, 0) + 1
        return counts


_KIND_VERDICTS: dict[Kind, Verdict] = {
    Kind.POLICY_ACCEPT: Verdict.ACCEPT,
    Kind.POLICY_DENY: Verdict.DENY,
    Kind.NO_POLICY_DROP: Verdict.DENY,
    Kind.PROFILE_ACCEPT: Verdict.ACCEPT,
    Kind.NO_PROFILE_DROP: Verdict.DENY,
    Kind.ENDPOINT_ADMIN_DROP: Verdict.DENY,
}
_ACTION_VERDICTS: dict[str, Verdict] = {
    RuleAction.ALLOW: Verdict.ACCEPT,
    RuleAction.DENY: Verdict.DENY,
    RuleAction.PASS: Verdict.PASS,
    RuleAction.LOG: Verdict.LOG,
}


def verdict_of(key: CounterKey) -> Verdict:
    """Accept or deny for endpoint counters; for a policy rule, what its action does."""
    if key.kind is Kind.POLICY_RULE:
        return _ACTION_VERDICTS[key.action]
    return _KIND_VERDICTS[key.kind]
