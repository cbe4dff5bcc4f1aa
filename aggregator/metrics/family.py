"""What a metric family is, and the resolved counter every family derives its labels from.

A *series family* is one label set exported as a pair of counters (packets and bytes),
or packets only for the calico-accountant (monzo) compatibility names.  Values are kept
once per label set, as ``(packets, bytes)``, so the pair can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator.model import PolicyGroup, PolicyIdentity, ProfileIdentity, WorkloadIdentity
from calico_accountant.records import CounterKey, Direction, Kind

__all__ = ["POLICY_LABELS", "Level", "ResolvedCounter", "SeriesFamily", "policy_label_values", "verdict_of"]


POLICY_LABELS = ("tier", "policy_kind", "policy_namespace", "policy")
"""The labels that name a policy, the same in every family that has them."""


class Level(enum.StrEnum):
    """How far a family aggregates; ``--levels`` picks which are exported."""

    WORKLOAD = "workload"
    NODE = "node"
    CLUSTER = "cluster"
    COMPAT = "compat"
    """The monzo/calico-accountant names, per workload (``--compat-metrics``)."""


@dataclass(frozen=True, slots=True)
class SeriesFamily:
    """One label set exported as ``packets_name`` (and ``bytes_name`` unless None)."""

    packets_name: str
    bytes_name: str | None
    level: Level
    labels: tuple[str, ...]
    packets_help: str
    bytes_help: str = ""
    per_workload: bool = True
    """Series are removed when every counter behind them has expired (deleted pods);
    aggregate families keep their series forever so sums never drop."""
    requires_total_suffix: bool = True
    """False only for the compatibility names, which keep their historic spelling."""


@dataclass(frozen=True, slots=True)
class ResolvedCounter:
    """One counter of one node with the datastore's names attached.

    ``policy`` is the identity series are exported under: for a policy-group chain it is
    :meth:`PolicyGroup.as_identity` and ``group`` holds the members.
    """

    node: str
    key: CounterKey
    workload: WorkloadIdentity | None = None
    """None for ``policy_rule`` counters, which belong to no single workload."""
    policy: PolicyIdentity | None = None
    group: PolicyGroup | None = None
    profile: ProfileIdentity | None = None
    chain_comment: str = ""
    """Felix's identity comment of ``key.chain`` on the node (``Policy ns/default.x ingress``),
    when it wrote one."""

    @property
    def verdict(self) -> str:
        return verdict_of(self.key)

    @property
    def tier(self) -> str:
        """The tier the dataplane enforced it in, else the datastore's."""
        if self.key.tier:
            return self.key.tier
        return self.policy.tier if self.policy is not None else ""

    @property
    def direction(self) -> str:
        return self.key.direction.value

    @property
    def endpoint_chain_type(self) -> str:
        """``tw`` (to workload, ingress) or ``fw`` (from workload, egress), monzo's ``type``."""
        return "tw" if self.key.direction is Direction.INGRESS else "fw"


_VERDICTS: dict[Kind, str] = {
    Kind.POLICY_ACCEPT: "accept",
    Kind.POLICY_DENY: "deny",
    Kind.NO_POLICY_DROP: "deny",
    Kind.PROFILE_ACCEPT: "accept",
    Kind.NO_PROFILE_DROP: "deny",
}
_RULE_VERDICTS: dict[str, str] = {"allow": "accept", "deny": "deny", "pass": "pass", "log": "log"}


def verdict_of(key: CounterKey) -> str:
    """``accept``/``deny`` for endpoint counters; for a policy rule, what its action does."""
    if key.kind is Kind.POLICY_RULE:
        return _RULE_VERDICTS.get(key.action, key.action)
    return _VERDICTS[key.kind]


def policy_label_values(counter: ResolvedCounter, policy: PolicyIdentity) -> tuple[str, str, str, str]:
    """The values of :data:`POLICY_LABELS` for ``counter`` exported under ``policy``."""
    return (counter.tier, policy.kind, policy.namespace, policy.name)
