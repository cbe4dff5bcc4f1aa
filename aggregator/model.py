"""Resolved identities: what the datastore says a raw interface or chain name is.

Produced by :mod:`aggregator.catalog` (pure resolution), consumed by the ledger, the
metric families and the hit API.  Plain frozen dataclasses so they can be dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyIdentity:
    """A policy as users see it.

    ``kind`` is ``NetworkPolicy``, ``GlobalNetworkPolicy``, ``KubernetesNetworkPolicy``,
    ``AdminNetworkPolicy``, ``BaselineAdminNetworkPolicy``, ``ClusterNetworkPolicy``, or
    ``PolicyGroup`` for a v3.28+ group chain (then ``name`` is the members' names joined
    by ``+``), or ``Unresolved`` (then ``name`` is the raw chain name).
    ``namespace`` is empty for global kinds.  ``name`` has storage prefixes stripped
    (``default.``, ``knp.default.``, ``<tier>.``); ``stored_name`` is the datastore name.
    """

    kind: str
    namespace: str
    name: str
    tier: str
    stored_name: str = ""


@dataclass(frozen=True, slots=True)
class PolicyGroup:
    """A v3.28+ policy-group chain and its member policies in order."""

    chain: str
    policies: tuple[PolicyIdentity, ...]

    def as_identity(self, tier: str) -> PolicyIdentity:
        """The single identity a group's per-workload series are exported under."""
        return PolicyIdentity(
            kind="PolicyGroup",
            namespace=_common_namespace(self.policies),
            name="+".join(p.name for p in self.policies),
            tier=tier,
            stored_name=self.chain,
        )


def _common_namespace(policies: tuple[PolicyIdentity, ...]) -> str:
    namespaces = {p.namespace for p in policies}
    return namespaces.pop() if len(namespaces) == 1 else ""


@dataclass(frozen=True, slots=True)
class WorkloadIdentity:
    """The pod behind one interface on one node.  Unresolved interfaces get
    ``namespace=""``, ``pod=<interface>`` and ``resolved=False``."""

    node: str
    interface: str
    namespace: str
    pod: str
    app: str
    ips: tuple[str, ...] = ()
    service_account: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    resolved: bool = True


@dataclass(frozen=True, slots=True)
class ProfileIdentity:
    """A profile chain resolved to its profile name (``kns.<ns>``, ``ksa.<ns>.<sa>``), or
    the raw chain name with ``resolved=False``."""

    name: str
    resolved: bool = True
