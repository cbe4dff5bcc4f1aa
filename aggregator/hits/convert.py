"""A resolved counter as the API sees it: the ``Hit`` message, and its policy names.

Kept apart from the fan-out because both the live path (the hub builds a ``Hit`` per
increase, lazily) and the read-only ``Snapshot`` RPC (a ``Hit`` per total) convert the
same way: one mapping from the core's enums to the wire's, so a watched hit and a
snapshot total of the same counter always carry the same fields.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.model import ResolvedCounter
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.wire.counters import DIRECTION_TO_PB, ENDPOINT_TO_PB, KIND_TO_PB

__all__ = ["counter_to_hit", "policy_names"]


def counter_to_hit(counter: ResolvedCounter, packets: int, octets: int, moment: datetime) -> hpb.Hit:
    """A resolved counter with an amount (an increase or a total) as a ``Hit``."""
    key = counter.key
    workload = counter.workload
    hit = hpb.Hit(
        node=counter.node,
        namespace=workload.namespace if workload else "",
        pod=workload.pod if workload else "",
        app=workload.app if workload else "",
        interface=key.interface,
        direction=DIRECTION_TO_PB[key.direction],
        verdict=counter.verdict,
        kind=KIND_TO_PB[key.kind],
        profile=counter.profile.name if counter.profile else "",
        packets=packets,
        bytes=octets,
        tier=counter.tier,
    )
    if counter.policy is not None:
        policy = counter.policy
        hit.policy.CopyFrom(
            hpb.PolicyRef(
                kind=policy.kind,
                namespace=policy.namespace,
                name=policy.name,
                tier=counter.tier,
                stored_name=policy.stored_name,
            )
        )
    if counter.host_endpoint is not None:
        hit.endpoint = ENDPOINT_TO_PB[key.endpoint]
        hit.host_endpoint = counter.host_endpoint.name
    if key.rule_index >= 0:
        hit.rule.CopyFrom(hpb.RuleRef(index=key.rule_index, action=str(key.action)))
    hit.time.FromDatetime(moment.astimezone(UTC))
    return hit


def policy_names(counter: ResolvedCounter) -> frozenset[str]:
    """Every name a ``policy`` filter may use for this counter: name, namespace/name, the
    stored name, the raw chain, and the same for each member of a policy group."""
    names: set[str] = set()
    policies = list(counter.group.policies) if counter.group is not None else []
    if counter.policy is not None:
        policies.append(counter.policy)
    for policy in policies:
        names.update(p for p in (policy.name, policy.stored_name) if p)
        if policy.namespace:
            names.add(f"{policy.namespace}/{policy.name}")
    if counter.key.chain and counter.policy is not None:
        names.add(counter.key.chain)
    return frozenset(names)
