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

__all__ = [
    "ChainNames",
    "EndpointNames",
    "RawName",
    "RawNameKind",
    "Resolver",
    "resolve_chain",
    "resolve_counter",
    "resolve_endpoint",
    "unresolved_chain",
    "unresolved_endpoint",
]

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


class EndpointNames(NamedTuple):
    """What a counter's interface resolved to: a pod, a host endpoint, or neither (per-rule
    counters have no interface)."""

    workload: WorkloadIdentity | None
    host_endpoint: HostEndpointIdentity | None


class ChainNames(NamedTuple):
    """What a counter's chain resolved to: a policy (with the group's members, for a group
    chain), a profile, or nothing (the drops)."""

    policy: PolicyIdentity | None
    group: PolicyGroup | None
    profile: ProfileIdentity | None


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
    endpoint = resolve_endpoint(resolver, node, key, on_error)
    chain = resolve_chain(resolver, key, comment, group_members, comments, on_error)
    return ResolvedCounter(
        node=node,
        key=key,
        workload=endpoint.workload,
        policy=chain.policy,
        group=chain.group,
        profile=chain.profile,
        chain_comment=comment,
        host_endpoint=endpoint.host_endpoint,
    )


def resolve_endpoint(
    resolver: Resolver, node: str, key: CounterKey, on_error: OnError | None
) -> EndpointNames:
    """The names of ``key``'s interface on ``node``: what depends on the node, the interface
    and the endpoint kind only."""
    if not key.interface:
        return EndpointNames(None, None)
    if key.endpoint is not EndpointKind.WORKLOAD:
        try:
            return EndpointNames(None, resolver.host_endpoint(node, key.interface))
        except Exception as error:
            _tell(on_error, key.interface, error)
            return EndpointNames(None, HostEndpointIdentity(node, key.interface, "", resolved=False))
    try:
        return EndpointNames(resolver.workload(node, key.interface), None)
    except Exception as error:
        _tell(on_error, key.interface, error)
        return EndpointNames(
            WorkloadIdentity(node, key.interface, "", key.interface, "", resolved=False), None
        )


_NO_CHAIN_NAMES = ChainNames(None, None, None)
"""The names of a drop's chain (no policy, group or profile): one object for all of them."""


def resolve_chain(
    resolver: Resolver,
    key: CounterKey,
    comment: str,
    group_members: Sequence[str],
    comments: Mapping[str, str],
    on_error: OnError | None,
) -> ChainNames:
    """The names of ``key``'s chain (``comment``: its identity comment; ``comments``: the
    node's, for group members): what depends on the chain, the tier, the counter's kind,
    the comment and the group's members only."""
    chain = key.chain
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
        return ChainNames(policy, group, None)
    if kind is Kind.POLICY_ACCEPT or kind is Kind.POLICY_DENY or kind is Kind.POLICY_RULE:
        try:
            policy = resolver.policy(chain, comment)
        except Exception as error:
            _tell(on_error, chain, error)
            policy = PolicyIdentity.unresolved(chain, key.tier)
        # Built with ``tuple.__new__``: a named tuple's own ``__new__`` is a Python frame, and
        # this is made once per run of a first snapshot's counters (see :mod:`.runs`).
        return tuple.__new__(ChainNames, (policy, None, None))
    if kind is Kind.PROFILE_ACCEPT:
        try:
            profile = resolver.profile(chain)
        except Exception as error:
            _tell(on_error, chain, error)
            profile = ProfileIdentity(chain, resolved=False)
        return ChainNames(None, None, profile)
    return _NO_CHAIN_NAMES


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


def unresolved_endpoint(names: EndpointNames) -> tuple[RawName, ...]:
    """The interface of ``names``, if the catalog did not explain it."""
    if names.workload is not None and not names.workload.resolved:
        return (RawName(RawNameKind.INTERFACE, names.workload.interface),)
    if names.host_endpoint is not None and not names.host_endpoint.resolved:
        return (RawName(RawNameKind.INTERFACE, names.host_endpoint.interface),)
    return ()


def unresolved_chain(names: ChainNames, chain: str) -> tuple[RawName, ...]:
    """The chains behind ``names`` (of ``chain``) the catalog did not explain."""
    raw: list[RawName] = []
    if names.group is not None:
        raw.extend(
            RawName(RawNameKind.CHAIN, p.stored_name or p.name)
            for p in names.group.policies
            if not p.resolved
        )
        if not names.group.policies:
            raw.append(RawName(RawNameKind.CHAIN, chain))
    elif names.policy is not None and not names.policy.resolved:
        raw.append(RawName(RawNameKind.CHAIN, chain))
    if names.profile is not None and not names.profile.resolved:
        raw.append(RawName(RawNameKind.CHAIN, chain))
    return tuple(raw)
