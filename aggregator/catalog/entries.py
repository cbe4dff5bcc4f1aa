"""What each datastore object contributes to a catalog, worked out once per object (pure).

A policy contributes every chain name any felix version could give it and the keys its
identity comment could carry; a workload endpoint its identity and profiles.  This is
the costly part of a catalog build (hashing every candidate), so a new catalog reuses
the entries of objects that did not change (:func:`reused_entry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.datastore.objects import CalicoObject
from aggregator.model import PolicyIdentity, PolicyKind, WorkloadIdentity
from calico_accountant.felix.naming import (
    ADMIN_NETWORK_POLICY_PREFIX,
    BASELINE_ADMIN_NETWORK_POLICY_PREFIX,
    DEFAULT_TIER,
    KNP_STORED_PREFIX,
    STAGED_KINDS,
    NamingScheme,
    policy_chain_candidates,
    policy_id_candidates,
    profile_names_for_workload,
)

__all__ = [
    "POLICY_KINDS",
    "PolicyEntry",
    "WorkloadEntry",
    "policy_entry",
    "reused_entry",
    "same_entries",
    "workload_entry",
]

POLICY_KINDS = frozenset(
    {
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "KubernetesNetworkPolicy",
        "AdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
        "ClusterNetworkPolicy",
        "KubernetesClusterNetworkPolicy",
    }
    | STAGED_KINDS
)
_APP_LABELS = ("app", "app.kubernetes.io/name")

# v3.32 comment kind words for each short kind (felix's ``PolicyID`` kinds).
_COMMENT_KINDS = {
    "np": ("NetworkPolicy",),
    "gnp": ("GlobalNetworkPolicy",),
    "knp": ("KubernetesNetworkPolicy",),
    "kcnp": ("KubernetesClusterNetworkPolicy", "ClusterNetworkPolicy"),
}


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    identity: PolicyIdentity
    chains: tuple[tuple[str, NamingScheme | None, bool], ...]
    comment_keys: tuple[tuple[tuple[str, str, str], bool], ...]


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    identity: WorkloadIdentity
    profiles: tuple[str, ...]


def reused_entry(reuse: Mapping[str, tuple[CalicoObject, Any]], obj: CalicoObject) -> Any:
    held = reuse.get(obj.key)
    if held is None:
        return None
    old, entry = held
    if old is obj:
        return entry
    if obj.revision and old.revision == obj.revision:
        return entry
    if not obj.revision and old.body == obj.body:
        return entry
    return None


def same_entries(old: Sequence[PolicyEntry], new: Sequence[PolicyEntry]) -> bool:
    """True when ``new`` holds exactly the entry objects of ``old`` (reused, so unchanged)."""
    return len(old) == len(new) and {id(e) for e in old} == {id(e) for e in new}


def workload_entry(obj: CalicoObject) -> WorkloadEntry:
    spec = obj.spec
    labels = {str(k): str(v) for k, v in obj.labels.items()}
    app = next((labels[label] for label in _APP_LABELS if labels.get(label)), "")
    networks = spec.get("ipNetworks") or ()
    ips = tuple(str(network).split("/", 1)[0] for network in networks)
    service_account = str(
        spec.get("serviceAccountName") or labels.get("projectcalico.org/serviceaccount") or ""
    )
    pod = str(spec.get("pod") or spec.get("workload") or obj.name)
    identity = WorkloadIdentity(
        node=str(spec.get("node", "")),
        interface=str(spec.get("interfaceName", "")),
        namespace=obj.namespace,
        pod=pod,
        app=app,
        ips=ips,
        service_account=service_account,
        labels=tuple(sorted(labels.items())),
    )
    profiles = tuple(str(p) for p in spec.get("profiles") or ())
    implied = profile_names_for_workload(obj.namespace, service_account)
    return WorkloadEntry(identity, tuple(dict.fromkeys(profiles + implied)))


def policy_entry(obj: CalicoObject, tiers: frozenset[str]) -> PolicyEntry:
    identity, naming_kind, naming_name = _policy_identity(obj, tiers)
    if obj.kind in STAGED_KINDS:
        return PolicyEntry(identity, (), ())
    chains = tuple(
        (c.chain, c.scheme, c.exact)
        for c in policy_chain_candidates(naming_kind, obj.namespace, naming_name, identity.tier)
    )
    comment_keys: dict[tuple[str, str, str], bool] = {}
    for candidate in policy_id_candidates(naming_kind, obj.namespace, naming_name, identity.tier):
        for key in _comment_keys(candidate.policy_id, candidate.scheme, obj.namespace):
            comment_keys[key] = comment_keys.get(key, False) or candidate.exact
    return PolicyEntry(identity, chains, tuple(comment_keys.items()))


def _comment_keys(policy_id: str, scheme: NamingScheme, namespace: str) -> list[tuple[str, str, str]]:
    """The (kind word, namespace, name) felix's identity comment would carry for a policy id."""
    if scheme is NamingScheme.V3_0:
        name = policy_id[len(namespace) + 1 :] if namespace else policy_id
        return [("Policy", namespace, name)]
    if scheme is NamingScheme.V3_32:
        short, _, rest = policy_id.partition("/")
        name = rest[len(namespace) + 1 :] if namespace else rest
        return [(kind, namespace, name) for kind in _COMMENT_KINDS.get(short, ())]
    return []


