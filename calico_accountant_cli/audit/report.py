"""Every report over one :class:`Observations`, as one :class:`AuditReport` (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant_cli.audit.canaries import canary_report
from calico_accountant_cli.audit.changes import change_report
from calico_accountant_cli.audit.default_deny import default_deny_report
from calico_accountant_cli.audit.denies import deny_report
from calico_accountant_cli.audit.model import AuditReport, Observations
from calico_accountant_cli.audit.unused import unused_policies, unused_rules

__all__ = ["AuditOptions", "build_report"]


@dataclass(frozen=True, slots=True)
class AuditOptions:
    canaries: Sequence[str] = ()
    """``--canary`` names (policy, namespace/policy or tier/namespace/policy)."""
    top: int = 10
    """Rows per top-deny list."""
    threshold: float = 0.5
    """The fraction accepts must fall by to be a change."""


def build_report(observations: Observations, options: AuditOptions) -> AuditReport:
    notes = []
    if not observations.policies:
        notes.append(
            "no policy_info/policy_rule_info: policies no node renders and the canary label are not "
            "visible (scrape an aggregator with a --datastore, or use --prometheus)"
        )
    if observations.previous_accepts is None:
        notes.append("changes need the previous window, which this source does not have (use --prometheus)")
    return AuditReport(
        window=observations.window,
        source=observations.source,
        canaries=canary_report(observations, options.canaries),
        unused_policies=unused_policies(observations),
        unused_rules=unused_rules(observations),
        default_deny=default_deny_report(observations),
        denies=deny_report(observations, options.top),
        changes=change_report(observations, options.threshold),
        notes=tuple(notes),
    )
