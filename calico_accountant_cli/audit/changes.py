"""Changes: policies whose accepts fell by more than a threshold versus the previous window
(a key policy suddenly seeing less traffic is the original's first alerting use)."""

from __future__ import annotations

from collections import Counter

from calico_accountant_cli.audit.model import ChangeEntry, Observations, PolicyKey

__all__ = ["change_report"]


def change_report(observations: Observations, threshold: float) -> tuple[ChangeEntry, ...]:
    """Policies that accepted something in the previous window and whose accepts fell by
    more than ``threshold`` (a fraction: 0.5 is half); largest fall first."""
    previous = observations.previous_accepts
    if previous is None:
        return ()
    current: Counter[PolicyKey] = Counter()
    for (policy, _, verdict), packets in observations.policy_totals.items():
        if verdict == "accept":
            current[policy] += packets
    entries = [
        ChangeEntry(policy, current[policy], before)
        for policy, before in previous.items()
        if policy.audited and before > 0 and (before - current[policy]) / before > threshold
    ]
    entries.sort(key=lambda e: (-e.fall, -e.previous_packets, e.policy))
    return tuple(entries)
