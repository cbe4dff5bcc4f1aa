"""``observe``, ``top`` and ``nodes`` as a user runs them: real processes against a real
aggregator fed by a real agent, plus the friendly errors."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant_cli.hits_client import ClientError, build_filter, parse_duration
from node_agent.parsing import parse_node
from tests.support.dumps import scale_dump, write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import REPO, Processes, cli, processes
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(self, run: Processes, directory: Path) -> None:
        self.table = render(sized_model(10, 3, seed=5))
        self.dump = directory / "node-a.save"
        write_atomic(self.dump, scale_dump(self.table.text, 1))
        self.port, self.metrics_port = free_port(), free_port()
        run.aggregator(self.port, self.metrics_port)
        run.agent("node-a", self.port, [f"cat {self.dump}"], "--interval", "0.2")
        self.server = f"127.0.0.1:{self.port}"
        channel = grpc.insecure_channel(self.server)
        self.stub = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
        self.channel = channel
        wait_until(self.reporting, what="first snapshot applied (the aggregator's baseline)")

    def reporting(self) -> bool:
        nodes = self.stub.ListNodes(hpb.ListNodesRequest(), timeout=5, wait_for_ready=True).nodes
        return any(node.node == "node-a" and node.sequence >= 1 for node in nodes)

    def read_total(self, factor: int) -> int:
        return sum(r.packets for r in parse_node([("a", scale_dump(self.table.text, factor))]).records)

    def total(self) -> int:
        response = self.stub.Snapshot(hpb.SnapshotRequest(), timeout=5, wait_for_ready=True)
        return sum(h.packets for h in response.totals)

    def advance(self, factor: int) -> None:
        write_atomic(self.dump, scale_dump(self.table.text, factor))
        # counted from the first snapshot the aggregator saw (x1)
        counted = self.read_total(factor) - self.read_total(1)
        wait_until(lambda: self.total() == counted, what=f"x{factor} applied")


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    """An aggregator and an agent whose counters are at x2 (one advance kept as hits)."""
    with processes(directory) as run:
        cluster = Cluster(run, directory)
        cluster.advance(2)
        yield cluster
        cluster.channel.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Shared by the tests that only read: it stays at x2, whatever order they run in."""
    with running_cluster(tmp_path_factory.mktemp("cli")) as shared:
        yield shared


@pytest.fixture
def advancing_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A test's own cluster, for a test that advances the counters."""
    with running_cluster(tmp_path) as own:
        yield own


def test_observe_json_replays_the_kept_hits(cluster: Cluster) -> None:
    done = cli("observe", "--server", cluster.server, "--since", "10m", "--all", "-o", "json")
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert hits and all(h["node"] == "node-a" for h in hits)
    assert sum(h["packets"] for h in hits) == cluster.read_total(2) - cluster.read_total(1)
    assert {h["verdict"] for h in hits} <= {"accept", "deny", "pass", "log"}
    assert all(h["time"].endswith("Z") and h["direction"] in ("ingress", "egress") for h in hits)


def test_observe_prints_the_last_twenty_hits_or_what_it_is_asked_for(cluster: Cluster) -> None:
    everything = [
        json.loads(line)
        for line in cli("observe", "--server", cluster.server, "--all", "-o", "json").stdout.splitlines()
    ]
    assert len(everything) > 20  # the sample cluster's one advance makes more hits than that
    default = cli("observe", "--server", cluster.server, "-o", "json")
    assert [json.loads(line) for line in default.stdout.splitlines()] == everything[-20:]
    first = cli("observe", "--server", cluster.server, "--first", "3", "-o", "json")
    assert [json.loads(line) for line in first.stdout.splitlines()] == everything[:3]
    table = cli("observe", "--server", cluster.server, "--last", "5", "--utc").stdout.splitlines()
    assert table[0].split()[:3] == ["TIME", "NODE", "WORKLOAD"] and len(table) == 6
    assert len({len(line) for line in table}) == 1  # ASCII names: aligned lines are equally long
    rules = [h for h in everything if h["kind"] == "policy_rule"]
    assert rules and all(h["rule"]["action"] in ("allow", "deny", "pass", "log") for h in rules)
    compact = cli("observe", "--server", cluster.server, "--last", "2", "-o", "compact", "--color", "always")
    lines = compact.stdout.splitlines()
    assert len(lines) == 2 and all("[node-a]" in line and "\x1b[" in line for line in lines)
    never = cli("observe", "--server", cluster.server, "--last", "2", "-o", "compact", "--color", "never")
    assert "\x1b" not in never.stdout and never.stdout.count("packets") == 2