def _policy_identity(obj: CalicoObject, tiers: frozenset[str]) -> tuple[PolicyIdentity, str, str]:
    """The user-facing identity, plus the (kind, stored name) felix's naming starts from."""
    stored = obj.name
    spec_tier = obj.spec.get("tier")
    tier = spec_tier if isinstance(spec_tier, str) and spec_tier else ""
    kind = obj.kind
    naming_kind, naming_name = kind, stored
    if kind in ("KubernetesNetworkPolicy", "StagedKubernetesNetworkPolicy") or (
        kind == "NetworkPolicy" and stored.startswith(KNP_STORED_PREFIX)
    ):
        shown_kind = (
            PolicyKind.KUBERNETES_NETWORK_POLICY
            if kind != "StagedKubernetesNetworkPolicy"
            else PolicyKind.STAGED_KUBERNETES_NETWORK_POLICY
        )
        tier = tier or DEFAULT_TIER
        name = stored.removeprefix(KNP_STORED_PREFIX) or stored
    elif kind == "AdminNetworkPolicy" or stored.startswith(ADMIN_NETWORK_POLICY_PREFIX):
        shown_kind = PolicyKind.ADMIN_NETWORK_POLICY
        tier = tier or "adminnetworkpolicy"
        name = stored.removeprefix(ADMIN_NETWORK_POLICY_PREFIX) or stored
        naming_kind, naming_name = "GlobalNetworkPolicy", ADMIN_NETWORK_POLICY_PREFIX + name
    elif kind == "BaselineAdminNetworkPolicy" or stored.startswith(BASELINE_ADMIN_NETWORK_POLICY_PREFIX):
        shown_kind = PolicyKind.BASELINE_ADMIN_NETWORK_POLICY
        tier = tier or "baselineadminnetworkpolicy"
        name = stored.removeprefix(BASELINE_ADMIN_NETWORK_POLICY_PREFIX) or stored
        naming_kind, naming_name = "GlobalNetworkPolicy", BASELINE_ADMIN_NETWORK_POLICY_PREFIX + name
    elif kind in ("ClusterNetworkPolicy", "KubernetesClusterNetworkPolicy"):
        shown_kind = PolicyKind.CLUSTER_NETWORK_POLICY
        tier = tier or "kube-admin"
        name = stored
        naming_kind = "ClusterNetworkPolicy"
    else:
        shown_kind = PolicyKind(kind)
        if not tier:
            head, dot, _ = stored.partition(".")
            tier = head if dot and head in tiers else DEFAULT_TIER
        name = stored
        for prefix in (f"{tier}.", f"{DEFAULT_TIER}."):
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                break
    identity = PolicyIdentity(
        kind=shown_kind, namespace=obj.namespace, name=name, tier=tier, stored_name=stored
    )
    return identity, naming_kind, naming_name
