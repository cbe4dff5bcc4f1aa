"""Felix's chain-name algorithm for every Calico version, as pure functions.

Felix never writes a policy's name into iptables directly: it builds a *policy id*
string whose shape changed three times (v3.0-v3.28, v3.29-v3.31, v3.32+), prefixes it
with ``cali-pi-``/``cali-po-`` and passes the result through ``GetLengthLimitedID``,
which replaces long suffixes by a truncated SHA-256.  The hash cannot be reversed, so
the aggregator computes, for every policy in the datastore, the chain names *every*
scheme would give and matches them against the chains a node reports.  That also
covers clusters whose nodes run different Calico versions during an upgrade.

The names felix hashes are the names *as stored* (``default.<name>`` for Calico
policies written by clientv3 before v3.32, ``<tier>.<name>`` for tiered ones,
``knp.default.<name>`` for Kubernetes policies copied into etcd), while files written
by ``calicoctl get -o yaml`` show the names users typed.  So candidates are generated
from the stored name and from its prefixed/unprefixed variants; each candidate says
whether it came from the literal stored name (``exact``) or from a guessed variant, so
the catalog can prefer exact matches when two policies collide.

Everything here is pure and deterministic: strings in, strings out.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from calico_accountant.felix.chains import (
    POLICY_EGRESS_PREFIX,
    POLICY_INGRESS_PREFIX,
    PROFILE_EGRESS_PREFIX,
    PROFILE_INGRESS_PREFIX,
    UNTIERED,
)

__all__ = [
    "ADMIN_NETWORK_POLICY_PREFIX",
    "BASELINE_ADMIN_NETWORK_POLICY_PREFIX",
    "DEFAULT_TIER",
    "IPTABLES_MAX_CHAIN_NAME",
    "KNP_STORED_PREFIX",
    "NFT_MAX_CHAIN_NAME",
    "STAGED_KINDS",
    "ChainCandidate",
    "NamingScheme",
    "PolicyIdCandidate",
    "kind_short",
    "length_limited_id",
    "policy_chain_candidates",
    "policy_id_candidates",
    "profile_chain_candidates",
    "profile_chain_names",
    "profile_names_for_workload",
    "stored_policy_name",
    "veth_name",
    "workload_endpoint_name",
]

IPTABLES_MAX_CHAIN_NAME = 28
"""``MaxChainNameLength`` of felix's iptables tables."""
NFT_MAX_CHAIN_NAME = 256
"""``knftables.NameLengthMax``: nft policy chains from v3.30 on are never hashed."""

DEFAULT_TIER = UNTIERED
KNP_STORED_PREFIX = "knp.default."
"""``K8sNetworkPolicyNamePrefix``: ``default`` is the *tier* here, not a namespace."""
ADMIN_NETWORK_POLICY_PREFIX = "kanp.adminnetworkpolicy."
BASELINE_ADMIN_NETWORK_POLICY_PREFIX = "kbanp.baselineadminnetworkpolicy."
_UNPREFIXED_STORED = ("knp.", "ossg.", "kanp.", "kbanp.")
"""Names clientv3 stores as typed (``convertPolicyNameForStorage`` and its successors)."""

STAGED_KINDS = frozenset(
    {"StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy"}
)
"""Staged policies never get dataplane chains (v3.30+, commit d8b391ce5f)."""

_KIND_SHORT = {
    "NetworkPolicy": "np",
    "GlobalNetworkPolicy": "gnp",
    "KubernetesNetworkPolicy": "knp",
    "KubernetesClusterNetworkPolicy": "kcnp",
    "ClusterNetworkPolicy": "kcnp",
    "AdminNetworkPolicy": "gnp",
    "BaselineAdminNetworkPolicy": "gnp",
    "StagedNetworkPolicy": "snp",
    "StagedGlobalNetworkPolicy": "sgnp",
    "StagedKubernetesNetworkPolicy": "sknp",
}


class NamingScheme(enum.StrEnum):
    """Which felix generation's policy-id shape produced a chain name (§1.3)."""

    V3_0 = "v3.0-v3.28"
    """``<ns>/<stored>`` or ``<stored>`` (also felix 2.x)."""
    V3_29 = "v3.29-v3.31"
    """``<tier>/<ns>/<stored>`` or ``<tier>/<stored>``."""
    V3_32 = "v3.32+"
    """``<kindShort>/<ns>/<name>`` or ``<kindShort>/<name>``."""


@dataclass(frozen=True, slots=True)
class PolicyIdCandidate:
    """One string felix may have hashed for a policy, and how we arrived at it."""

    policy_id: str
    scheme: NamingScheme
    exact: bool
    """True when built from the literal stored name (and its literal kind); False when
    built from a guessed storage variant (``default.`` added or removed, ...)."""


