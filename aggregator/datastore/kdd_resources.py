"""The Kubernetes resource types the KDD datastore lists and watches, and how their objects are keyed.

One :class:`KubeResource` per collection read for the whole cluster: where it is served
(``/api/v1/pods``, ``/apis/<group>/<version>/<plural>``), whether a 404 just means "not installed
here" (CRDs, alpha APIs), the field selector that keeps the server from sending what never
derives anything, and the prefix of the cache keys of the objects derived from it (a re-listed
type finds what it held).  ``deploy/overlays/kubernetes/rbac.yaml`` grants exactly these (a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KUBE_RESOURCES", "POLICY_API_GROUP", "KubeResource", "resource_of"]


@dataclass(frozen=True, slots=True)
class KubeResource:
    """One Kubernetes resource type the aggregator lists and watches for the whole cluster."""

    group: str
    """API group, ``""`` for the core group."""
    version: str
    plural: str
    kind: str
    namespaced: bool
    field_selector: str = ""
    optional: bool = False
    """May not be served (a CRD not installed, an API not enabled): a 404 means none of it."""

    @property
    def name(self) -> str:
        """``pods``, ``networkpolicies.networking.k8s.io``: kubectl's and RBAC's spelling."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """The cluster-wide collection: ``/api/v1/pods``, ``/apis/<group>/<version>/<plural>``."""
        if self.group:
            return f"/apis/{self.group}/{self.version}/{self.plural}"
        return f"/api/{self.version}/{self.plural}"

    @property
    def key_prefix(self) -> str:
        """Every cache key of objects derived from this type starts with it."""
        return f"kubernetes:{self.name}/"

    def key(self, namespace: str, name: str) -> str:
        return f"{self.key_prefix}{namespace}/{name}" if self.namespaced else f"{self.key_prefix}{name}"


_CRD = "crd.projectcalico.org"
POLICY_API_GROUP = "policy.networking.k8s.io"
KUBE_RESOURCES: tuple[KubeResource, ...] = (
    # Finished pods own no IPs and never get an endpoint: the API server filters them out.
    KubeResource(
        "", "v1", "pods", "Pod", True, field_selector="status.phase!=Succeeded,status.phase!=Failed"
    ),
    KubeResource("", "v1", "namespaces", "Namespace", False),
    KubeResource("", "v1", "serviceaccounts", "ServiceAccount", True),
    KubeResource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    KubeResource(_CRD, "v1", "networkpolicies", "NetworkPolicy", True, optional=True),
    KubeResource(_CRD, "v1", "globalnetworkpolicies", "GlobalNetworkPolicy", False, optional=True),
    KubeResource(_CRD, "v1", "tiers", "Tier", False, optional=True),
    KubeResource(_CRD, "v1", "hostendpoints", "HostEndpoint", False, optional=True),
    KubeResource(_CRD, "v1", "stagednetworkpolicies", "StagedNetworkPolicy", True, optional=True),
    KubeResource(
        _CRD, "v1", "stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy", False, optional=True
    ),
    KubeResource(
        _CRD, "v1", "stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy", True, optional=True
    ),
    KubeResource(
        POLICY_API_GROUP, "v1alpha1", "adminnetworkpolicies", "AdminNetworkPolicy", False, optional=True
    ),
    KubeResource(
        POLICY_API_GROUP,
        "v1alpha1",
        "baselineadminnetworkpolicies",
        "BaselineAdminNetworkPolicy",
        False,
        optional=True,
    ),
    KubeResource(
        POLICY_API_GROUP, "v1alpha2", "clusternetworkpolicies", "ClusterNetworkPolicy", False, optional=True
    ),
)
"""Everything the catalog needs, and nothing more (the ClusterRole in ``deploy/overlays/kubernetes`` grants
get/list/watch on exactly these)."""

_BY_GROUP_KIND = {(r.group, r.kind): r for r in KUBE_RESOURCES}


def resource_of(document: Mapping[str, Any]) -> KubeResource | None:
    """The type of a document by its ``apiVersion`` group and ``kind`` (any version); None for
    anything else (``projectcalico.org/v3`` objects, Deployments, ...)."""
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return _BY_GROUP_KIND.get((api_version.rpartition("/")[0], kind))
