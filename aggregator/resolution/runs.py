"""Resolving counters once per workload and chain, not once per counter.

A node's counters come in runs: the agent sends each workload's chains one after another,
and the counters of one chain of one workload (its accept and its deny, say) carry the
same names: the same pod, the same policy.  Resolving each counter on its own asked the
memo (:mod:`aggregator.resolution.memo`) the same questions again, built the same lookup
tuples and worked out the same raw names: about half of the ~2 us a first snapshot's
counter spent resolving.  :class:`RunResolver` resolves the first counter of a run and
hands the next ones of the run the same identities, lookups and raw names.

A run is the counters with one *signature*: everything :func:`resolve_counter` reads
except what in the counter's kind does not change its names (node, interface, endpoint
kind, chain, tier, which names the kind asks for, the chain's comment, the group's
members).  A run also ends at :meth:`RunResolver.restart` (a new batch: group members'
comments come from the node's chain comments, which may have changed since, and the catalog
may have changed) and after a lookup that failed (so each counter's error is counted, as
before).

A workload's chains are runs one after another, and their interface is the same: the
interface's part of the names (:func:`~aggregator.resolution.resolve.resolve_endpoint`) is
kept from one run to the next while the node, interface and endpoint kind stay the same (not
past a restart, nor after its lookup failed); only the chain's part
(:func:`~aggregator.resolution.resolve.resolve_chain`) is worked out for each run.  A run is
~2 counters on the bench's nodes (a pod's accept and deny for one policy), so the run's first
counter is half of them: keeping the interface's part took resolution from 2.36 to 1.87 us a
counter of a first snapshot (``bench/first_snapshot_bench.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

from aggregator.model import CounterNames
from aggregator.resolution.memo import Lookup, MemoResolver
from aggregator.resolution.resolve import (
    EndpointNames,
    OnError,
    RawName,
    resolve_chain,
    resolve_endpoint,
    unresolved_chain,
    unresolved_endpoint,
)
from calico_accountant.records import CounterKey, EndpointKind, Kind

__all__ = ["Resolution", "RunResolver"]


class Resolution(NamedTuple):
    """A run's names, the lookups that gave them, and those the catalog did not explain: one
    object for all the run's counters (a counter is its run's names and its own key,
    :meth:`~aggregator.model.CounterNames.counter`)."""

    names: CounterNames
    lookups: tuple[Lookup, ...]
    unresolved: tuple[RawName, ...]


class _Asks(enum.Enum):
    """Which names a counter kind asks the catalog for (besides its interface's)."""

    POLICY_OR_GROUP = enum.auto()
    POLICY = enum.auto()
    PROFILE = enum.auto()
    NOTHING = enum.auto()


_ASKS: dict[Kind, _Asks] = {
    Kind.POLICY_ACCEPT: _Asks.POLICY_OR_GROUP,
    Kind.POLICY_DENY: _Asks.POLICY_OR_GROUP,
    Kind.POLICY_RULE: _Asks.POLICY,
    Kind.PROFILE_ACCEPT: _Asks.PROFILE,
    Kind.NO_POLICY_DROP: _Asks.NOTHING,
    Kind.NO_PROFILE_DROP: _Asks.NOTHING,
    Kind.ENDPOINT_ADMIN_DROP: _Asks.NOTHING,
}


class _Endpoint(NamedTuple):
    """An interface's names (:func:`resolve_endpoint`), the lookups that gave them and those
    the catalog did not explain."""

    where: tuple[str, str, EndpointKind]
    names: EndpointNames
    lookups: tuple[Lookup, ...]
    unresolved: tuple[RawName, ...]


class RunResolver:
    """Resolves through ``memo``, once per run of counters with one signature.  Not thread-safe."""

    __slots__ = ("_endpoint", "_last", "_memo")

    def __init__(self, memo: MemoResolver) -> None:
        self._memo = memo
        self._last: tuple[tuple[object, ...], Resolution] | None = None
        self._endpoint: _Endpoint | None = None
        """The last run's interface names: a workload's chains are runs one after another."""

    def restart(self) -> None:
        """The next counter starts a run, whatever its signature."""
        self._last = None
        self._endpoint = None

    def resolve(
        self,
        node: str,
        key: CounterKey,
        chain_comment: str,
        group_members: tuple[str, ...],
        comments: Mapping[str, str],
        on_error: OnError,
    ) -> Resolution:
        """The names of the counter ``key`` of ``node`` (with its own chain comment and group
        members as the ledger keeps them; ``comments``: the node's chain comments;
        ``on_error`` is told about every lookup that raised).  A run's counters get the same
        :class:`Resolution` object."""
        comment = chain_comment or comments.get(key.chain, "")
        signature = (
            node,
            key.interface,
            key.endpoint,
            key.chain,
            key.tier,
            _ASKS[key.kind],
            comment,
            group_members,
        )
        last = self._last
        if last is not None and last[0] == signature:
            return last[1]
        failed: list[bool] = []

        def tell(what: str, error: Exception) -> None:
            failed.append(True)
            on_error(what, error)

        memo = self._memo
        where = (node, key.interface, key.endpoint)
        known = self._endpoint
        if known is None or known.where != where:
            memo.touched = []
            endpoint = resolve_endpoint(memo, node, key, tell)
            known = _Endpoint(where, endpoint, tuple(memo.touched), unresolved_endpoint(endpoint))
            self._endpoint = None if failed else known
        endpoint = known.names
        memo.touched = []
        chain = resolve_chain(memo, key, comment, group_members, comments, tell)
        # Built with ``tuple.__new__``, the fields in order: a named tuple's own ``__new__`` is a
        # Python frame, and these two and the chain's names (``resolve_chain``) were ~3.5 % of a
        # first snapshot's decode and apply (py-spy, ``bench/first_snapshot_bench.py``'s shape).
        workload, host_endpoint = endpoint.workload, endpoint.host_endpoint
        names = tuple.__new__(
            CounterNames, (node, workload, chain.policy, chain.group, chain.profile, comment, host_endpoint)
        )
        lookups = known.lookups + tuple(memo.touched)
        resolution = tuple.__new__(
            Resolution, (names, lookups, known.unresolved + unresolved_chain(chain, key.chain))
        )
        self._last = None if failed else (signature, resolution)
        return resolution
