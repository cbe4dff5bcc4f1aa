"""What an audit reads (:class:`Observations`, the same from either source) and what it
finds (one entry type per report), as plain typed values.

A source (:mod:`.prometheus_source`, :mod:`.server_source`) turns its counters into
:class:`Observations`; the reports (:mod:`.canaries`, :mod:`.unused`, :mod:`.default_deny`,
:mod:`.denies`, :mod:`.changes`) are pure functions of them; :mod:`.formatting` prints
an :class:`AuditReport`.  Keeping the two sides apart is what lets every report be tested
without a server and both sources be checked against the same reports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "AuditReport",
    "CanaryEntry",
    "CanaryStatus",
    "ChangeEntry",
    "DefaultDenyEntry",
    "DenyEntry",
    "DenyScope",
    "Observations",
    "PolicyInfo",
    "PolicyKey",
    "PolicyTraffic",
    "RuleInfo",
    "RuleKey",
    "UnusedPolicy",
    "UnusedReason",
    "UnusedRule",
    "WorkloadDrop",
]

NOT_AUDITED_KINDS = frozenset(
    {
        "PolicyGroup",
        "Unresolved",
        "StagedNetworkPolicy",
        "StagedGlobalNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
    }
)
"""Kinds that are not one policy a user can clean up (groups, raw chains) or never have a
chain (staged policies)."""


@dataclass(frozen=True, slots=True, order=True)
class PolicyKey:
    """A policy as every family labels it: ``tier``, ``policy_kind``, ``policy_namespace``, ``policy``."""

    tier: str
    kind: str
    namespace: str
    name: str

    @property
    def audited(self) -> bool:
        return self.kind not in NOT_AUDITED_KINDS

    def matches(self, name: str) -> bool:
        """Whether ``--canary NAME`` names this policy: ``name``, ``namespace/name`` or ``tier/...``."""
        full = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return name in (self.name, full, f"{self.tier}/{full}")


@dataclass(frozen=True, slots=True, order=True)
class RuleKey:
    """One rule: the per-rule family's policy labels, ``direction`` and ``rule`` (its index)."""

    policy: PolicyKey
    direction: str
    rule: int


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """``calico_accountant_policy_info``: what the datastore says of a policy."""

    order: str = ""
    selector: str = ""
    canary: bool = False


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """``calico_accountant_policy_rule_info``: what one rule says (empty: any)."""

    action: str
    protocol: str = ""
    ports: str = ""
    source: str = ""
    destination: str = ""

    def describe(self) -> str:
        """One short line: ``allow tcp 8080 from sel=... to ...``."""
        parts = [self.action, self.protocol or "any", self.ports]
        parts += ["from", self.source or "any", "to", self.destination or "any"]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class PolicyTraffic:
    """A policy's packets for the workloads of one (namespace, app), one direction and verdict."""

    policy: PolicyKey
    namespace: str
    app: str
    direction: str
    verdict: str
    packets: int


@dataclass(frozen=True, slots=True)
class WorkloadDrop:
    """Packets of one (namespace, app) and direction dropped because no policy of ``tier``
    allowed them (``tier`` empty when the source does not say)."""

    namespace: str
    app: str
    direction: str
    tier: str
    packets: int


@dataclass
class Observations:
    """Everything the reports need, for one window (and, when the source can, the one before).

    A key present with 0 packets is a counter that existed in the window and did not move;
    an absent key is a counter no node reported: that difference is how "saw no traffic" and
    "never rendered" are told apart.
    """

    window: str
    source: str
    policies: dict[PolicyKey, PolicyInfo] = field(default_factory=dict)
    """From the datastore (``policy_info``); empty when the source cannot see it."""
    rules: dict[RuleKey, RuleInfo] = field(default_factory=dict)
    """From the datastore (``policy_rule_info``); empty when the source cannot see it."""
    traffic: list[PolicyTraffic] = field(default_factory=list)
    """Per-workload policy counters, summed per (namespace, app)."""
    policy_totals: dict[tuple[PolicyKey, str, str], int] = field(default_factory=dict)
    """(policy, direction, verdict) -> packets, cluster-wide."""
    rule_hits: dict[tuple[RuleKey, str], int] = field(default_factory=dict)
    """(rule, action) -> packets, summed over nodes."""
    drops: list[WorkloadDrop] = field(default_factory=list)
    previous_accepts: Mapping[PolicyKey, int] | None = None
    """Accepted packets per policy in the window before; None when the source cannot say."""


class CanaryStatus(enum.StrEnum):
    HIT = "hit"
    """The canary accepted traffic: the policies in front of it miss some."""
    COVERED = "covered"
    """Rendered on some node and accepted nothing: the policies in front cover everything."""
    NOT_RENDERED = "not_rendered"
    """No node reported a counter of it in the window: it selects no workload."""
    NOT_FOUND = "not_found"
    """``--canary`` names no policy the source knows."""


@dataclass(frozen=True, slots=True)
class CanaryEntry:
    policy: PolicyKey
    status: CanaryStatus
    namespace: str = ""
    app: str = ""
    packets: int = 0


class UnusedReason(enum.StrEnum):
    NOT_RENDERED = "not_rendered"
    """No node reported any counter of it during the window: felix rendered no chain for the
    policy on any node (its selector matched no local workload), or left the rule out (an IP
    family it cannot apply to).  It cannot match anything as the cluster stands."""
    NO_TRAFFIC = "no_traffic"
    """Its counters existed on at least one node and did not move in the window."""
    NO_RULES = "no_rules"
    """The policy has no rules in the datastore: it only makes its tier apply (the tier's end
    drops what no policy allowed), it matches nothing itself."""


@dataclass(frozen=True, slots=True)
class UnusedPolicy:
    policy: PolicyKey
    reason: UnusedReason


@dataclass(frozen=True, slots=True)
class UnusedRule:
    rule: RuleKey
    reason: UnusedReason
    info: RuleInfo | None


@dataclass(frozen=True, slots=True)
class DefaultDenyEntry:
    namespace: str
    app: str
    direction: str
    tier: str
    packets: int
    policies: tuple[PolicyKey, ...]
    """The policies of ``tier`` that select these workloads in ``direction`` (none of them
    allowed the packets)."""


class DenyScope(enum.StrEnum):
    CLUSTER = "cluster"
    NAMESPACE = "namespace"


@dataclass(frozen=True, slots=True)
class DenyEntry:
    scope: DenyScope
    policy: PolicyKey
    packets: int
    rule: int | None = None
    """Set for a rule row (cluster scope); None for a whole policy."""
    direction: str = ""
    """The rule's direction (rule rows only: rule ids are per direction)."""
    namespace: str = ""
    """The workloads' namespace (namespace scope)."""


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    policy: PolicyKey
    packets: int
    previous_packets: int

    @property
    def fall(self) -> float:
        """The fraction accepts fell by (1.0: to nothing)."""
        return (self.previous_packets - self.packets) / self.previous_packets


@dataclass(frozen=True, slots=True)
class AuditReport:
    window: str
    source: str
    canaries: tuple[CanaryEntry, ...]
    unused_policies: tuple[UnusedPolicy, ...]
    unused_rules: tuple[UnusedRule, ...]
    default_deny: tuple[DefaultDenyEntry, ...]
    denies: tuple[DenyEntry, ...]
    changes: tuple[ChangeEntry, ...]
    notes: tuple[str, ...] = ()
    """What the source could not answer (said once, above the sections)."""
