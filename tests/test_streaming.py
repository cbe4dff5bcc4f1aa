"""Agents -> aggregator -> consumers with real processes and real sockets on loopback.

Every agent is a ``calico-accountant agent`` process reading a dump through a real command
(``cat FILE``, or ``ip netns exec NS iptables-save`` in the kernel test); the aggregator is a
``calico-accountant aggregator`` process; consumers use the gRPC API.  Counters advance by
rewriting the dumps with every counter scaled (see :mod:`tests.support.dumps`), so what each
agent reads at version k is k times version 1, and the expected totals follow: a started
aggregator counts from the first snapshot it sees of each node (its baseline), so at
version k it has counted version k minus the version it first saw.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from calico_accountant.records import Direction
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.wire.snapshots import build_snapshot
from node_agent.parsing import parse_node
from tests.support.accounting import accept
from tests.support.dumps import scale_dump, with_counters
from tests.support.felix_render import render_restore, sized_model
from tests.support.processes import Processes, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.skips import requires_kernel
from tests.support.streaming import (
    KIND_TO_PB,
    HitsReader,
    Node,
    Sums,
    counted,
    hit_sums,
    make_nodes,
    nonzero,
    raw_ingest,
    reporting,
    start_aggregator,
    totals_reach,
)
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


@dataclass
class Watcher:
    """A Watch consumer on its own thread; ``delay`` seconds per message makes it slow."""

    target: str
    delay: float = 0.0
    hits: list[hpb.Hit] = field(default_factory=list)
    lost: int = 0
    error: str = ""

    def __post_init__(self) -> None:
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if self.delay:
            options.append(("grpc.http2.bdp_probe", 0))  # keep the receive window small
        self.channel = grpc.insecure_channel(self.target, options=options)
        stub = hpb_grpc.PolicyHitsStub(self.channel)  # type: ignore[no-untyped-call]
        self.stream = stub.Watch(hpb.WatchRequest(follow=True), wait_for_ready=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for batch in self.stream:
                self.hits.extend(batch.hits)
                self.lost += batch.lost
                if self.delay:
                    time.sleep(self.delay)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{error.code()}: {error.details()}"

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()
        self.thread.join(5)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def test_totals_and_hits_add_up_to_what_the_agents_read(run: Processes, tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, [(12, 3), (20, 4), (40, 6)])
    port, metrics_port = start_aggregator(run)
    target = f"127.0.0.1:{port}"
    client = HitsReader(target)
    watcher = Watcher(target)
    agent_ports = {}
    for node in nodes:
        extra = ["--interval", "0.2"]
        if node.name == "node-2":  # this one's full snapshot does not fit one message: chunks
            extra += ["--max-message-bytes", str(128 * 1024)]
        _, agent_ports[node.name] = run.agent(node.name, port, [f"cat {node.path}"], *extra)
    try:
        wait_until(reporting(client, 3))
        for factor in (2, 3):
            for node in nodes:
                node.write(factor)
            expected_packets, expected_bytes = counted(nodes, factor)
            wait_until(totals_reach(client, expected_packets), what=f"totals x{factor}")
        packets, octets = client.totals()
        assert nonzero(packets) == nonzero(expected_packets) and nonzero(octets) == nonzero(expected_bytes)

        # /metrics agrees, per node and direction for the drops, per node and verdict for policies
        _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        drops = metric_samples(text, "calico_accountant_node_no_policy_drop_packets_total")
        for node in nodes:
            for direction, code in (("ingress", 1), ("egress", 2)):
                want = expected_packets[(node.name, int(spb.NO_POLICY_DROP), code)]
                assert drops.get((("direction", direction), ("node", node.name)), 0) == want
        by_verdict: Counter[tuple[str, str]] = Counter()
        for labels, value in metric_samples(text, "calico_accountant_node_policy_packets_total").items():
            label = dict(labels)
            by_verdict[(label["node"], label["verdict"])] += int(value)
        for node in nodes:
            accepted = sum(
                v for (n, k, _), v in expected_packets.items() if n == node.name and k == spb.POLICY_ACCEPT
            )
            denied = sum(
                v for (n, k, _), v in expected_packets.items() if n == node.name and k == spb.POLICY_DENY
            )
            assert by_verdict[(node.name, "accept")] == accepted > 0
            assert by_verdict[(node.name, "deny")] == denied

        # Watch: the increases from version 1 to 3, exactly the totals
        want_packets = nonzero(expected_packets)
        want_bytes = nonzero(expected_bytes)
        wait_until(lambda: nonzero(hit_sums(watcher.hits)[0]) == want_packets, what="watch hits")
        assert nonzero(hit_sums(watcher.hits)[1]) == want_bytes
        assert watcher.lost == 0 and not watcher.error

        # the agents: healthy, ready, one full snapshot each, the big one chunked
        for node in nodes:
            assert http_get(f"http://127.0.0.1:{agent_ports[node.name]}/readyz")[0] == 200
            assert http_get(f"http://127.0.0.1:{agent_ports[node.name]}/healthz")[0] == 200
            agent_metrics = http_get(f"http://127.0.0.1:{agent_ports[node.name]}/metrics")[1]
            sent = metric_samples(agent_metrics, "calico_accountant_agent_snapshots_sent_total")
            assert sent[(("type", "full"),)] == 1
            messages = metric_samples(agent_metrics, "calico_accountant_agent_messages_sent_total")[()]
            if node.name == "node-2":
                assert messages > sum(sent.values())
            assert metric_samples(agent_metrics, "calico_accountant_agent_reconnects_total")[()] == 0
        statuses = client.nodes()
        assert all(s.connected and not s.stale for s in statuses.values())
    finally:
        watcher.close()
        client.close()


def test_agents_resend_in_full_after_the_aggregator_restarts(run: Processes, tmp_path: Path) -> None:
    """Without a checkpoint a restarted aggregator counts from zero again: the agents'
    first full snapshots after the restart are its baseline (never a lower non-zero value)."""
    nodes = make_nodes(tmp_path, [(10, 3), (15, 3)])
    port, metrics_port = start_aggregator(run)
    target = f"127.0.0.1:{port}"
    agent_ports = [run.agent(n.name, port, [f"cat {n.path}"], "--interval", "0.2")[1] for n in nodes]
    client = HitsReader(target)
    try:
        wait_until(reporting(client, len(nodes)), what="x1 seen")
        for node in nodes:
            node.write(2)
        wait_until(totals_reach(client, counted(nodes, 2)[0]), what="totals x2")
        old = run.started[0]
        assert old.stop() == 0, old.output()
        for node in nodes:
            node.write(3)  # counters move while the aggregator is away
        time.sleep(1.0)
        start_aggregator(run, grpc_port=port, metrics_port=metrics_port)
        wait_until(reporting(client, len(nodes)), what="x3 seen after the restart")
        assert nonzero(client.totals()[0]) == Counter()  # from zero, not from the raw values
        text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        assert all(
            v == 0 for v in metric_samples(text, "calico_accountant_node_policy_packets_total").values()
        )
        for node in nodes:
            node.write(4)
        third = counted(nodes, 4, baseline=3)
        wait_until(lambda: nonzero(client.totals()[0]) == nonzero(third[0]), what="totals x4")
        time.sleep(0.6)  # a few more reads: nothing is counted twice
        assert nonzero(client.totals()[0]) == nonzero(third[0])
        assert nonzero(client.totals()[1]) == nonzero(third[1])
        for agent_port in agent_ports:
            agent_metrics = http_get(f"http://127.0.0.1:{agent_port}/metrics")[1]
            assert metric_samples(agent_metrics, "calico_accountant_agent_reconnects_total")[()] >= 1
            assert (
                metric_samples(agent_metrics, "calico_accountant_agent_snapshots_sent_total")[
                    (("type", "full"),)
                ]
                >= 2
            )
            assert http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200
            # reads went on while the aggregator was away; only the newest was sent
            assert (
                metric_samples(agent_metrics, "calico_accountant_agent_snapshots_superseded_total")[()] >= 1
            )
    finally:
        client.close()


def test_an_agent_that_goes_away_keeps_its_counts_and_goes_stale(run: Processes, tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, [(8, 2), (8, 2)])
    port, metrics_port = start_aggregator(run, "--stale-after", "1.5")
    agents = [run.agent(n.name, port, [f"cat {n.path}"], "--interval", "0.2")[0] for n in nodes]
    client = HitsReader(f"127.0.0.1:{port}")
    try:
        wait_until(reporting(client, len(nodes)), what="x1 seen")
        for node in nodes:
            node.write(2)
        expected = counted(nodes, 2)[0]
        wait_until(totals_reach(client, expected), what="x2")
        assert agents[1].stop() == 0
        wait_until(lambda: not client.nodes()["node-1"].connected, what="node-1 disconnected")
        status = client.nodes()
        assert status["node-0"].connected and not status["node-0"].stale
        wait_until(lambda: client.nodes()["node-1"].stale, what="node-1 stale")
        assert nonzero(client.totals()[0]) == nonzero(expected)  # its counts stay in the sums
        text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        assert metric_samples(text, "calico_accountant_node_stale")[(("node", "node-1"),)] == 1
        assert metric_samples(text, "calico_accountant_node_stale")[(("node", "node-0"),)] == 0
        drops = metric_samples(text, "calico_accountant_node_no_policy_drop_packets_total")
        assert sum(v for k, v in drops.items() if ("node", "node-1") in k) == sum(
            v for (n, kind, _), v in expected.items() if n == "node-1" and kind == spb.NO_POLICY_DROP
        )
        server = client.status()
        assert (server.agents_connected, server.nodes_known) == (1, 2)
    finally:
        client.close()


def test_a_slow_consumer_loses_hits_while_ingest_and_a_fast_consumer_keep_up(
    run: Processes, tmp_path: Path
) -> None:
    nodes = make_nodes(tmp_path, [(40, 4), (40, 4)])
    port, metrics_port = start_aggregator(run, "--watch-buffer", "300")
    target = f"127.0.0.1:{port}"
    fast = Watcher(target)
    slow = Watcher(target, delay=0.5)
    for node in nodes:
        run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.1")
    client = HitsReader(target)
    try:
        wait_until(reporting(client, 2))
        factor = 1
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            factor += 1
            for node in nodes:
                node.write(factor)
            time.sleep(0.1)
        final, _ = counted(nodes, factor)
        wait_until(lambda: nonzero(client.totals()[0]) == nonzero(final), what="ingest kept up")
        want = nonzero(final)
        wait_until(lambda: nonzero(hit_sums(fast.hits)[0]) == want, what="fast consumer complete")
        assert fast.lost == 0 and not fast.error
        wait_until(lambda: slow.lost > 0, timeout=30, what="slow consumer told of lost hits")
        assert sum(hit_sums(slow.hits)[0].values()) < sum(want.values())
        _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metric_samples(text, "calico_accountant_hits_lost_total")[()] >= slow.lost
    finally:
        fast.close()
        slow.close()
        client.close()


def test_malformed_and_oversized_messages_get_errors_and_the_server_keeps_serving(
    run: Processes, tmp_path: Path
) -> None:
    (node,) = make_nodes(tmp_path, [(10, 3)])
    port, _ = start_aggregator(run, "--max-message-bytes", str(1 << 20))
    target = f"127.0.0.1:{port}"
    run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2")
    client = HitsReader(target)
    try:
        wait_until(lambda: node.name in client.nodes(), what="agent applied")

        def snapshot(**fields: object) -> bytes:
            message = build_snapshot(
                node="intruder",
                agent_instance_id="x",
                sequence=1,
                read_time=datetime.now(UTC),
                full=True,
                records=[accept(f"cali{i}", "cali-pi-x", i, ids=("h" * 40,)) for i in range(15000)]
                if fields.pop("big", False)
                else [accept("cali1", "cali-pi-x", 1)],
            )
            for name, value in fields.items():
                setattr(message, name, value)
            return message.SerializeToString()

        oversized = snapshot(big=True)
        assert len(oversized) > 1 << 20
        error = raw_ingest(target, [oversized])
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = raw_ingest(target, [snapshot(node="")])
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        error = raw_ingest(target, [snapshot(chunk_count=3, chunk_index=2)])
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "starts at chunk 2" in (error.details() or "")
        error = raw_ingest(target, [b"\xff\xff\xff\xff not a protobuf"])
        assert error is not None and error.code() != grpc.StatusCode.OK
        with pytest.raises(grpc.RpcError) as bad_filter:
            client.hits.Snapshot(hpb.SnapshotRequest(filter=hpb.HitFilter(verdict=["maybe"])), timeout=5)
        assert bad_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # still serving: the real agent's next counters arrive, the intruder never applied
        node.write(5)
        wait_until(
            lambda: nonzero(client.totals()[0]) == nonzero(counted([node], 5)[0]), what="agent still served"
        )
        assert set(client.nodes()) == {node.name}
    finally:
        client.close()


@pytest.mark.kernel
@requires_kernel("ip", "iptables-nft-restore", "iptables-nft-save")
def test_an_agent_reading_a_namespaces_real_iptables(run: Processes, tmp_path: Path) -> None:
    from calico_accountant_cli.lab.iptables import Backend, restore
    from calico_accountant_cli.lab.netns import LabNetwork

    table = render_restore(sized_model(8, 3, seed=11))
    with LabNetwork() as lab:
        namespace = lab.namespace("agent")
        restore(namespace, scale_dump(table.text, 1), family=4, backend=Backend.NFT)
        port, _ = start_aggregator(run)
        command = f"ip netns exec {namespace} iptables-nft-save -c -t filter"
        run.agent("kernel-node", port, [command], "--interval", "0.2")
        client = HitsReader(f"127.0.0.1:{port}")

        def read_kernel() -> Sums:
            """What the agent sees, read the same way."""
            saved = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True).stdout
            got: Sums = Counter()
            for record in parse_node([("kernel", saved)]).records:
                got[
                    (
                        "kernel-node",
                        int(KIND_TO_PB[record.key.kind]),
                        1 if record.key.direction is Direction.INGRESS else 2,
                    )
                ] += record.packets
            return got

        try:
            baseline = read_kernel()
            assert sum(baseline.values()) > 0
            wait_until(reporting(client, 1), what="the agent's first read (the baseline)")
            restore(namespace, scale_dump(table.text, 4), family=4, backend=Backend.NFT)
            expected = read_kernel() - baseline
            assert sum(expected.values()) == 3 * sum(baseline.values())
            wait_until(totals_reach(client, expected), what="kernel x4")
            nodes = client.nodes()
            assert nodes["kernel-node"].connected
        finally:
            client.close()
            run.stop_all()  # the agent leaves the namespace before the lab deletes it


def test_names_are_resolved_from_a_file_datastore(run: Processes, tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parent.parent / "calico_accountant_cli" / "sample"
    nodes = []
    for name in ("node-a", "node-b"):
        node = Node(
            name, tmp_path / f"{name}.save", with_counters((sample / f"{name}.v3.30.save").read_text())
        )
        node.write(1)
        nodes.append(node)
    port, _ = start_aggregator(run, "--datastore", f"file:{sample / 'cluster.yaml'}")
    target = f"127.0.0.1:{port}"
    watcher = Watcher(target)
    for node in nodes:
        run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2")
    client = HitsReader(target)
    try:
        wait_until(reporting(client, len(nodes)), what="x1")
        for node in nodes:
            node.write(2)
        wait_until(totals_reach(client, counted(nodes, 2)[0]), what="x2")
        want = nonzero(counted(nodes, 2)[0])
        wait_until(lambda: nonzero(hit_sums(watcher.hits)[0]) == want, what="hits")
        api = [h for h in watcher.hits if h.interface == "cali342b815918c"]
        assert api and {(h.node, h.namespace, h.pod, h.app) for h in api} == {
            ("node-a", "payments", "payments-api-7b8c9d6f5-h3j4k", "payments-api")
        }
        policies = {(h.policy.kind, h.policy.namespace, h.policy.name) for h in api if h.HasField("policy")}
        assert ("NetworkPolicy", "payments", "deny-frontend-to-payments-api") in policies
        assert all(kind != "Unresolved" for kind, _, _ in policies)
        only = client.hits.Snapshot(
            hpb.SnapshotRequest(filter=hpb.HitFilter(pod=["payments/ledger-db-0"], direction=["ingress"])),
            timeout=5,
        )
        assert only.totals and {(h.node, h.pod) for h in only.totals} == {("node-b", "ledger-db-0")}
    finally:
        watcher.close()
        client.close()
