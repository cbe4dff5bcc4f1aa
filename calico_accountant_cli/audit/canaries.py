"""Canary coverage: how much each canary policy accepted, per namespace and app.

A canary is an allow-all policy placed behind (higher ``order`` than) restrictive ones:
whatever it accepts is traffic the restrictive policies in front of it did not allow.  It
is recognised by ``--canary NAME`` or by the ``calico-accountant.io/canary: "true"`` label
or annotation on the policy (``calico_accountant_policy_info{canary="true"}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from calico_accountant_cli.audit.model import CanaryEntry, CanaryStatus, Observations, PolicyKey

__all__ = ["canary_report"]


def _known(observations: Observations) -> set[PolicyKey]:
    known = set(observations.policies)
    known.update(t.policy for t in observations.traffic)
    known.update(policy for policy, _, _ in observations.policy_totals)
    known.update(rule.policy for rule, _ in observations.rule_hits)
    return {p for p in known if p.audited}


def _rendered(observations: Observations, policy: PolicyKey) -> bool:
    return (
        any(t.policy == policy for t in observations.traffic)
        or any(p == policy for p, _, _ in observations.policy_totals)
        or any(rule.policy == policy for rule, _ in observations.rule_hits)
    )


def _missing(name: str) -> PolicyKey:
    namespace, _, short = name.rpartition("/")
    return PolicyKey("", "", namespace, short)


def canary_report(observations: Observations, names: Sequence[str]) -> tuple[CanaryEntry, ...]:
    """Per canary: ``hit`` rows (namespace, app, packets accepted; one row without workloads
    when only its allow rules' counters moved, as in a policy group), or one ``covered``,
    ``not_rendered`` or ``not_found`` row."""
    known = _known(observations)
    canaries = {p for p, info in observations.policies.items() if info.canary and p.audited}
    missing = []
    for name in names:
        found = {p for p in known if p.matches(name)}
        if not found:
            missing.append(name)
        canaries |= found
    entries: list[CanaryEntry] = []
    for canary in sorted(canaries):
        accepted: Counter[tuple[str, str]] = Counter()
        for row in observations.traffic:
            if row.policy == canary and row.verdict == "accept":
                accepted[(row.namespace, row.app)] += row.packets
        hits = sorted(
            ((key, n) for key, n in accepted.items() if n > 0), key=lambda item: (-item[1], item[0])
        )
        by_rules = sum(
            n
            for (rule, action), n in observations.rule_hits.items()
            if rule.policy == canary and action == "allow"
        )
        if hits:
            entries.extend(
                CanaryEntry(canary, CanaryStatus.HIT, namespace, app, packets)
                for (namespace, app), packets in hits
            )
        elif by_rules > 0:
            # In a policy group (v3.28+) the per-workload accepts are the group's; the rule
            # counters stay the canary's own, per node: a hit, workloads unknown.
            entries.append(CanaryEntry(canary, CanaryStatus.HIT, packets=by_rules))
        elif _rendered(observations, canary):
            entries.append(CanaryEntry(canary, CanaryStatus.COVERED))
        else:
            entries.append(CanaryEntry(canary, CanaryStatus.NOT_RENDERED))
    entries.extend(CanaryEntry(_missing(name), CanaryStatus.NOT_FOUND) for name in missing)
    return tuple(entries)
