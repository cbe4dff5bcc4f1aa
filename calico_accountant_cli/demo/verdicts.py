"""What Calico decides for a packet, from the datastore objects alone (pure).

This is the demo's and the end-to-end test's *oracle*: given the cluster, the felix
layout and a new-flow packet from one pod to another, it says which counters the node
agents must see move -- the egress decision in the source pod's ``cali-fw-`` chain and
the ingress decision in the destination pod's ``cali-tw-`` chain -- as the aggregator
will label them.  It follows Calico's policy semantics (tiers in order, policies by
order then name, first matching rule wins, Pass goes to the next tier, a tier's default
action at its end, profiles when no tier decided), never the rendered iptables text, so
the renderer and the oracle check each other.

:func:`effective_tiers` is shared with the renderer: it is the one place that says how a
layout without tiers (felix v3.27) lays the sample's tiers out (one ``default`` list,
ordered by tier order then policy order, ending in a drop).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from calico_accountant_cli.demo.cluster import Cluster, Policy, PolicyRule, Workload
from calico_accountant_cli.demo.selectors import parse_selector
from calico_accountant_cli.lab.calico_rules import Layout

__all__ = [
    "EffectiveTier",
    "Flow",
    "Outcome",
    "OutcomeKind",
    "applicable_tiers",
    "decide",
    "effective_tiers",
    "outcomes_for",
    "policy_applies",
    "rule_sources",
]

DIRECTIONS = ("ingress", "egress")


class OutcomeKind(enum.StrEnum):
    POLICY = "policy"
    """A policy's rule decided (verdict accept or deny)."""
    NO_POLICY_DROP = "no_policy_drop"
    """A tier with a Deny default action dropped it: no policy of the tier matched."""
    PROFILE = "profile"
    """No tier decided; a profile accepted it (verdict accept) or none did (deny, profile "")."""


@dataclass(frozen=True, slots=True)
class EffectiveTier:
    """A tier as one felix layout renders it."""

    name: str
    default_action: str
    policies: tuple[Policy, ...]


@dataclass(frozen=True, slots=True)
class Flow:
    """One new-flow packet from ``source`` to ``dest`` (``port`` for tcp/udp)."""

    source: Workload
    dest: Workload
    protocol: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Which per-workload counter one packet moves, in the aggregator's label terms."""

    node: str
    namespace: str
    pod: str
    app: str
    direction: str
    kind: OutcomeKind
    verdict: str
    """``accept`` or ``deny``."""
    tier: str = ""
    policy_kind: str = ""
    policy_namespace: str = ""
    policy: str = ""
    profile: str = ""
    rule_index: int | None = None
    """For a policy verdict: the 0-based index among the policy's verdict rules in this
    direction (the ``rule`` label of the per-node per-rule family)."""
    rule_action: str = ""


def effective_tiers(cluster: Cluster, layout: Layout) -> tuple[EffectiveTier, ...]:
    """The tiers felix renders: v3.30 has the real tiers; v3.27 (no tiers in OSS) has one
    ``default`` list of every policy, in tier order then policy order, with a final drop."""

    def tier_order(policy: Policy) -> float:
        return cluster.tier(policy.tier).order

    if layout is Layout.V3_27:
        ordered = sorted(cluster.policies, key=lambda p: (tier_order(p), p.tier, *p.sort_key()))
        return (EffectiveTier("default", "Deny", tuple(ordered)),)
    names = sorted({p.tier for p in cluster.policies}, key=lambda t: (cluster.tier(t).order, t))
    return tuple(
        EffectiveTier(
            name,
            cluster.tier(name).default_action,
            tuple(sorted((p for p in cluster.policies if p.tier == name), key=Policy.sort_key)),
        )
        for name in names
    )


def policy_applies(cluster: Cluster, policy: Policy, workload: Workload, direction: str) -> bool:
    """Does ``policy`` select ``workload`` for ``direction``?"""
    if direction not in policy.types:
        return False
    if policy.kind == "NetworkPolicy" and policy.namespace != workload.namespace:
        return False
    if policy.namespace_selector is not None and not parse_selector(policy.namespace_selector).matches(
        cluster.namespace_labels(workload.namespace)
    ):
        return False
    return parse_selector(policy.selector).matches(workload.label_map)


