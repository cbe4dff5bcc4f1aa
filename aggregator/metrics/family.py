"""What a metric family is, and the policy labels every family that names a policy shares.

A *series family* is one label set exported as a pair of counters (packets and bytes),
or packets only for the calico-accountant (monzo) compatibility names.  Values are kept
once per label set, as ``(packets, bytes)``, so the pair can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator.model import PolicyIdentity, ResolvedCounter

__all__ = ["POLICY_LABELS", "Level", "SeriesFamily", "policy_label_values"]


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


def policy_label_values(counter: ResolvedCounter, policy: PolicyIdentity) -> tuple[str, str, str, str]:
    """The values of :data:`POLICY_LABELS` for ``counter`` exported under ``policy``."""
    return (counter.tier, policy.kind, policy.namespace, policy.name)
