"""Lookup tables from Calico objects: (node, interface) → pod, chain → policy or profile.

A :class:`Catalog` is built from a snapshot of datastore objects and never changes
afterwards; when the datastore changes, :class:`aggregator.datastore.cache.DatastoreCache`
builds a new one and swaps it in, so readers never see a half-updated table.  Building
reuses the per-object work of the previous catalog for objects that did not change, so
a pod coming or going costs a dictionary rebuild, not 2k policies' worth of hashing.

Chain resolution covers every felix naming scheme at once (:mod:`calico_accountant.felix.naming`):
each policy contributes all the chain names any felix version could give it, and a
chain resolves when exactly one policy claims it.  Candidates built from the literal
stored name beat those built from guessed storage variants; a tie between two
policies is reported as ambiguous rather than guessed.  Felix's identity comment
(v3.22+) is a second opinion: it wins only when it names a policy the datastore knows.

Resolution itself is pure.  The only mutable state is a memo of answers, whose
outcomes are tallied as they are memoised: :meth:`Catalog.resolution_stats` counts each
distinct question once (repeated lookups of the same chain do not inflate the figures)
and reads only those tallies, so a scrape may call it from another thread.  Lookups
must come from one thread at a time (the aggregator's accountant calls them under its
lock).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from aggregator.catalog.entries import (
    POLICY_KINDS,
    PolicyEntry,
    WorkloadEntry,
    policy_entry,
    reused_entry,
    same_entries,
    workload_entry,
)
from aggregator.catalog.host_endpoints import (
    HOST_ENDPOINT_KIND,
    HostEndpointTable,
    host_endpoint_profiles,
    index_host_endpoints,
)
from aggregator.catalog.outcomes import PolicyOutcome, PolicyResolution, ResolutionStats, ResolutionTally
from aggregator.datastore.objects import CalicoObject
from aggregator.model import (
    HostEndpointIdentity,
    PolicyGroup,
    PolicyIdentity,
    ProfileIdentity,
    WorkloadIdentity,
)
from calico_accountant.felix.chains import PROFILE_CHAIN_PREFIXES, parse_identity_comment
from calico_accountant.felix.naming import DEFAULT_TIER, STAGED_KINDS, NamingScheme, profile_chain_candidates

__all__ = ["Catalog"]

_NFT_LAYER_PREFIX = "filter-"
_MEMO_LIMIT = 200_000
"""Distinct questions remembered; beyond this answers are still computed, not memoized."""


@dataclass(frozen=True, slots=True)
class _ChainMatch:
    identity: PolicyIdentity | None
    scheme: NamingScheme | None
    candidates: tuple[PolicyIdentity, ...]


class Catalog:
    """Immutable lookup tables over one snapshot of datastore objects.

    Build with :meth:`from_objects`; :meth:`empty` is a valid catalog with nothing in it
    (every lookup unresolved).
    """

    __slots__ = (
        "_build_seconds",
        "_by_interface",
        "_chains",
        "_comments",
        "_derived",
        "_duplicate_interfaces",
        "_host_endpoints",
        "_memo_policy",
        "_memo_profile",
        "_memo_workload",
        "_object_counts",
        "_policies",
        "_policy_entries",
        "_profile_chains",
        "_profiles",
        "_revision",
        "_staged",
        "_tally",
        "_tiers",
        "_workloads",
    )

    def __init__(self) -> None:
        self._workloads: dict[tuple[str, str], WorkloadIdentity] = {}
        self._host_endpoints: HostEndpointTable = {}
        self._by_interface: dict[str, WorkloadIdentity | None] = {}
        self._chains: dict[str, _ChainMatch] = {}
        self._comments: dict[tuple[str, str, str], PolicyIdentity | None] = {}
        self._profile_chains: dict[str, str] = {}
        self._profiles: frozenset[str] = frozenset()
        self._policies: tuple[PolicyIdentity, ...] = ()
        self._policy_entries: tuple[PolicyEntry, ...] = ()
        self._tiers: frozenset[str] = frozenset()
        self._staged = 0
        self._duplicate_interfaces = 0
        self._derived: dict[str, tuple[CalicoObject, Any]] = {}
        self._revision = 0
        self._build_seconds = 0.0
        self._memo_policy: dict[tuple[str, str], PolicyResolution] = {}
        self._memo_workload: dict[tuple[str, str], WorkloadIdentity] = {}
        self._memo_profile: dict[str, ProfileIdentity] = {}
        self._object_counts: dict[str, int] = {}
        self._tally = ResolutionTally()

    # ---------------------------------------------------------------- building

    @classmethod
    def empty(cls) -> Catalog:
        """A catalog that knows nothing (before the datastore's first listing)."""
        return cls()

    @classmethod
    def from_objects(
        cls,
        objects: Iterable[CalicoObject],
        *,
        revision: int = 0,
        previous: Catalog | None = None,
    ) -> Catalog:
        """Build the tables from datastore objects (any order; unknown kinds ignored).

        ``previous``: a catalog built earlier; the per-object work (hashing every chain
        candidate) is reused for objects that are unchanged (same key and the same
        object, or an equal body).  ``revision`` is recorded as :attr:`revision`.
        """
        started = time.perf_counter()
        catalog = cls()
        catalog._revision = revision
        objects = list(objects)
        tiers = frozenset(o.name for o in objects if o.kind == "Tier") | {DEFAULT_TIER}
        catalog._tiers = tiers
        reuse = previous._derived if previous is not None else {}
        reuse_policies = previous is not None and previous._tiers == tiers
        derived: dict[str, tuple[CalicoObject, Any]] = {}

        workload_entries: list[tuple[CalicoObject, WorkloadEntry]] = []
        policy_entries: list[PolicyEntry] = []
        profiles: set[str] = set()
        host_endpoints: list[CalicoObject] = []
        counts = catalog._object_counts
        for obj in objects:
            counts[obj.kind] = counts.get(obj.kind, 0) + 1
            if obj.kind == "WorkloadEndpoint":
                entry = reused_entry(reuse, obj)
                if not isinstance(entry, WorkloadEntry):
                    entry = workload_entry(obj)
                derived[obj.key] = (obj, entry)
                workload_entries.append((obj, entry))
            elif obj.kind in POLICY_KINDS:
                policy = reused_entry(reuse, obj) if reuse_policies else None
                if not isinstance(policy, PolicyEntry):
                    policy = policy_entry(obj, tiers)
                derived[obj.key] = (obj, policy)
                policy_entries.append(policy)
            elif obj.kind == "Profile":
                profiles.add(obj.name)
            elif obj.kind == HOST_ENDPOINT_KIND:
                host_endpoints.append(obj)
        catalog._host_endpoints = index_host_endpoints(host_endpoints)
        profiles |= host_endpoint_profiles(host_endpoints)
        catalog._derived = derived
        catalog._index_workloads(workload_entries, profiles)
        if previous is not None and same_entries(previous._policy_entries, policy_entries):
            # Only workloads changed (the common case: pods come and go): share the
            # previous policy tables, which are never mutated.
            catalog._policy_entries = previous._policy_entries
            catalog._chains = previous._chains
            catalog._comments = previous._comments
            catalog._policies = previous._policies
            catalog._staged = previous._staged
        else:
            catalog._policy_entries = tuple(policy_entries)
            catalog._index_policies(policy_entries)
        if previous is not None and previous._profiles == profiles:
            catalog._profiles = previous._profiles
            catalog._profile_chains = previous._profile_chains
        else:
            catalog._index_profiles(profiles)
        catalog._build_seconds = time.perf_counter() - started
        return catalog

    def _index_workloads(self, entries: list[tuple[CalicoObject, WorkloadEntry]], profiles: set[str]) -> None:
        newest: dict[tuple[str, str], tuple[int, WorkloadIdentity]] = {}
        duplicates = 0
        for obj, entry in entries:
            identity = entry.identity
            profiles.update(entry.profiles)
            key = (identity.node, identity.interface)
            held = newest.get(key)
            if held is not None:
                duplicates += 1
                held_rank = (held[0], held[1].namespace, held[1].pod)
                if held_rank >= (obj.revision, identity.namespace, identity.pod):
                    continue
            newest[key] = (obj.revision, identity)
        self._workloads = {key: identity for key, (_, identity) in newest.items()}
        by_interface: dict[str, WorkloadIdentity | None] = {}
        for (_, interface), identity in self._workloads.items():
            by_interface[interface] = None if interface in by_interface else identity
        self._by_interface = by_interface
        self._duplicate_interfaces = duplicates

    def _index_policies(self, entries: list[PolicyEntry]) -> None:
        claims: dict[str, list[tuple[PolicyIdentity, NamingScheme | None, bool]]] = {}
        comment_claims: dict[tuple[str, str, str], list[tuple[PolicyIdentity, bool]]] = {}
        policies: list[PolicyIdentity] = []
        staged = 0
        for entry in entries:
            policies.append(entry.identity)
            if entry.identity.kind in STAGED_KINDS:
                staged += 1
                continue
            for chain, scheme, exact in entry.chains:
                claims.setdefault(chain, []).append((entry.identity, scheme, exact))
            for comment_key, exact in entry.comment_keys:
                comment_claims.setdefault(comment_key, []).append((entry.identity, exact))
        chains: dict[str, _ChainMatch] = {}
        for chain, chain_claims in claims.items():
            if len(chain_claims) == 1:
                identity, scheme, _ = chain_claims[0]
                chains[chain] = _ChainMatch(identity, scheme, ())
                continue
            winner = _single_winner([(identity, exact) for identity, _, exact in chain_claims])
            if winner is not None:
                winner_claims = sorted(
                    ((not e, s) for i, s, e in chain_claims if i == winner), key=lambda c: c[0]
                )
                scheme = winner_claims[0][1]
                chains[chain] = _ChainMatch(winner, scheme, ())
            else:
                chains[chain] = _ChainMatch(None, None, _distinct(i for i, _, _ in chain_claims))
        self._chains = chains
        self._comments = {
            key: _single_winner(claims_for_key) for key, claims_for_key in comment_claims.items()
        }
        self._policies = tuple(sorted(policies, key=lambda p: (p.kind, p.namespace, p.stored_name)))
        self._staged = staged

    def _index_profiles(self, profiles: set[str]) -> None:
        self._profiles = frozenset(profiles)
        chains: dict[str, str] = {}
        for profile in sorted(profiles):
            for candidate in profile_chain_candidates(profile):
                chains.setdefault(candidate.chain, profile)
        self._profile_chains = chains

    # ---------------------------------------------------------------- lookups

    @property
    def revision(self) -> int:
        """The datastore revision this catalog reflects (0 for files)."""
        return self._revision

    @property
    def build_seconds(self) -> float:
        """How long :meth:`from_objects` took, for the aggregator's own metrics."""
        return self._build_seconds

    @property
    def tiers(self) -> frozenset[str]:
        return self._tiers

    def policies(self) -> tuple[PolicyIdentity, ...]:
        """Every known policy (staged ones too), sorted by kind, namespace, stored name."""
        return self._policies

    def policy_objects(self) -> tuple[tuple[PolicyIdentity, CalicoObject], ...]:
        """Every known policy with the datastore object it was built from (its rules,
        labels and annotations), sorted like :meth:`policies`; for the rule-info metrics."""
        found = [
            (entry.identity, obj) for obj, entry in self._derived.values() if isinstance(entry, PolicyEntry)
        ]
        return tuple(sorted(found, key=lambda pair: (pair[0].kind, pair[0].namespace, pair[0].stored_name)))

    def workloads(self) -> tuple[WorkloadIdentity, ...]:
        """Every known workload endpoint, sorted by node and interface."""
        return tuple(self._workloads[key] for key in sorted(self._workloads))

    def profiles(self) -> frozenset[str]:
        """Known profile names (Profile objects plus those implied by workloads)."""
        return self._profiles

    def workload(self, node: str, interface: str) -> WorkloadIdentity:
        """The pod behind ``interface`` on ``node``.

        Falls back to the interface alone when it is unique in the cluster (Calico's
        veth names are), so a node agent whose node name differs from Calico's still
        resolves; the identity then carries the node the caller asked about.
        """
        key = (node, interface)
        memo = self._memo_workload.get(key)
        if memo is not None:
            return memo
        identity = self._workloads.get(key)
        if identity is None:
            by_interface = self._by_interface.get(interface)
            if by_interface is not None:
                identity = replace(by_interface, node=node)
        if identity is None:
            identity = WorkloadIdentity(
                node=node, interface=interface, namespace="", pod=interface, app="", resolved=False
            )
        if len(self._memo_workload) < _MEMO_LIMIT:
            self._memo_workload[key] = identity
            self._tally.workloads[identity.resolved] += 1
        return identity

    def host_endpoints(self) -> tuple[HostEndpointIdentity, ...]:
        """Every host endpoint that names its interface, sorted by node and interface."""
        return tuple(self._host_endpoints[key] for key in sorted(self._host_endpoints))

    def host_endpoint(self, node: str, interface: str) -> HostEndpointIdentity:
        """The HostEndpoint felix applies on ``interface`` of ``node`` (a dictionary lookup:
        host endpoints are few, so no memo); unresolved when none names it."""
        identity = self._host_endpoints.get((node, interface))
        if identity is None:
            return HostEndpointIdentity(node=node, interface=interface, name="", resolved=False)
        return identity

    def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
        """The policy a ``cali-pi-``/``cali-po-`` chain belongs to (see :meth:`resolve_policy`)."""
        return self.resolve_policy(chain, comment).identity

    def resolve_policy(self, chain: str, comment: str = "") -> PolicyResolution:
        """Resolve a policy chain, cross-checked with felix's identity comment when given.

        Unknown or ambiguous chains give :meth:`PolicyIdentity.unresolved`.
        """
        key = (chain, comment)
        memo = self._memo_policy.get(key)
        if memo is not None:
            return memo
        resolution = self._resolve_policy(chain, comment)
        if len(self._memo_policy) < _MEMO_LIMIT:
            self._memo_policy[key] = resolution
            self._tally.count_policy(resolution)
        return resolution

    def _resolve_policy(self, chain: str, comment: str) -> PolicyResolution:
        match = self._chains.get(chain)
        if match is None and chain.startswith(_NFT_LAYER_PREFIX):
            match = self._chains.get(chain[len(_NFT_LAYER_PREFIX) :])
        by_comment = self._comment_identity(comment)
        if match is not None and match.identity is not None:
            if by_comment is not None and by_comment != match.identity:
                return PolicyResolution(by_comment, PolicyOutcome.COMMENT_MISMATCH, match.scheme)
            return PolicyResolution(match.identity, PolicyOutcome.RESOLVED, match.scheme)
        if by_comment is not None:
            return PolicyResolution(by_comment, PolicyOutcome.BY_COMMENT)
        unresolved = PolicyIdentity.unresolved(chain)
        if match is not None:
            return PolicyResolution(unresolved, PolicyOutcome.AMBIGUOUS, None, match.candidates)
        return PolicyResolution(unresolved, PolicyOutcome.UNRESOLVED)

    def _comment_identity(self, comment: str) -> PolicyIdentity | None:
        if not comment:
            return None
        parsed = parse_identity_comment(comment)
        if parsed is None or parsed.kind == "Profile":
            return None
        return self._comments.get((parsed.kind, parsed.namespace, parsed.name))

    def group(
        self, chain: str, member_chains: Sequence[str], member_comments: Sequence[str] = ()
    ) -> PolicyGroup:
        """A ``cali-gi-``/``cali-go-`` group chain with its members resolved, in order.

        ``member_comments[i]`` is the identity comment of ``member_chains[i]`` (missing
        or empty when unknown).
        """
        comments = list(member_comments) + [""] * (len(member_chains) - len(member_comments))
        return PolicyGroup(
            chain=chain,
            policies=tuple(self.policy(m, c) for m, c in zip(member_chains, comments, strict=False)),
        )

    def profile(self, chain: str) -> ProfileIdentity:
        """The profile of a ``cali-pri-``/``cali-pro-`` chain.

        Unhashed chains carry the profile name verbatim, so they resolve even when the
        datastore does not list the profile; hashed unknown ones stay unresolved.
        """
        memo = self._memo_profile.get(chain)
        if memo is not None:
            return memo
        name = self._profile_chains.get(chain)
        if name is None and chain.startswith(_NFT_LAYER_PREFIX):
            name = self._profile_chains.get(chain[len(_NFT_LAYER_PREFIX) :])
        if name is not None:
            identity = ProfileIdentity(name=name)
        else:
            stripped = chain[len(_NFT_LAYER_PREFIX) :] if chain.startswith(_NFT_LAYER_PREFIX) else chain
            suffix = ""
            for prefix in PROFILE_CHAIN_PREFIXES:
                if stripped.startswith(prefix):
                    suffix = stripped[len(prefix) :]
            if suffix and not suffix.startswith("_"):
                identity = ProfileIdentity(name=suffix)
            else:
                identity = ProfileIdentity(name=chain, resolved=False)
        if len(self._memo_profile) < _MEMO_LIMIT:
            self._memo_profile[chain] = identity
            self._tally.profiles[identity.resolved] += 1
        return identity

    @property
    def object_counts(self) -> Mapping[str, int]:
        """Datastore objects the catalog was built from, per kind (unknown kinds too)."""
        return MappingProxyType(self._object_counts)

    def resolution_stats(self) -> ResolutionStats:
        """Sizes and outcome counts over the distinct questions answered so far."""
        tally = self._tally
        outcomes = dict(tally.outcomes)  # C-level copies: safe against a concurrent lookup
        schemes = dict(tally.schemes)
        workloads, profiles = list(tally.workloads), list(tally.profiles)
        return ResolutionStats(
            workloads=len(self._workloads),
            policies=len(self._policies),
            staged_policies=self._staged,
            profiles=len(self._profiles),
            tiers=len(self._tiers),
            duplicate_interfaces=self._duplicate_interfaces,
            workloads_resolved=workloads[True],
            workloads_unresolved=workloads[False],
            policies_resolved=outcomes.get(PolicyOutcome.RESOLVED, 0),
            policies_by_comment=outcomes.get(PolicyOutcome.BY_COMMENT, 0),
            comment_mismatches=outcomes.get(PolicyOutcome.COMMENT_MISMATCH, 0),
            policies_ambiguous=outcomes.get(PolicyOutcome.AMBIGUOUS, 0),
            policies_unresolved=outcomes.get(PolicyOutcome.UNRESOLVED, 0),
            profiles_resolved=profiles[True],
            profiles_unresolved=profiles[False],
            schemes=tuple(sorted((scheme.value, n) for scheme, n in schemes.items())),
            host_endpoints=len(self._host_endpoints),
        )

    def __repr__(self) -> str:
        return (
            f"Catalog(revision={self._revision}, workloads={len(self._workloads)}, "
            f"policies={len(self._policies)}, profiles={len(self._profiles)})"
        )


def _single_winner(claims: Sequence[tuple[PolicyIdentity, bool]]) -> PolicyIdentity | None:
    """The one policy with an exact claim, else the one with any claim, else None (a tie)."""
    exact = _distinct(identity for identity, is_exact in claims if is_exact)
    if len(exact) == 1:
        return exact[0]
    if exact:
        return None
    inexact = _distinct(identity for identity, _ in claims)
    return inexact[0] if len(inexact) == 1 else None


def _distinct(identities: Iterable[PolicyIdentity]) -> tuple[PolicyIdentity, ...]:
    return tuple(dict.fromkeys(identities))