@dataclass(frozen=True, slots=True)
class ChainCandidate:
    """A chain name a policy or profile may appear under, with its provenance."""

    chain: str
    direction: str
    """``ingress`` (``cali-pi-``/``cali-pri-``) or ``egress`` (``cali-po-``/``cali-pro-``)."""
    scheme: NamingScheme | None
    """None for profiles: their naming never changed."""
    exact: bool


def length_limited_id(prefix: str, suffix: str, max_len: int = IPTABLES_MAX_CHAIN_NAME) -> str:
    """Felix's ``GetLengthLimitedID``: ``prefix + suffix``, or ``prefix + "_" + hash`` when too long.

    The hash is SHA-256 of the suffix, URL-safe base64 without padding, cut so the whole
    name is exactly ``max_len`` long.  A suffix starting with ``_`` that would exactly
    fill ``max_len`` is hashed too, so a hashed name can never be forged by a real one.
    """
    if suffix == "":
        suffix = "_"
    total = len(prefix) + len(suffix)
    if total > max_len or (total == max_len and suffix.startswith("_")):
        digest = hashlib.sha256(suffix.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        return prefix + "_" + encoded[: max_len - 1 - len(prefix)]
    return prefix + suffix


def kind_short(kind: str) -> str:
    """The v3.32 ``PolicyID`` short kind (``np``, ``gnp``, ``knp``, ``kcnp``, ...); ``""`` if unknown."""
    return _KIND_SHORT.get(kind, "")


def stored_policy_name(name: str, tier: str = DEFAULT_TIER) -> str:
    """The name clientv3 (v3.0-v3.28) or the etcd/CRD backends (v3.29-v3.31) store a policy under.

    ``allow-dns`` in tier ``default`` is stored ``default.allow-dns``; names already
    carrying the tier or a generated prefix (``knp.``, ``ossg.``, ``kanp.``, ``kbanp.``)
    are stored unchanged.  v3.32+ no longer prefixes; use the typed name for those.
    """
    tier = tier or DEFAULT_TIER
    if name.startswith(_UNPREFIXED_STORED) or name.startswith(tier + "."):
        return name
    return f"{tier}.{name}"


def _name_variants(stored_name: str, tier: str) -> tuple[tuple[str, bool], ...]:
    """The stored name itself (exact) plus the variant with the tier prefix added or removed."""
    variants: list[tuple[str, bool]] = [(stored_name, True)]
    if stored_name.startswith(_UNPREFIXED_STORED):
        return tuple(variants)
    tier_prefix = (tier or DEFAULT_TIER) + "."
    if stored_name.startswith(tier_prefix) and len(stored_name) > len(tier_prefix):
        variants.append((stored_name[len(tier_prefix) :], False))
    else:
        variants.append((tier_prefix + stored_name, False))
    if tier_prefix != DEFAULT_TIER + "." and stored_name.startswith(DEFAULT_TIER + "."):
        variants.append((stored_name[len(DEFAULT_TIER) + 1 :], False))
    return tuple(variants)


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def policy_id_candidates(
    kind: str, namespace: str, stored_name: str, tier: str = DEFAULT_TIER
) -> tuple[PolicyIdCandidate, ...]:
    """Every string felix of any version may hash for this policy (§1.3), deduplicated.

    ``kind`` is the datastore kind (``NetworkPolicy``, ``GlobalNetworkPolicy``,
    ``KubernetesNetworkPolicy``, ...); ``stored_name`` the name as the datastore holds it
    (``metadata.name`` of the etcd value or CRD; a calicoctl listing shows the typed name,
    which the variants cover).  Staged kinds have no chains and give no candidates.
    """
    if kind in STAGED_KINDS:
        return ()
    tier = tier or DEFAULT_TIER
    out: dict[str, PolicyIdCandidate] = {}

    def add(policy_id: str, scheme: NamingScheme, exact: bool) -> None:
        previous = out.get(policy_id)
        if previous is None or (exact and not previous.exact):
            out[policy_id] = PolicyIdCandidate(policy_id, scheme, exact)

    if kind == "KubernetesNetworkPolicy" and not stored_name.startswith(KNP_STORED_PREFIX):
        # A KNP as Kubernetes holds it (KDD): felix ≤3.31 converts it to knp.default.<n>.
        as_calico = KNP_STORED_PREFIX + stored_name
        add(_join(namespace, as_calico), NamingScheme.V3_0, True)
        add(_join(DEFAULT_TIER, namespace, as_calico), NamingScheme.V3_29, True)
        add(_join("knp", namespace, stored_name), NamingScheme.V3_32, True)
        add(_join("np", namespace, as_calico), NamingScheme.V3_32, True)
        return tuple(out.values())

    short = kind_short(kind) or ("np" if namespace else "gnp")
    for name, exact in _name_variants(stored_name, tier):
        add(_join(namespace, name), NamingScheme.V3_0, exact)
        add(_join(tier, namespace, name), NamingScheme.V3_29, exact)
        add(_join(short, namespace, name), NamingScheme.V3_32, exact)
        if name.startswith(KNP_STORED_PREFIX) and len(name) > len(KNP_STORED_PREFIX):
            # v3.32 KDD: the same Kubernetes policy as kind KubernetesNetworkPolicy.
            add(_join("knp", namespace, name[len(KNP_STORED_PREFIX) :]), NamingScheme.V3_32, exact)
        for generated, tier_name in (
            (ADMIN_NETWORK_POLICY_PREFIX, "kube-admin"),
            (BASELINE_ADMIN_NETWORK_POLICY_PREFIX, "kube-baseline"),
        ):
            if name.startswith(generated) and len(name) > len(generated):
                # v3.32 renders (baseline) admin policies as kind kcnp in tier kube-admin/-baseline.
                add(_join("kcnp", name[len(generated) :]), NamingScheme.V3_32, False)
                add(_join(tier_name, name[len(generated) :]), NamingScheme.V3_29, False)
    return tuple(out.values())


def policy_chain_candidates(
    kind: str,
    namespace: str,
    stored_name: str,
    tier: str = DEFAULT_TIER,
    *,
    max_lens: Iterable[int] = (IPTABLES_MAX_CHAIN_NAME, NFT_MAX_CHAIN_NAME),
) -> tuple[ChainCandidate, ...]:
    """All ``cali-pi-``/``cali-po-`` chain names this policy may have, for every scheme and limit.

    With the default ``max_lens`` both iptables (28, hashed) and nftables (256, v3.30+,
    shown without the ``filter-`` layer prefix) names are produced.
    """
    out: dict[str, ChainCandidate] = {}
    for candidate in policy_id_candidates(kind, namespace, stored_name, tier):
        for max_len in max_lens:
            for prefix, direction in (
                (POLICY_INGRESS_PREFIX, "ingress"),
                (POLICY_EGRESS_PREFIX, "egress"),
            ):
                chain = length_limited_id(prefix, candidate.policy_id, max_len)
                previous = out.get(chain)
                if previous is None or (candidate.exact and not previous.exact):
                    out[chain] = ChainCandidate(chain, direction, candidate.scheme, candidate.exact)
    return tuple(out.values())


def profile_chain_names(
    profile: str, *, max_lens: Iterable[int] = (IPTABLES_MAX_CHAIN_NAME, NFT_MAX_CHAIN_NAME)
) -> tuple[str, ...]:
    """``cali-pri-``/``cali-pro-`` names of a profile (suffix = bare profile name in every version)."""
    return tuple(candidate.chain for candidate in profile_chain_candidates(profile, max_lens=max_lens))


def profile_chain_candidates(
    profile: str, *, max_lens: Iterable[int] = (IPTABLES_MAX_CHAIN_NAME, NFT_MAX_CHAIN_NAME)
) -> tuple[ChainCandidate, ...]:
    """Like :func:`profile_chain_names`, with the direction of each chain."""
    out: dict[str, ChainCandidate] = {}
    for max_len in max_lens:
        for prefix, direction in ((PROFILE_INGRESS_PREFIX, "ingress"), (PROFILE_EGRESS_PREFIX, "egress")):
            chain = length_limited_id(prefix, profile, max_len)
            out.setdefault(chain, ChainCandidate(chain, direction, None, True))
    return tuple(out.values())


def profile_names_for_workload(namespace: str, service_account: str = "") -> tuple[str, ...]:
    """Profiles Kubernetes pods get: ``kns.<ns>``, ``ksa.<ns>.<sa>``, and Calico v2's ``k8s_ns.<ns>``."""
    if not namespace:
        return ()
    names = [f"kns.{namespace}", f"k8s_ns.{namespace}"]
    if service_account:
        names.append(f"ksa.{namespace}.{service_account}")
    return tuple(names)


def veth_name(namespace: str, pod: str, prefix: str = "cali") -> str:
    """Calico's host-side interface name for a pod (``VethNameForWorkload``, §4.4)."""
    return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def workload_endpoint_name(node: str, pod: str, endpoint: str = "eth0", orchestrator: str = "k8s") -> str:
    """The WorkloadEndpoint name libcalico-go gives a pod (§4.3): each ``-`` doubled, joined by ``-``."""
    return "-".join(part.replace("-", "--") for part in (node, orchestrator, pod, endpoint))
