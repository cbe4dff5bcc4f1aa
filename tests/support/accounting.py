"""Small builders for the ledger, series and exposition tests: a fake catalog with the
same lookup methods as :class:`aggregator.catalog.index.Catalog`, and counter records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aggregator.model import (
    HostEndpointIdentity,
    PolicyGroup,
    PolicyIdentity,
    PolicyKind,
    ProfileIdentity,
    WorkloadIdentity,
)
from calico_accountant.records import CounterKey, CounterRecord, Direction, EndpointKind, Kind
from calico_accountant.wire.snapshots import DecodedSnapshot

INGRESS = Direction.INGRESS
EGRESS = Direction.EGRESS


@dataclass
class FakeCatalog:
    """Knows the workloads and policies it is given; everything else is unresolved,
    exactly like the real catalog's fallbacks."""

    workloads: dict[tuple[str, str], WorkloadIdentity] = field(default_factory=dict)
    policies: dict[str, PolicyIdentity] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    host_endpoints: dict[tuple[str, str], HostEndpointIdentity] = field(default_factory=dict)
    calls: int = 0

    def add_host_endpoint(self, node: str, interface: str, name: str) -> FakeCatalog:
        self.host_endpoints[(node, interface)] = HostEndpointIdentity(node, interface, name)
        return self

    def add_pod(
        self, node: str, interface: str, namespace: str, pod: str, app: str = "", ips: Sequence[str] = ()
    ) -> FakeCatalog:
        self.workloads[(node, interface)] = WorkloadIdentity(node, interface, namespace, pod, app, tuple(ips))
        return self

    def add_policy(
        self, chain: str, name: str, namespace: str = "", kind: str = "", tier: str = "default"
    ) -> FakeCatalog:
        kind = kind or ("NetworkPolicy" if namespace else "GlobalNetworkPolicy")
        self.policies[chain] = PolicyIdentity(PolicyKind(kind), namespace, name, tier, f"{tier}.{name}")
        return self

    def workload(self, node: str, interface: str) -> WorkloadIdentity:
        self.calls += 1
        found = self.workloads.get((node, interface))
        return found or WorkloadIdentity(node, interface, "", interface, "", resolved=False)

    def host_endpoint(self, node: str, interface: str) -> HostEndpointIdentity:
        self.calls += 1
        found = self.host_endpoints.get((node, interface))
        return found or HostEndpointIdentity(node, interface, "", resolved=False)

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
        self.calls += 1
        return self.policies.get(chain) or PolicyIdentity(PolicyKind.UNRESOLVED, "", chain, "")

    def group(self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]) -> PolicyGroup:
        return PolicyGroup(
            chain, tuple(self.policy(m, c) for m, c in zip(member_chains, member_comments, strict=True))
        )

    def profile(self, chain: str) -> ProfileIdentity:
        name = self.profiles.get(chain)
        return ProfileIdentity(name) if name else ProfileIdentity(chain, resolved=False)


def accept(
    iface: str,
    chain: str,
    packets: int,
    nbytes: int | None = None,
    *,
    ids: tuple[str, ...] = ("r1",),
    direction: Direction = INGRESS,
    tier: str = "default",
    family: int = 4,
    members: tuple[str, ...] = (),
    endpoint: EndpointKind = EndpointKind.WORKLOAD,
) -> CounterRecord:
    key = CounterKey(Kind.POLICY_ACCEPT, family, direction, iface, chain, tier, endpoint=endpoint)
    return CounterRecord(
        key, packets, packets * 100 if nbytes is None else nbytes, ids, group_members=members
    )


def deny(
    iface: str,
    chain: str,
    packets: int,
    nbytes: int | None = None,
    *,
    ids: tuple[str, ...] = ("j1", "r1", "n1"),
    direction: Direction = INGRESS,
    tier: str = "default",
    family: int = 4,
    members: tuple[str, ...] = (),
    endpoint: EndpointKind = EndpointKind.WORKLOAD,
) -> CounterRecord:
    key = CounterKey(Kind.POLICY_DENY, family, direction, iface, chain, tier, endpoint=endpoint)
    return CounterRecord(
        key, packets, packets * 100 if nbytes is None else nbytes, ids, group_members=members
    )


def no_policy_drop(
    iface: str,
    packets: int,
    *,
    direction: Direction = INGRESS,
    tier: str = "default",
    family: int = 4,
    ids: tuple[str, ...] = ("d1",),
    endpoint: EndpointKind = EndpointKind.WORKLOAD,
) -> CounterRecord:
    key = CounterKey(Kind.NO_POLICY_DROP, family, direction, iface, "", tier, endpoint=endpoint)
    return CounterRecord(key, packets, packets * 100, ids)


def profile_accept(
    iface: str, chain: str, packets: int, *, direction: Direction = INGRESS, family: int = 4
) -> CounterRecord:
    key = CounterKey(Kind.PROFILE_ACCEPT, family, direction, iface, chain, "")
    return CounterRecord(key, packets, packets * 100, ("p1",))


def no_profile_drop(
    iface: str, packets: int, *, direction: Direction = INGRESS, family: int = 4
) -> CounterRecord:
    key = CounterKey(Kind.NO_PROFILE_DROP, family, direction, iface, "", "")
    return CounterRecord(key, packets, packets * 100, ("np1",))


def policy_rule(
    chain: str,
    index: int,
    action: str,
    packets: int,
    *,
    direction: Direction = INGRESS,
    tier: str = "default",
    family: int = 4,
    comment: str = "",
) -> CounterRecord:
    key = CounterKey(Kind.POLICY_RULE, family, direction, "", chain, tier, index, action)
    return CounterRecord(key, packets, packets * 100, (f"rule-{chain}-{index}",), chain_comment=comment)


def snapshot(
    node: str,
    records: Sequence[CounterRecord],
    *,
    sequence: int = 1,
    instance: str = "agent-1",
    full: bool = True,
    removed: Sequence[CounterKey] = (),
    diagnostics: Mapping[str, int] | None = None,
    read_time: float = 1_700_000_000.0,
) -> DecodedSnapshot:
    return DecodedSnapshot(
        node=node,
        agent_instance_id=instance,
        sequence=sequence,
        read_time=datetime.fromtimestamp(read_time, UTC),
        full=full,
        records=tuple(records),
        removed=tuple(removed),
        diagnostic_counts=dict(diagnostics or {}),
    )
