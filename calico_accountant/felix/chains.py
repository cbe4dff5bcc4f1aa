"""Felix's chain layout: the prefixes of its chains and the comments it writes on rules.

The node agent reads these to attribute counters (which chain is an endpoint's, which
rule is a policy's accept return, where a tier ends); the aggregator reads them to tell
a policy chain from a group or profile chain and to use felix's identity comment as a
hint when resolving a hashed chain name.  See ``docs/attribution.md`` for how each is
used, and ``calico-dataplane.md`` in the project's reference notes for every version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from calico_accountant.records import Direction

__all__ = [
    "ADMIN_DOWN_MARKER",
    "ANY_ENDPOINT_CHAIN_PREFIXES",
    "ENDPOINT_CHAIN_PREFIXES",
    "GROUP_CHAIN_PREFIXES",
    "HOST_ENDPOINT_CHAIN_PREFIXES",
    "NO_POLICY_MARKER",
    "NO_PROFILE_MARKER",
    "POLICY_ACCEPTED_MARKER",
    "POLICY_CHAIN_PREFIXES",
    "POLICY_EGRESS_PREFIX",
    "POLICY_INGRESS_PREFIX",
    "POLICY_JUMP_PREFIXES",
    "PROFILE_ACCEPTED_MARKER",
    "PROFILE_CHAIN_PREFIXES",
    "PROFILE_EGRESS_PREFIX",
    "PROFILE_INGRESS_PREFIX",
    "START_OF_POLICIES_MARKER",
    "START_OF_TIER_MARKER",
    "UNTIERED",
    "IdentityComment",
    "is_group_chain",
    "is_identity_comment",
    "parse_identity_comment",
]

ENDPOINT_CHAIN_PREFIXES: dict[str, Direction] = {"cali-tw-": Direction.INGRESS, "cali-fw-": Direction.EGRESS}
"""A workload endpoint's chains: to-workload (ingress) and from-workload (egress)."""
HOST_ENDPOINT_CHAIN_PREFIXES: tuple[str, ...] = ("cali-th-", "cali-fh-", "cali-thfw-", "cali-fhfw-")
"""A host endpoint's chains (to/from host, and the forward ones); see
:mod:`calico_accountant.felix.endpoints` for what each holds."""
ANY_ENDPOINT_CHAIN_PREFIXES: tuple[str, ...] = (*ENDPOINT_CHAIN_PREFIXES, *HOST_ENDPOINT_CHAIN_PREFIXES)

POLICY_INGRESS_PREFIX = "cali-pi-"
POLICY_EGRESS_PREFIX = "cali-po-"
POLICY_CHAIN_PREFIXES: dict[str, Direction] = {
    POLICY_INGRESS_PREFIX: Direction.INGRESS,
    POLICY_EGRESS_PREFIX: Direction.EGRESS,
}
GROUP_CHAIN_PREFIXES: tuple[str, str] = ("cali-gi-", "cali-go-")
"""v3.28+ policy-group chains: several policies with the same selector behind one jump."""
POLICY_JUMP_PREFIXES: tuple[str, ...] = (*POLICY_CHAIN_PREFIXES, *GROUP_CHAIN_PREFIXES)
"""What an endpoint chain jumps to for policy: a policy chain or a group chain."""

PROFILE_INGRESS_PREFIX = "cali-pri-"
PROFILE_EGRESS_PREFIX = "cali-pro-"
PROFILE_CHAIN_PREFIXES: tuple[str, str] = (PROFILE_INGRESS_PREFIX, PROFILE_EGRESS_PREFIX)

UNTIERED = "default"
"""The tier of layouts before tiers (Calico <= v3.28): OSS policy was all in the implicit
``default`` tier."""

START_OF_TIER_MARKER = "Start of tier "
START_OF_POLICIES_MARKER = "Start of policies"
POLICY_ACCEPTED_MARKER = "Return if policy accepted"
PROFILE_ACCEPTED_MARKER = "Return if profile accepted"
NO_POLICY_MARKER = re.compile(
    r"^(?:End of tier (?P<tier>.+)\. )?(?:Drop|Reject) if no policies passed packet$"
)
NO_PROFILE_MARKER = re.compile(r"^(?:Drop|Reject) if no profiles matched$")
ADMIN_DOWN_MARKER = "Endpoint admin disabled"
"""The only rule of an admin-down endpoint's chains (``endpointIptablesChain``, all versions)."""


def is_group_chain(chain: str) -> bool:
    """A policy-group chain, also inside an nft layer name (``filter-cali-gi-...``)."""
    return "cali-gi-" in chain or "cali-go-" in chain  # GROUP_CHAIN_PREFIXES, unrolled: once per counter


# -- identity comments on the first rule of a policy/profile chain (v3.22+) -----------------

_IDENTITY_KINDS = (
    r"Policy|Profile|NetworkPolicy|GlobalNetworkPolicy|KubernetesNetworkPolicy|"
    r"KubernetesClusterNetworkPolicy|ClusterNetworkPolicy|AdminNetworkPolicy|BaselineAdminNetworkPolicy|"
    r"StagedNetworkPolicy|StagedGlobalNetworkPolicy|StagedKubernetesNetworkPolicy"
)
_WHOLE_IDENTITY = re.compile(rf"^(?:{_IDENTITY_KINDS}) \S+ (?:ingress|egress)$")
_IDENTITY = re.compile(rf"^(?P<kind>{_IDENTITY_KINDS}) (?P<id>\S+)(?: (?P<direction>ingress|egress))?$")


def is_identity_comment(comment: str) -> bool:
    """Whether ``comment`` is a whole identity comment (kind, name and direction)."""
    return _WHOLE_IDENTITY.match(comment) is not None


@dataclass(frozen=True, slots=True)
class IdentityComment:
    """What a felix identity comment names.

    ``kind`` is ``Policy`` for the v3.22-v3.31 form (the kind is not said), ``Profile``,
    or a v3.32 kind.  ``name`` is the stored name (v3.22-v3.31) or the v3.32 name.
    """

    kind: str
    namespace: str
    name: str
    direction: str


def parse_identity_comment(comment: str) -> IdentityComment | None:
    """Parse ``Policy ns/name ingress``, ``GlobalNetworkPolicy foo egress``, ``Profile kns.x ingress``.

    Returns None for anything else (including comments felix truncated mid-name, which
    then usually lack the direction word and are still parsed, so callers must check
    the name against the datastore before trusting it).
    """
    match = _IDENTITY.match(comment.strip())
    if match is None:
        return None
    kind = match["kind"]
    identity = match["id"]
    direction = match["direction"] or ""
    if kind == "Profile":
        return IdentityComment(kind, "", identity, direction)
    namespace, _, name = identity.rpartition("/")
    if "/" in namespace:
        # A v3.29-era id with the tier (Enterprise prints tier/ns/name): keep ns/name.
        namespace = namespace.rsplit("/", 1)[1]
    return IdentityComment(kind, namespace, name, direction)