def test_observe_not_excludes_on_the_server(cluster: Cluster) -> None:
    done = cli("observe", "--server", cluster.server, "--all", "--not", "--verdict", "accept", "-o", "json")
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert hits and all(h["verdict"] != "accept" for h in hits)
    trailing = cli("observe", "--server", cluster.server, "--not")
    assert trailing.returncode == 2 and "--not must be followed by a filter" in trailing.stderr
    future = cli("observe", "--server", cluster.server, "--since", "2099-01-01T00:00:00Z", "-o", "json")
    assert future.returncode == 0 and future.stdout == ""


def test_observe_filters_on_the_server(cluster: Cluster) -> None:
    done = cli(
        "observe", "--server", cluster.server, "--verdict", "deny", "--direction", "egress", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert hits and all(h["verdict"] == "deny" and h["direction"] == "egress" for h in hits)
    none = cli("observe", "--server", cluster.server, "--node", "no-such-node", "-o", "json")
    assert none.returncode == 0 and none.stdout == ""


def test_observe_jsonpb_prints_protobuf_json(cluster: Cluster) -> None:
    done = cli("observe", "--server", cluster.server, "-o", "jsonpb", "--min-packets", "1")
    assert done.returncode == 0, done.stderr
    batches = [json.loads(line) for line in done.stdout.splitlines()]
    hits = [h for b in batches for h in b.get("hits", [])]
    assert hits and all(int(h["packets"]) >= 1 for h in hits)
    assert {"node", "kind", "direction", "time"} <= set(hits[0])


def test_observe_follow_prints_new_hits_as_they_arrive(advancing_cluster: Cluster) -> None:
    cluster = advancing_cluster
    process = subprocess.Popen(
        [sys.executable, "-m", "calico_accountant_cli", "observe", "--server", cluster.server, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        header = process.stdout.readline()
        assert header.split()[:3] == ["TIME", "NODE", "WORKLOAD"]
        time.sleep(0.5)
        cluster.advance(3)
        widened = process.stdout.readline()  # the first rows widen the columns: header again
        assert widened.split()[:3] == ["TIME", "NODE", "WORKLOAD"] and len(widened) > len(header)
        row = process.stdout.readline()
        assert "node-a" in row and row.split()[-1].isdigit()
        assert row.index("node-a") == widened.index("NODE")
    finally:
        process.terminate()
        process.wait(10)


def test_nodes_lists_the_agent(cluster: Cluster) -> None:
    done = cli("nodes", "--server", cluster.server)
    assert done.returncode == 0, done.stderr
    assert "1 of 1 agents connected" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("node-a"))
    assert "connected" in row and "ago" in row
    # which dataplane the agent read its tables from (a rendered iptables-nft-save file here)
    assert "DATAPLANE" in done.stdout and row.split()[-2] == "iptables-nft"
    as_json = json.loads(cli("nodes", "--server", cluster.server, "-o", "json").stdout)
    assert as_json["server"]["api_version"] == 1
    assert [n["node"] for n in as_json["nodes"]] == ["node-a"]


def test_top_shows_the_denying_workloads(advancing_cluster: Cluster) -> None:
    cluster = advancing_cluster
    cluster.advance(4)
    done = cli("top", "--server", cluster.server, "--iterations", "1", "--interval", "0.5", "--window", "60")
    assert done.returncode == 0, done.stderr
    assert "WORKLOAD" in done.stdout and "POLICY" in done.stdout
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKLOAD"))
    rows = lines[start + 1 : lines.index("", start)]
    rates = [float(row.split()[-2]) for row in rows]
    # unresolved (no datastore): the workload is its interface, on node-a; per-rule counters
    # (which repeat the per-workload ones) are not in the table
    assert rows and all(row.split()[1] == "node-a" and "all workloads" not in row for row in rows)
    assert rates and max(rates) > 0


def test_friendly_errors() -> None:
    unreachable = cli("observe", "--server", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert unreachable.returncode == 1
    assert "cannot reach the aggregator" in unreachable.stderr and "Traceback" not in unreachable.stderr
    bad = cli("observe", "--server", "127.0.0.1:1", "--verdict", "maybe")
    assert bad.returncode == 2 and "invalid choice: 'maybe'" in bad.stderr  # argparse's usage error
    since = cli("observe", "--server", "127.0.0.1:1", "--since", "five minutes")
    assert since.returncode == 1 and "bad time 'five minutes'" in since.stderr
    loud = cli("observe", "--server", "127.0.0.1:1", "--color", "loud")
    assert loud.returncode == 2 and "invalid choice: 'loud'" in loud.stderr
    address = cli("nodes", "--server", "not an address")
    assert address.returncode == 1 and "bad server address" in address.stderr


class FutureServer(hpb_grpc.PolicyHitsServicer):
    """A server from the future: api_version 2."""

    def ServerStatus(self, request: hpb.ServerStatusRequest, context: object) -> hpb.ServerStatusResponse:
        return hpb.ServerStatusResponse(api_version=2, version="9.0.0")


class EarlierServer(hpb_grpc.PolicyHitsServicer):
    """A v1 server from before the replay options: it lists no features and would
    ignore first/last/since_time/until/exclude."""

    def ServerStatus(self, request: hpb.ServerStatusRequest, context: object) -> hpb.ServerStatusResponse:
        return hpb.ServerStatusResponse(api_version=1, version="0.0.9")

    def Watch(self, request: hpb.WatchRequest, context: object) -> Iterator[hpb.HitBatch]:
        hit = hpb.Hit(node="old-node", verdict="deny", packets=1)
        hit.time.GetCurrentTime()
        yield hpb.HitBatch(hits=[hit])


def test_an_earlier_server_is_not_asked_what_it_would_ignore() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    hpb_grpc.add_PolicyHitsServicer_to_server(EarlierServer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        target = f"127.0.0.1:{port}"
        plain = cli("observe", "--server", target)
        assert plain.returncode == 1 and "0.0.9) does not support --last" in plain.stderr
        negated = cli("observe", "--server", target, "--all", "--not", "--node", "x")
        assert negated.returncode == 1 and "does not support --not" in negated.stderr
        everything = cli("observe", "--server", target, "--all", "-o", "json")
        assert everything.returncode == 0 and json.loads(everything.stdout)["node"] == "old-node"
    finally:
        server.stop(0)


@pytest.mark.parametrize("servicer", [FutureServer(), None])
def test_incompatible_servers_are_named(servicer: hpb_grpc.PolicyHitsServicer | None) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    if servicer is not None:
        hpb_grpc.add_PolicyHitsServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done = cli("nodes", "--server", f"127.0.0.1:{port}", "--timeout", "5")
        assert done.returncode == 1
        if servicer is not None:
            assert "speaks policy-hit API version 2" in done.stderr and "9.0.0" in done.stderr
        else:
            assert "does not offer the calico_accountant.v1 policy-hit API" in done.stderr
    finally:
        server.stop(0)


def test_durations_and_filters() -> None:
    assert parse_duration("5m").total_seconds() == 300
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("250ms").total_seconds() == 0.25
    assert parse_duration("42").total_seconds() == 42
    for bad in ("", "5 m", "m5", "1x"):
        with pytest.raises(ClientError):
            parse_duration(bad)
    built = build_filter(verdicts=["DENY"], directions=["Ingress"], pods=["shop/web"])
    assert list(built.verdict) == ["deny"] and list(built.direction) == ["ingress"]
    with pytest.raises(ClientError, match="direction"):
        build_filter(directions=["up"])
    with pytest.raises(ClientError, match="min-packets"):
        build_filter(min_packets=-1)
