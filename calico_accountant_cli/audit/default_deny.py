"""Default-deny drops: workloads whose packets no policy allowed, by namespace, app and tier,
with the policies of that tier that select them (one of which should have allowed them)."""

from __future__ import annotations

from collections import Counter

from calico_accountant_cli.audit.model import DefaultDenyEntry, Observations, PolicyKey

__all__ = ["default_deny_report"]


def default_deny_report(observations: Observations) -> tuple[DefaultDenyEntry, ...]:
    dropped: Counter[tuple[str, str, str, str]] = Counter()
    for drop in observations.drops:
        dropped[(drop.namespace, drop.app, drop.direction, drop.tier)] += drop.packets
    selecting: dict[tuple[str, str, str], set[PolicyKey]] = {}
    for row in observations.traffic:
        selecting.setdefault((row.namespace, row.app, row.direction), set()).add(row.policy)
    entries = []
    for (namespace, app, direction, tier), packets in dropped.items():
        if packets <= 0:
            continue
        policies = selecting.get((namespace, app, direction), set())
        chosen = tuple(sorted(p for p in policies if not tier or p.tier == tier))
        entries.append(DefaultDenyEntry(namespace, app, direction, tier, packets, chosen))
    entries.sort(key=lambda e: (-e.packets, e.namespace, e.app, e.direction, e.tier))
    return tuple(entries)
