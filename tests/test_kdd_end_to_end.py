"""End to end on the Kubernetes API datastore: a real aggregator process on ``--datastore
kubernetes`` (a kubeconfig pointing at the stand-in API server, which is NOT a kube-apiserver:
see :mod:`tests.support.kube_api`) with real agent processes reading the sample nodes' dumps
through ``cat``.  Pods, policies and profiles resolve from Pods, NetworkPolicies, Namespaces,
ServiceAccounts and Calico CRDs, and follow a change made in the API while the agents stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant_cli.demo.cluster import load_sample_cluster
from tests.support.dumps import with_counters
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import kdd_cluster, pod
from tests.support.processes import Processes, processes
from tests.support.streaming import HitsReader, Node, counted, reporting, start_aggregator, totals_reach
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parent.parent / "calico_accountant_cli" / "sample"
PAYMENTS_API = "cali342b815918c"  # payments/payments-api-7b8c9d6f5-h3j4k on node-a


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def totals_of(client: HitsReader, interface: str) -> list[hpb.Hit]:
    response = client.hits.Snapshot(hpb.SnapshotRequest(), timeout=10)
    return [hit for hit in response.totals if hit.interface == interface]


def test_agents_and_an_aggregator_on_the_kubernetes_datastore(run: Processes, tmp_path: Path) -> None:
    cluster = load_sample_cluster()
    with KubeApiServer(tmp_path / "api") as api:
        api.put(*kdd_cluster(cluster))
        nodes = []
        for name in ("node-a", "node-b"):
            text = with_counters((SAMPLE / f"{name}.v3.30.save").read_text())
            node = Node(name, tmp_path / f"{name}.save", text)
            node.write(1)
            nodes.append(node)
        port, _ = start_aggregator(
            run, "--datastore", "kubernetes", "--kubeconfig", str(api.write_kubeconfig())
        )
        for node in nodes:
            run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2")
        client = HitsReader(f"127.0.0.1:{port}")
        try:
            wait_until(reporting(client, len(nodes)), what="both nodes reporting")
            for node in nodes:
                node.write(2)
            wait_until(totals_reach(client, counted(nodes, 2)[0]), what="x2")

            api_hits = totals_of(client, PAYMENTS_API)
            assert {(h.node, h.namespace, h.pod, h.app) for h in api_hits} == {
                ("node-a", "payments", "payments-api-7b8c9d6f5-h3j4k", "payments-api")
            }
            policies = {
                (h.policy.kind, h.policy.namespace, h.policy.name) for h in api_hits if h.HasField("policy")
            }
            assert ("NetworkPolicy", "payments", "deny-frontend-to-payments-api") in policies
            assert all(kind != "Unresolved" for kind, _, _ in policies)
            everything = client.hits.Snapshot(hpb.SnapshotRequest(), timeout=10).totals
            assert all(h.pod and h.namespace for h in everything if h.interface)  # every interface is a pod
            kinds = {h.policy.kind for h in everything if h.HasField("policy")}
            assert {"KubernetesNetworkPolicy", "GlobalNetworkPolicy", "NetworkPolicy"} <= kinds
            assert {h.profile for h in everything if h.profile} >= {"kns.monitoring"}

            # The pod is relabelled in the API: the aggregator's names follow.
            workload = cluster.workload("payments-api-7b8c9d6f5-h3j4k")
            labels = {k: v for k, v in workload.labels if not k.startswith("projectcalico.org/")}
            labels["app"] = "payments-v2"
            api.put(
                pod(
                    "payments",
                    workload.pod,
                    workload.node,
                    workload.ipv4,
                    labels,
                    service_account="payments-api",
                )
            )
            wait_until(
                lambda: {h.app for h in totals_of(client, PAYMENTS_API)} == {"payments-v2"},
                what="the new label",
            )
        finally:
            client.close()
            run.stop_all()
