"""The simulated cluster of the scale benchmarks (``levels_bench``, ``load_bench``).

A node is 110 pods x 10 policies, both directions, an accept and a deny counter per pod,
policy and direction plus a no-policy drop per pod and direction (4,620 counters).  The
cluster grows the way real ones do: an application is ~10 replicas spread over nodes (so
``nodes x 11`` apps in 50 namespaces), and its pods share its 10 policies, drawn from a
cluster-wide pool of ``nodes x 2`` policies.
"""

from __future__ import annotations

from dataclasses import dataclass

from calico_accountant.records import CounterRecord, Direction
from tests.support.accounting import FakeCatalog, accept, deny, no_policy_drop

__all__ = ["NAMESPACES", "PODS", "POLICIES", "REPLICAS", "Shape"]

PODS, POLICIES, REPLICAS, NAMESPACES = 110, 10, 10, 50


@dataclass(frozen=True)
class Shape:
    nodes: int

    @property
    def apps(self) -> int:
        return max(1, self.nodes * PODS // REPLICAS)

    def app_of(self, node: int, pod: int) -> int:
        """Pod ``pod`` of each of ``REPLICAS`` consecutive nodes: an app's replicas on
        different nodes, as the scheduler's default spread puts them (all on one node would
        make a node's counters share app series, and routes, a real node's do not)."""
        return (pod * self.nodes + node) // REPLICAS

    def policies_of(self, app: int) -> list[int]:
        pool = max(POLICIES, 2 * self.nodes)
        return [(app * 7 + k * 13) % pool for k in range(POLICIES)]


def catalog(shape: Shape) -> FakeCatalog:
    """Every pod and policy of the cluster, for resolution."""
    catalog = FakeCatalog()
    for node in range(shape.nodes):
        for pod in range(PODS):
            app = shape.app_of(node, pod)
            catalog.add_pod(
                f"node-{node}", f"cali{pod:011x}", f"ns{app % NAMESPACES}", f"pod-{node}-{pod}", f"app{app}"
            )
    for policy in range(max(POLICIES, 2 * shape.nodes)):
        for prefix in ("cali-pi-", "cali-po-"):
            catalog.add_policy(f"{prefix}_p{policy:05d}", f"policy-{policy}", f"ns{policy % NAMESPACES}")
    return catalog


def node_records(shape: Shape, node: int, bump: int) -> list[CounterRecord]:
    records = []
    for pod in range(PODS):
        iface = f"cali{pod:011x}"
        for direction in (Direction.INGRESS, Direction.EGRESS):
            prefix = "cali-pi-" if direction is Direction.INGRESS else "cali-po-"
            for policy in shape.policies_of(shape.app_of(node, pod)):
                chain = f"{prefix}_p{policy:05d}"
                records.append(accept(iface, chain, 3 + bump, direction=direction, ids=(f"a{policy}",)))
                records.append(deny(iface, chain, 1 + bump, direction=direction, ids=(f"d{policy}",)))
            records.append(no_policy_drop(iface, 2 + bump, direction=direction))
    return records
