"""How the catalog answered: one policy chain's resolution, and the tallies of all answers.

The tallies are kept as answers are memoised (each distinct question counted once) so
that :meth:`~aggregator.catalog.index.Catalog.resolution_stats` reads a few integers,
never the memo: a scrape may ask from its own thread while lookups go on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregator.model import PolicyIdentity
from calico_accountant.felix.naming import NamingScheme

__all__ = ["PolicyOutcome", "PolicyResolution", "ResolutionStats", "ResolutionTally"]


class PolicyOutcome(enum.StrEnum):
    """How one chain (with its comment) was resolved."""

    RESOLVED = "resolved"
    """The chain name matched exactly one policy (the comment agreed, or said nothing usable)."""
    BY_COMMENT = "by_comment"
    """The chain matched no policy, or several; the comment named a known policy."""
    COMMENT_MISMATCH = "comment_mismatch"
    """The chain matched one policy but the comment named another known one; the comment won."""
    AMBIGUOUS = "ambiguous"
    """Several policies claim the chain and no comment settles it."""
    UNRESOLVED = "unresolved"
    """No known policy has this chain."""


@dataclass(frozen=True, slots=True)
class PolicyResolution:
    """The answer to "which policy is this chain?", with how sure we are."""

    identity: PolicyIdentity
    outcome: PolicyOutcome
    scheme: NamingScheme | None = None
    """The naming scheme the chain matched under (tells the felix version family)."""
    candidates: tuple[PolicyIdentity, ...] = ()
    """For an ambiguous chain: the policies that claim it."""


class ResolutionTally:
    """Outcomes of a catalog's memoised answers, counted as they are memoised.  Lists
    indexed by ``resolved`` (False=0, True=1) and small dicts: cheap to update and to copy."""

    __slots__ = ("outcomes", "profiles", "schemes", "workloads")

    def __init__(self) -> None:
        self.workloads = [0, 0]
        self.profiles = [0, 0]
        self.outcomes: dict[PolicyOutcome, int] = {}
        self.schemes: dict[NamingScheme, int] = {}

    def count_policy(self, resolution: PolicyResolution) -> None:
        self.outcomes[resolution.outcome] = self.outcomes.get(resolution.outcome, 0) + 1
        if resolution.scheme is not None and resolution.outcome is PolicyOutcome.RESOLVED:
            self.schemes[resolution.scheme] = self.schemes.get(resolution.scheme, 0) + 1


@dataclass(frozen=True, slots=True)
class ResolutionStats:
    """Sizes of the catalog and outcome counts over the distinct questions it answered."""

    workloads: int
    policies: int
    """Known policies, staged ones included."""
    staged_policies: int
    profiles: int
    tiers: int
    duplicate_interfaces: int
    """(node, interface) pairs claimed by several WorkloadEndpoints (the newest wins)."""
    workloads_resolved: int
    workloads_unresolved: int
    policies_resolved: int
    policies_by_comment: int
    comment_mismatches: int
    policies_ambiguous: int
    policies_unresolved: int
    profiles_resolved: int
    profiles_unresolved: int
    schemes: tuple[tuple[str, int], ...]
    """Resolved chains per naming scheme, e.g. ``(("v3.29-v3.31", 12),)``."""
    host_endpoints: int = 0
    """(node, interface) pairs a HostEndpoint names."""

    def as_dict(self) -> dict[str, int]:
        """The integer figures by field name (for metrics)."""
        return {name: value for name in self.__slots__ if isinstance(value := getattr(self, name), int)}
