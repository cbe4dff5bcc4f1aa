"""What a metric family is, and the policy labels every family that names a policy shares.

A *series family* is one label set exported as a pair of counters (packets and bytes),
or packets only for the calico-accountant (monzo) compatibility names.  Values are kept
once per label set, as ``(packets, bytes)``, so the pair can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator.model import CounterNames, PolicyIdentity, tier_of
from calico_accountant.records import CounterKey, Kind, Verdict, verdict_of

__all__ = [
    "POLICY_LABELS",
    "EndpointFamilies",
    "Level",
    "Series",
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


def policy_label_values(key: CounterKey, policy: PolicyIdentity) -> tuple[str, str, str, str]:
    """The values of :data:`POLICY_LABELS` for the counter ``key`` exported under ``policy``."""
    return (key.tier or policy.tier, policy.kind, policy.namespace, policy.name)  # tier_of, inline


Series = tuple[SeriesFamily, tuple[str, ...]]
"""A series a counter adds to: its family and its label values.  A level gives a counter at
most one (its ``series(names, key)`` returns it or None)."""


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
    names: CounterNames, key: CounterKey, base: tuple[str, ...], families: EndpointFamilies
) -> Series | None:
    """The series of ``families`` the counter ``key`` (of ``names``) adds to; ``base`` are the
    level's leading labels (ending with the direction).  None for per-rule counters."""
    kind = key.kind
    policy = names.policy
    if (kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY) and policy is not None:
        return (families.policy, (*base, verdict_of(key), *policy_label_values(key, policy)))
    if kind is Kind.NO_POLICY_DROP:
        return (families.no_policy_drop, (*base, tier_of(key, policy)))
    if kind is Kind.PROFILE_ACCEPT:
        name = names.profile.name if names.profile is not None else key.chain
        return (families.profile, (*base, Verdict.ACCEPT, name))
    if kind is Kind.NO_PROFILE_DROP:
        return (families.profile, (*base, Verdict.DENY, ""))
    if kind is Kind.ENDPOINT_ADMIN_DROP:
        return (families.admin_down, base)
    return None
