"""Catalog lookups, cached with the counters that made them.

A cluster has hundreds of thousands of counters but only a few distinct lookups per pod
and policy.  :class:`MemoResolver` answers each distinct lookup once and remembers which
counters used it, so that when the catalog changes :meth:`MemoResolver.refresh` asks
the new catalog only the distinct lookups and returns just the counters whose answer
changed.  It also remembers the last names a pod or policy resolved to: when one leaves
the datastore, its counters (live until felix removes its chains, then retired) keep
their namespace, app and policy in the sums instead of falling back to raw names.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any

from aggregator.model import (
    HostEndpointIdentity,
    PolicyGroup,
    PolicyIdentity,
    ProfileIdentity,
    WorkloadIdentity,
)
from aggregator.resolution.resolve import Resolver

__all__ = ["CounterPlace", "Lookup", "LookupKind", "MemoResolver"]

CounterPlace = tuple[str, int]
"""A counter of a node: (node, its row in the ledger, :mod:`aggregator.ledger.rows`)."""


class LookupKind(enum.StrEnum):
    """What a lookup asks the catalog (the first element of every :data:`Lookup`)."""

    WORKLOAD = "workload"
    HOST_ENDPOINT = "host_endpoint"
    POLICY = "policy"
    PROFILE = "profile"
    GROUP = "group"


Lookup = tuple[Any, ...]
"""``(WORKLOAD, node, interface)``, ``(HOST_ENDPOINT, node, interface)``, ``(POLICY, chain,
comment)``, ``(PROFILE, chain)`` or
``(GROUP, chain, *members, "", *comments)``: plain tuples, because every counter's
resolution builds and hashes a few of them."""


class MemoResolver:
    """A :class:`~aggregator.resolution.resolve.Resolver` in front of the catalog that
    records the lookups of one counter's resolution in :attr:`touched`."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._answers: dict[LookupKind, dict[Lookup, Any]] = {kind: {} for kind in LookupKind}
        self._users: dict[Lookup, dict[str, list[int]]] = {}
        """Per lookup, the rows of the counters that use it, per node: no tuple per counter, and
        lists, not sets (8 bytes a row, not ~40: a row leaves its few dozen neighbours of one
        workload or chain rarely, and a whole node's go at once, :meth:`release_node`)."""
        self._last_known: dict[Lookup, WorkloadIdentity | PolicyIdentity | HostEndpointIdentity] = {}
        """Per workload, host endpoint or policy lookup, the last answer that resolved (see _remembering)."""
        self.touched: list[Lookup] = []
        """Lookups made since the caller last cleared it (one counter's resolution)."""

    def workload(self, node: str, interface: str) -> WorkloadIdentity:
        answer: WorkloadIdentity = self._lookup((LookupKind.WORKLOAD, node, interface))
        return answer

    def host_endpoint(self, node: str, interface: str) -> HostEndpointIdentity:
        answer: HostEndpointIdentity = self._lookup((LookupKind.HOST_ENDPOINT, node, interface))
        return answer

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
        answer: PolicyIdentity = self._lookup((LookupKind.POLICY, chain, comment))
        return answer

    def group(self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str]) -> PolicyGroup:
        answer: PolicyGroup = self._lookup((LookupKind.GROUP, chain, *member_chains, "", *member_comments))
        return answer

    def profile(self, chain: str) -> ProfileIdentity:
        answer: ProfileIdentity = self._lookup((LookupKind.PROFILE, chain))
        return answer

    def user_rows(self, node: str, lookups: Iterable[Lookup]) -> list[list[int]]:
        """For each of ``lookups``, the list of the rows of ``node`` it routes (made if
        missing): a counter routed by ``lookups`` appends its row to each, and the next
        counters of its run append to the same lists.  A list made here must get a row at
        once; the lists stay valid until the next :meth:`release` or :meth:`release_node`."""
        found: list[list[int]] = []
        for lookup in lookups:
            users = self._users.get(lookup)
            if users is None:
                users = self._users[lookup] = {}
            rows = users.get(node)
            if rows is None:
                rows = users[node] = []
            found.append(rows)
        return found

    def release(self, node: str, row: int, lookups: Iterable[Lookup]) -> None:
        """The counter in ``row`` of ``node`` no longer uses ``lookups``; unused answers are
        forgotten."""
        for lookup in lookups:
            users = self._users.get(lookup)
            rows = users.get(node) if users is not None else None
            if users is None or rows is None:
                continue
            if row in rows:
                rows.remove(row)
            if not rows:
                del users[node]
                if not users:
                    del self._users[lookup]
                    self._answers[lookup[0]].pop(lookup, None)

    def release_node(self, node: str, lookups: Iterable[Lookup]) -> None:
        """Every counter of ``node`` is gone (``lookups``: every lookup its counters used; only
        those are visited, not every lookup of the cluster); answers no other node uses are
        forgotten."""
        for lookup in set(lookups):
            users = self._users.get(lookup)
            if users is None or users.pop(node, None) is None or users:
                continue
            del self._users[lookup]
            self._answers[lookup[0]].pop(lookup, None)

    def refresh(self, resolver: Resolver) -> set[CounterPlace]:
        """Switch to ``resolver``; returns the counters whose lookups now answer differently."""
        self.resolver = resolver
        dirty: set[CounterPlace] = set()
        for lookup, users in self._users.items():
            answers = self._answers[lookup[0]]
            old = answers.get(lookup)
            try:
                new = self._ask(lookup)
            except Exception:
                new = None
            if new != old:
                dirty.update((node, row) for node, rows in users.items() for row in rows)
            if new is None:
                answers.pop(lookup, None)
            else:
                answers[lookup] = new
        return dirty

    def inherit(self, previous: MemoResolver) -> None:
        """Keep ``previous``'s last known names, so a rebuild routes the counters of deleted
        pods and policies exactly as the incremental path does."""
        self._last_known.update(previous._last_known)

    def _lookup(self, lookup: Lookup) -> Any:
        self.touched.append(lookup)
        answers = self._answers[lookup[0]]
        found = answers.get(lookup)
        if found is None:
            found = answers[lookup] = self._ask(lookup)
        return found

    def _ask(self, lookup: Lookup) -> object:
        kind = lookup[0]
        if kind is LookupKind.WORKLOAD:
            return self._remembering(lookup, self.resolver.workload(lookup[1], lookup[2]))
        if kind is LookupKind.HOST_ENDPOINT:
            return self._remembering(lookup, self.resolver.host_endpoint(lookup[1], lookup[2]))
        if kind is LookupKind.POLICY:
            return self._remembering(lookup, self.resolver.policy(lookup[1], lookup[2]))
        if kind is LookupKind.PROFILE:
            return self.resolver.profile(lookup[1])
        rest = lookup[2:]
        split = rest.index("")
        return self.resolver.group(lookup[1], rest[:split], rest[split + 1 :])

    def _remembering(
        self, lookup: Lookup, answer: WorkloadIdentity | PolicyIdentity | HostEndpointIdentity
    ) -> WorkloadIdentity | PolicyIdentity | HostEndpointIdentity:
        """The resolver's answer, or, when a pod, host endpoint or policy that resolved
        before has left the datastore, the names it had."""
        if answer.resolved:
            self._last_known[lookup] = answer
            return answer
        return self._last_known.get(lookup, answer)
