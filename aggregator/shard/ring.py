"""Which shard owns a node: rendezvous (highest random weight) hashing over member ids.

Pure and deterministic: every replica computes the same owner from the same member set,
with no coordination beyond agreeing on that set (:mod:`aggregator.shard.membership`).
Rendezvous hashing moves only what must move when the set changes: a member that leaves
loses exactly its own nodes (each goes to its second choice), and one that joins takes
about ``1/n`` of the nodes, each from its previous owner; no virtual nodes or ring
positions to tune.  ``n`` is a handful of replicas, so the ``O(n)`` per lookup is nothing
beside a snapshot's decode; :class:`Ring` still memoises owners per node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Member", "Ring", "owner_of", "weight"]


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """A replica taking part: its stable id (the pod name) and where agents reach it."""

    identity: str
    address: str
    """``HOST:PORT`` of its gRPC port, as agents reach it (``--advertise-address``)."""


def weight(member: str, node: str) -> int:
    """The member's score for ``node``: 64 bits of BLAKE2b over both names (a separator
    byte keeps ``("a", "bc")`` and ``("ab", "c")`` apart).  Not Python's ``hash``, which
    is salted per process: every replica must compute the same weights."""
    digest = hashlib.blake2b(
        member.encode() + b"\x00" + node.encode(), digest_size=8, person=b"cal-acct-shard"
    ).digest()
    return int.from_bytes(digest, "big")


def owner_of(node: str, members: Iterable[str]) -> str | None:
    """The member with the highest weight for ``node`` (ties, practically never, go to the
    larger id so the answer never depends on order); None when there are no members."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (weight(member, node), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best is not None else None


@dataclass(frozen=True)
class Ring:
    """One view of the membership: owner lookups, memoised per node."""

    members: Mapping[str, Member]
    """identity -> member."""
    _owners: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, members: Iterable[Member]) -> Ring:
        return cls({member.identity: member for member in members})

    def owner(self, node: str) -> Member | None:
        """The member that owns ``node`` (None only for an empty ring)."""
        if node in self._owners:
            identity = self._owners[node]
        else:
            if len(self._owners) > 100_000:  # bounded whatever agents claim to be
                self._owners.clear()
            identity = self._owners[node] = owner_of(node, self.members)
        return self.members[identity] if identity is not None else None

    def moved(self, previous: Ring, nodes: Iterable[str]) -> dict[str, Member | None]:
        """Of ``nodes``, those whose owner differs from ``previous``'s: node -> new owner."""
        changed: dict[str, Member | None] = {}
        for node in nodes:
            now, before = self.owner(node), previous.owner(node)
            if (now.identity if now else None) != (before.identity if before else None):
                changed[node] = now
        return changed

    def describe(self) -> str:
        return ", ".join(f"{m.identity}@{m.address}" for m in sorted(self.members.values())) or "(no members)"