def applicable_tiers(
    cluster: Cluster, layout: Layout, workload: Workload, direction: str
) -> tuple[EffectiveTier, ...]:
    """The tiers with at least one policy for this workload and direction, each holding
    only those policies (what the endpoint chain jumps to)."""
    out = []
    for tier in effective_tiers(cluster, layout):
        policies = tuple(p for p in tier.policies if policy_applies(cluster, p, workload, direction))
        if policies:
            out.append(EffectiveTier(tier.name, tier.default_action, policies))
    return tuple(out)


def rule_sources(cluster: Cluster, policy: Policy, rule: PolicyRule) -> tuple[Workload, ...] | None:
    """The workloads a rule's source names; None when the rule has no source match (any).

    A pod selector alone means pods of the policy's own namespace for a NetworkPolicy and
    pods anywhere for a GlobalNetworkPolicy; with a namespaceSelector, pods of the
    matching namespaces."""
    if not rule.has_source:
        return None
    selector = parse_selector(rule.source_selector)
    out = []
    for workload in cluster.workloads:
        if rule.source_namespace_selector is not None:
            namespace_ok = parse_selector(rule.source_namespace_selector).matches(
                cluster.namespace_labels(workload.namespace)
            )
        else:
            namespace_ok = policy.kind != "NetworkPolicy" or workload.namespace == policy.namespace
        if namespace_ok and selector.matches(workload.label_map):
            out.append(workload)
    return tuple(out)


def _rule_matches(cluster: Cluster, policy: Policy, rule: PolicyRule, flow: Flow, direction: str) -> bool:
    if rule.protocol is not None and rule.protocol != flow.protocol:
        return False
    if rule.ports and flow.port not in rule.ports:
        return False
    if direction == "ingress":
        sources = rule_sources(cluster, policy, rule)
        if sources is not None and flow.source.ipv4 not in {w.ipv4 for w in sources}:
            return False
    elif rule.has_source:
        return False  # egress rules with a source are not used by the demo
    return True


def decide(cluster: Cluster, layout: Layout, flow: Flow, direction: str) -> Outcome:
    """The counter one packet of ``flow`` moves at its ``direction`` endpoint."""
    workload = flow.dest if direction == "ingress" else flow.source
    base = Outcome(
        node=workload.node,
        namespace=workload.namespace,
        pod=workload.pod,
        app=workload.app,
        direction=direction,
        kind=OutcomeKind.PROFILE,
        verdict="deny",
    )
    for tier in applicable_tiers(cluster, layout, workload, direction):
        passed = False
        for policy in tier.policies:
            for position, rule in enumerate(policy.rules(direction)):
                if not _rule_matches(cluster, policy, rule, flow, direction):
                    continue
                if rule.action == "log":
                    continue  # LOG is not a verdict: the packet goes on
                if rule.action == "pass":
                    passed = True
                    break
                return replace(
                    base,
                    kind=OutcomeKind.POLICY,
                    verdict="accept" if rule.action == "allow" else "deny",
                    tier=tier.name,
                    policy_kind=policy.shown_kind,
                    policy_namespace=policy.namespace,
                    policy=policy.shown_name,
                    rule_index=position,  # every modelled rule is a verdict rule
                    rule_action=rule.action,
                )
            if passed:
                break
        if not passed and tier.default_action == "Deny":
            return replace(base, kind=OutcomeKind.NO_POLICY_DROP, tier=tier.name)
    for name in workload.profiles:
        profile = cluster.profile(name)
        allows = profile is not None and (
            profile.allow_ingress if direction == "ingress" else profile.allow_egress
        )
        if allows:
            return replace(base, verdict="accept", profile=name)
    return base


def outcomes_for(cluster: Cluster, layout: Layout, flows: Iterable[Flow]) -> list[Outcome]:
    """Both endpoint decisions of every packet (egress at the source, ingress at the
    destination); a packet dropped at egress never reaches the destination."""
    out = []
    for flow in flows:
        egress = decide(cluster, layout, flow, "egress")
        out.append(egress)
        if egress.verdict == "accept":
            out.append(decide(cluster, layout, flow, "ingress"))
    return out
