"""Mutual TLS and node identity with real processes on loopback and certificates made here.

One aggregator process (``--tls-client-ca``, ``--node-identity-template system:node:{node}``,
``--api-client-identities grafana``) with two genuine agent processes, each presenting
``system:node:<its node>``.  Then every kind of client that must not get in tries: it fails
the TLS handshake (no certificate, another CA, expired: such a client never reaches ingest,
so nothing is counted), or it is refused with PERMISSION_DENIED and counted in
``calico_accountant_ingest_rejected_total{reason="identity"}`` on the real ``/metrics`` (a
node's certificate reporting for another node, a consumer's certificate reporting at all).
Through all of it the genuine nodes' totals stay exact.  Every test measures the counter
before and after itself, so the tests pass in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.accounting import accept
from tests.support.pki import Authority, ClusterPki, Issued
from tests.support.processes import Processes, cli, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.streaming import (
    HitsReader,
    Node,
    counted,
    make_nodes,
    nonzero,
    raw_ingest,
    reporting,
    start_aggregator,
)
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

TEMPLATE = "system:node:{node}"


@dataclass
class Cluster:
    run: Processes
    pki: ClusterPki
    directory: Path
    nodes: list[Node]
    port: int
    metrics_port: int
    consumer: HitsReader
    """Reads as ``grafana``, the one listed API client."""
    factor: int = 1

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def node_certificate(self, node: str) -> Issued:
        return self.pki.ca.issue(TEMPLATE.format(node=node), name=f"agent-{node}")

    def rejected(self) -> float:
        text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]
        return metric_samples(text, "calico_accountant_ingest_rejected_total")[(("reason", "identity"),)]

    def advance(self) -> None:
        """The genuine nodes' counters grow; wait until the totals are exactly theirs."""
        self.factor += 1
        for node in self.nodes:
            node.write(self.factor)
        self.assert_exact()

    def assert_exact(self) -> None:
        expected = nonzero(counted(self.nodes, self.factor)[0])
        wait_until(lambda: nonzero(self.consumer.totals()[0]) == expected, what=f"totals x{self.factor}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("tls-identity")
    with processes(directory) as run:
        pki = ClusterPki(directory / "pki")
        grafana = pki.ca.issue("grafana")
        port, metrics_port = start_aggregator(
            run,
            *pki.server_flags(),
            "--node-identity-template",
            TEMPLATE,
            "--api-client-identities",
            "grafana",
            tls=pki.client_tls(grafana),
        )
        nodes = make_nodes(directory, [(10, 3), (14, 3)])
        consumer = HitsReader(f"127.0.0.1:{port}", pki.client_tls(grafana))
        cluster = Cluster(run, pki, directory, nodes, port, metrics_port, consumer)
        for node in nodes:
            flags = pki.client_flags(cluster.node_certificate(node.name))
            run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2", *flags)
        try:
            wait_until(reporting(consumer, len(nodes)), what="both agents' first snapshots (the baseline)")
            cluster.assert_exact()
            yield cluster
        finally:
            consumer.close()


def snapshot(node: str, sequence: int = 1, instance: str = "intruder") -> bytes:
    message = build_snapshot(
        node=node,
        agent_instance_id=instance,
        sequence=sequence,
        read_time=datetime.now(UTC),
        full=True,
        records=[accept("cali-intruder", "cali-pi-x", 10_000)],
    )
    return message.SerializeToString()


def test_node_agents_stream_exact_counts_over_mutual_tls(cluster: Cluster) -> None:
    before = cluster.rejected()
    cluster.advance()
    cluster.advance()
    nodes = cluster.consumer.nodes()
    assert set(nodes) == {"node-0", "node-1"} and all(n.connected for n in nodes.values())
    text = http_get(f"http://127.0.0.1:{cluster.metrics_port}/metrics")[1]
    drops = metric_samples(text, "calico_accountant_node_no_policy_drop_packets_total")
    expected = counted(cluster.nodes, cluster.factor)[0]
    for node in cluster.nodes:
        want = sum(v for (n, kind, _), v in expected.items() if n == node.name and kind == spb.NO_POLICY_DROP)
        assert sum(v for labels, v in drops.items() if ("node", node.name) in labels) == want
    assert cluster.rejected() == before  # genuine agents are never refused


@pytest.mark.parametrize("case", ["no certificate", "another CA", "expired"])
def test_a_client_without_a_valid_certificate_fails_the_handshake(cluster: Cluster, case: str) -> None:
    if case == "no certificate":
        credential = None
    elif case == "another CA":
        rogue = Authority(cluster.directory / "rogue", "rogue-ca")
        credential = rogue.issue(TEMPLATE.format(node="node-0"), name="rogue-node-0")
    else:
        credential = cluster.pki.ca.issue(
            TEMPLATE.format(node="node-0"),
            name="expired-node-0",
            not_before=datetime.now(UTC) - timedelta(days=2),
            not_after=datetime.now(UTC) - timedelta(hours=1),
        )
    before = cluster.rejected()
    error = raw_ingest(cluster.target, [snapshot("node-0", 10**6)], tls=cluster.pki.client_tls(credential))
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
    done = cli("nodes", "--server", cluster.target, "--timeout", "1", *cluster.pki.client_flags(credential))
    assert done.returncode == 1 and "TLS handshake" in done.stderr, done.stderr
    assert cluster.rejected() == before  # refused before any RPC: nothing reaches ingest
    cluster.advance()  # the genuine nodes' totals are exact, the intruder's counter absent


def test_a_node_certificate_cannot_report_for_another_node(cluster: Cluster) -> None:
    before = cluster.rejected()
    victim = cluster.consumer.nodes()["node-1"]
    # A real agent with node-0's certificate claiming node-1: refused at its first snapshot,
    # again at every reconnect.
    impostor, _ = cluster.run.agent(
        "node-1",
        cluster.port,
        [f"cat {cluster.nodes[1].path}"],
        "--interval",
        "0.2",
        *cluster.pki.client_flags(cluster.node_certificate("node-0")),
        name="impostor-node-1",
    )
    try:
        wait_until(lambda: cluster.rejected() >= before + 2, what="impostor refused twice")
        wait_until(lambda: "PERMISSION_DENIED" in impostor.output(), what="the impostor told")
        assert "may report only for node 'node-0', not 'node-1'" in impostor.output()
    finally:
        impostor.stop()
    # Taking over the victim's stream directly: a later sequence than the victim's.
    counted = cluster.rejected()
    error = raw_ingest(
        cluster.target,
        [snapshot("node-1", victim.sequence + 1000)],
        tls=cluster.pki.client_tls(cluster.node_certificate("node-0")),
    )
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert cluster.rejected() == counted + 1
    assert cluster.consumer.nodes()["node-1"].connected
    cluster.advance()  # the victim's totals are its own, and it keeps streaming


def test_a_consumer_certificate_cannot_ingest(cluster: Cluster) -> None:
    before = cluster.rejected()
    grafana = cluster.pki.ca.issue("grafana", name="grafana-ingest")
    consumer_agent, _ = cluster.run.agent(
        "grafana",
        cluster.port,
        [f"cat {cluster.nodes[0].path}"],
        "--interval",
        "0.2",
        *cluster.pki.client_flags(grafana),
        name="consumer-agent",
    )
    try:
        wait_until(lambda: cluster.rejected() >= before + 1, what="consumer agent refused")
        wait_until(lambda: "is not a node's identity" in consumer_agent.output(), what="the agent told")
    finally:
        consumer_agent.stop()
    counted = cluster.rejected()
    error = raw_ingest(cluster.target, [snapshot("node-0", 10**6)], tls=cluster.pki.client_tls(grafana))
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert cluster.rejected() == counted + 1
    assert set(cluster.consumer.nodes()) == {"node-0", "node-1"}
    cluster.advance()


def test_a_consumer_reads_hits_and_nodes_but_no_instance_ids(cluster: Cluster) -> None:
    cluster.advance()  # hits to observe
    grafana = cluster.pki.ca.issue("grafana", name="grafana-cli")
    combined = cluster.directory / "grafana-combined.pem"  # one file for both, as the kubelet's
    combined.write_bytes(grafana.cert.read_bytes() + grafana.key.read_bytes())
    flags = cluster.pki.client_flags(Issued(combined, combined, grafana.serial))
    listed = cli("nodes", "--server", cluster.target, "-o", "json", *flags)
    assert listed.returncode == 0, listed.stderr
    nodes = json.loads(listed.stdout)["nodes"]
    assert {n["node"] for n in nodes} == {"node-0", "node-1"}
    assert all(n["connected"] and "agent_instance_id" not in n for n in nodes)
    observed = cli("observe", "--server", cluster.target, "--since", "10m", "-o", "json", *flags)
    assert observed.returncode == 0, observed.stderr
    hits = [json.loads(line) for line in observed.stdout.splitlines()]
    assert hits and {hit["node"] for hit in hits} == {"node-0", "node-1"}
    assert all(hit["packets"] > 0 for hit in hits)


def test_api_client_identities_refuse_an_unlisted_consumer(cluster: Cluster) -> None:
    stranger = cluster.pki.ca.issue("prometheus-adapter")
    done = cli("nodes", "--server", cluster.target, *cluster.pki.client_flags(stranger))
    assert done.returncode == 1
    assert "refused this client" in done.stderr and "may not use the policy-hit API" in done.stderr
    agent_reader = HitsReader(cluster.target, cluster.pki.client_tls(cluster.node_certificate("node-0")))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            agent_reader.hits.ListNodes(hpb.ListNodesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        agent_reader.close()
