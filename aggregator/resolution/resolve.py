"""One counter's names: interface -> pod, chain -> policy, group or profile.

A lookup that raises never loses the counter: the raw dataplane names are used (as for
anything the catalog does not know) and the caller is told, so a bad datastore object
costs names, never counts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from aggregator.model import (
    HostEndpointIdentity,
    PolicyGroup,
    PolicyIdentity,
    ProfileIdentity,
    ResolvedCounter,
    WorkloadIdentity,
)
from calico_accountant.felix.chains import is_group_chain
from calico_accountant.records import CounterKey, EndpointKind, Kind

__all__ = ["RawName", "RawNameKind", "Resolver", "resolve_counter", "unresolved_names"]

OnError = Callable[[str, Exception], None]


class Resolver(Protocol):
    """What resolution needs from :class:`aggregator.catalog.index.Catalog`."""

    def workload(self, node: str, interface: str) -> WorkloadIdentity: ...

    def host_endpoint(self, node: str, interface: str) -> HostEndpointIdentity: ...

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity: ...

    def group(
        self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]
    ) -> PolicyGroup: ...

    def profile(self, chain: str) -> ProfileIdentity: ...


def resolve_counter(
    resolver: Resolver,
    node: str,
    key: CounterKey,
    *,
    chain_comment: str = "",
    group_members: Sequence[str] = (),
    comments: Mapping[str, str] | None = None,
    on_error: OnError | None = None,
) -> ResolvedCounter:
    """Attach the datastore's names to one counter.

    ``comments`` maps policy chains to felix's identity comment on the node (used for
    group members).  ``on_error`` is told about every lookup that raised.
    """
    comments = comments or {}
    comment = chain_comment or comments.get(key.chain, "")
    workload: WorkloadIdentity | None = None
    policy: PolicyIdentity | None = None
    group: PolicyGroup | None = None
    profile: ProfileIdentity | None = None
    host_endpoint: HostEndpointIdentity | None = None
    chain = key.chain
    if key.interface and key.endpoint is not EndpointKind.WORKLOAD:
        try:
            host_endpoint = resolver.host_endpoint(node, key.interface)
        except Exception as error:
            _tell(on_error, key.interface, error)
            host_endpoint = HostEndpointIdentity(node, key.interface, "", resolved=False)
    elif key.interface:
        try:
            workload = resolver.workload(node, key.interface)
        except Exception as error:
            _tell(on_error, key.interface, error)
            workload = WorkloadIdentity(node, key.interface, "", key.interface, "", resolved=False)
    kind = key.kind
    if (kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY) and (group_members or is_group_chain(chain)):
        members = tuple(group_members)
        member_comments = tuple(comments.get(member, "") for member in members)
        try:
            group = resolver.group(chain, members, member_comments)
        except Exception as error:
            _tell(on_error, chain, error)
            group = PolicyGroup(chain, tuple(PolicyIdentity.unresolved(m, key.tier) for m in members))
        policy = group.as_identity(key.tier) if group.policies else PolicyIdentity.unresolved(chain, key.tier)
    elif kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY or kind is Kind.POLICY_RULE:
        try:
            policy = resolver.policy(chain, comment)
        except Exception as error:
            _tell(on_error, chain, error)
            policy = PolicyIdentity.unresolved(chain, key.tier)
    elif kind is Kind.PROFILE_ACCEPT:
        try:
            profile = resolver.profile(chain)
        except Exception as error:
            _tell(on_error, chain, error)
            profile = ProfileIdentity(chain, resolved=False)
    return ResolvedCounter(
        node=node,
        key=key,
        workload=workload,
        policy=policy,
        group=group,
        profile=profile,
        chain_comment=comment,
        host_endpoint=host_endpoint,
    )


def _tell(on_error: OnError | None, what: str, error: Exception) -> None:
    if on_error is not None:
        on_error(what, error)


class RawNameKind(enum.StrEnum):
    """Which kind of dataplane name the catalog did not explain."""

    INTERFACE = "interface"
    CHAIN = "chain"


class RawName(NamedTuple):
    kind: RawNameKind
    name: str


def unresolved_names(counter: ResolvedCounter) -> tuple[RawName, ...]:
    """Every name of ``counter`` the catalog did not explain (exported raw)."""
    names: list[RawName] = []
    if counter.workload is not None and not counter.workload.resolved:
        names.append(RawName(RawNameKind.INTERFACE, counter.workload.interface))
    if counter.host_endpoint is not None and not counter.host_endpoint.resolved:
        names.append(RawName(RawNameKind.INTERFACE, counter.host_endpoint.interface))
    if counter.group is not None:
        names.extend(
            RawName(RawNameKind.CHAIN, p.stored_name or p.name)
            for p in counter.group.policies
            if not p.resolved
        )
        if not counter.group.policies:
            names.append(RawName(RawNameKind.CHAIN, counter.key.chain))
    elif counter.policy is not None and not counter.policy.resolved:
        names.append(RawName(RawNameKind.CHAIN, counter.key.chain))
    if counter.profile is not None and not counter.profile.resolved:
        names.append(RawName(RawNameKind.CHAIN, counter.key.chain))
    return tuple(names)
