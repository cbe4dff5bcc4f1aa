"""What a metric family is, and the policy labels every family that names a policy shares.

A *series family* is one label set exported as a pair of counters (packets and bytes),
or packets only for the calico-accountant (monzo) compatibility names.  Values are kept
once per label set, as ``(packets, bytes)``, so the pair can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator.model import PolicyIdentity, ResolvedCounter
from calico_accountant.records import Kind, Verdict

__all__ = [
    "POLICY_LABELS",
    "EndpointFamilies",
    "Level",
    "SeriesFamily",
    "endpoint_series",
    "policy_label_values",
]


POLICY_LABELS = ("tier", "policy_kind", "policy_namespace", "policy")
"""The labels that name a policy, the same in every family that has them."""


class Level(enum.StrEnum):
    """How far a family aggregates; ``--levels`` picks which are exported."""

    WORKLOAD = "workload"
    APP = "app"
    """Per (namespace, app) across the cluster: the level that fits big clusters."""
    NODE = "node"
    CLUSTER = "cluster"
    COMPAT = "compat"
    """The monzo/calico-accountant names, per workload (``--compat-metrics``)."""


@dataclass(frozen=True, slots=True, eq=False)
class SeriesFamily:
    """One label set exported as ``packets_name`` (and ``bytes_name`` unless None).

    Compared and hashed by identity (each family is one module-level constant): routing
    looks a family up for every series of every new counter, and the generated hash of
    its fields was a Python call each time."""

    packets_name: str
    bytes_name: str | None
    level: Level
    labels: tuple[str, ...]
    packets_help: str
    bytes_help: str = ""
    per_workload: bool = True
    """Series are removed when every counter behind them has expired (deleted pods);
    aggregate families keep their series forever so sums never drop."""


def policy_label_values(counter: ResolvedCounter, policy: PolicyIdentity) -> tuple[str, str, str, str]:
    """The values of :data:`POLICY_LABELS` for ``counter`` exported under ``policy``."""
    return (counter.tier, policy.kind, policy.namespace, policy.name)


@dataclass(frozen=True, slots=True)
class EndpointFamilies:
    """The families of a level that keeps an endpoint's verdicts apart (per workload, per app):
    the same split by counter kind, with that level's own leading labels."""

    policy: SeriesFamily
    no_policy_drop: SeriesFamily
    profile: SeriesFamily
    admin_down: SeriesFamily

    @property
    def all(self) -> tuple[SeriesFamily, ...]:
        return (self.policy, self.no_policy_drop, self.profile, self.admin_down)


def endpoint_series(
    counter: ResolvedCounter, base: tuple[str, ...], families: EndpointFamilies
) -> list[tuple[SeriesFamily, tuple[str, ...]]]:
    """The series of ``families`` an endpoint counter adds to; ``base`` are the level's leading
    labels (ending with the direction).  None for per-rule counters."""
    kind = counter.key.kind
    if kind in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY) and counter.policy is not None:
        return [(families.policy, (*base, counter.verdict, *policy_label_values(counter, counter.policy)))]
    if kind is Kind.NO_POLICY_DROP:
        return [(families.no_policy_drop, (*base, counter.tier))]
    if kind is Kind.PROFILE_ACCEPT:
        name = counter.profile.name if counter.profile is not None else counter.key.chain
        return [(families.profile, (*base, Verdict.ACCEPT, name))]
    if kind is Kind.NO_PROFILE_DROP:
        return [(families.profile, (*base, Verdict.DENY, ""))]
    if kind is Kind.ENDPOINT_ADMIN_DROP:
        return [(families.admin_down, base)]
    return []
