"""Host endpoints through the real processes: two ``calico-accountant agent`` processes (one
reading an ``iptables-save`` dump, one an ``nft -j`` listing, both through ``cat``) stream to a
``calico-accountant aggregator`` process that reads HostEndpoints and policies from a
``file:`` datastore; its ``/metrics`` must show every host endpoint counter under the
HostEndpoint's name, exactly what the agents' tables moved, and the workload families none.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from calico_accountant.felix.endpoints import ALL_INTERFACES
from calico_accountant.records import EndpointKind, Kind, verdict_of
from calico_accountant_cli.lab.calico_rules import LabPolicy, LabRule
from calico_accountant_cli.lab.host_endpoints import (
    LabHostEndpoint,
    nft_endpoint_names,
    render_host_filter_table,
)
from calico_accountant_cli.lab.nft_rules import to_nft
from node_agent.parsing import parse_node
from tests.support.dumps import scale_dump
from tests.support.processes import Processes, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.streaming import HitsReader, reporting, start_aggregator
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

ALLOW_SSH = LabPolicy("hosts", "allow-ssh", ingress=(LabRule("allow", "tcp", 22),))
DENY_OUT = LabPolicy("hosts", "deny-out", egress=(LabRule("deny", "udp", 53),))
FORWARD_IN = LabPolicy("hosts", "forward-in", ingress=(LabRule("allow"),))
ENDPOINTS = [
    LabHostEndpoint("eth0", ingress_policies=(ALLOW_SSH,), egress_policies=(DENY_OUT,)),
    LabHostEndpoint(ALL_INTERFACES, forward_ingress_policies=(FORWARD_IN,)),
]
NAMES = {("node-a", "eth0"): "node-a-eth0", ("node-b", ALL_INTERFACES): "node-b-all"}
"""The HostEndpoints of the datastore: node-a names eth0, node-b is a wildcard; the other
(node, interface) pairs of the same tables stay unresolved (``host_endpoint=""``)."""
_NFT_COUNTER = re.compile(r'"packets": ([0-9]+), "bytes": ([0-9]+)')


def _datastore() -> str:
    docs = [
        {"node": "node-a", "interfaceName": "eth0", "name": "node-a-eth0"},
        {"node": "node-b", "interfaceName": "*", "name": "node-b-all"},
    ]
    objects = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "HostEndpoint",
            "metadata": {"name": doc["name"]},
            "spec": {"node": doc["node"], "interfaceName": doc["interfaceName"]},
        }
        for doc in docs
    ]
    objects += [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"default.{policy.name}", "namespace": "hosts"},
            "spec": {"tier": "default", "selector": "all()"},
        }
        for policy in (ALLOW_SSH, DENY_OUT, FORWARD_IN)
    ]
    return "\n---\n".join(json.dumps(obj) for obj in objects)


def _counted(text: str) -> str:
    """Flow-conserving counters (one policy per tier): 10 into a jump, 3 accepted, 2 elsewhere."""
    out = []
    for line in text.splitlines():
        if line.startswith("[0:0] "):
            body = line[6:]
            packets = 10 if " -j cali-p" in body and "MARK" not in body else 3 if "accepted" in body else 2
            line = f"[{packets}:{packets * 60}] " + body
        out.append(line)
    return "\n".join(out) + "\n"


def _scale_nft(text: str, factor: int) -> str:
    return _NFT_COUNTER.sub(lambda m: f'"packets": {int(m[1]) * factor}, "bytes": {int(m[2]) * factor}', text)


def _expected(node: str, text: str, factor: int) -> Counter[tuple[str, ...]]:
    """The host endpoint policy series of ``node`` (labels in the family's order, without
    policy labels, checked apart) after its counters went from x1 to x``factor``."""
    sums: Counter[tuple[str, ...]] = Counter()
    for record in parse_node([(node, text)]).records:
        key = record.key
        if key.endpoint is EndpointKind.WORKLOAD or key.kind not in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY):
            continue
        traffic = "forward" if key.endpoint is EndpointKind.HOST_FORWARD else "host"
        name = NAMES.get((node, key.interface), "")
        labels = (node, name, key.interface, traffic, key.direction.value, verdict_of(key).value)
        sums[labels] += record.packets * (factor - 1)
    return sums


def _scraped(metrics_port: int) -> Counter[tuple[str, ...]]:
    _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    samples = metric_samples(text, "calico_accountant_host_endpoint_policy_packets_total")
    found: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples.items():
        got = dict(labels)
        assert got["policy_kind"] == "NetworkPolicy" and got["policy_namespace"] == "hosts"
        assert got["policy"] in {"allow-ssh", "deny-out", "forward-in"}
        found[
            (
                got["node"],
                got["host_endpoint"],
                got["interface"],
                got["traffic"],
                got["direction"],
                got["verdict"],
            )
        ] += int(value)
    return found


def test_host_endpoint_series_from_agents_in_both_dataplanes(tmp_path: Path) -> None:
    table = _counted(render_host_filter_table(ENDPOINTS))
    nft = to_nft(table, 4, nft_endpoint_names(ENDPOINTS)).json
    datastore = tmp_path / "cluster.yaml"
    datastore.write_text(_datastore())
    dumps = {"node-a": tmp_path / "node-a.save", "node-b": tmp_path / "node-b.json"}
    dumps["node-a"].write_text(table)
    dumps["node-b"].write_text(nft)
    with processes(tmp_path) as run:
        _run(run, datastore, dumps, table, nft)


def _run(run: Processes, datastore: Path, dumps: dict[str, Path], table: str, nft: str) -> None:
    port, metrics_port = start_aggregator(run, "--datastore", f"file:{datastore}")
    run.agent("node-a", port, [f"cat {dumps['node-a']}"], "--interval", "0.2", "--dataplane", "iptables")
    run.agent(
        "node-b",
        port,
        [],
        "--interval",
        "0.2",
        "--dataplane",
        "nftables",
        "--nft-list",
        f"cat {dumps['node-b']}",
    )
    client = HitsReader(f"127.0.0.1:{port}")
    try:
        wait_until(reporting(client, 2), what="both nodes reporting")
    finally:
        client.close()
    dumps["node-a"].write_text(scale_dump(table, 3))
    dumps["node-b"].write_text(_scale_nft(nft, 3))
    expected = _expected("node-a", table, 3) + _expected("node-b", nft, 3)
    assert expected and {labels[1] for labels in expected} == {"node-a-eth0", "node-b-all", ""}
    wait_until(lambda: _scraped(metrics_port) == expected, what="host endpoint series")
    _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert not metric_samples(text, "calico_accountant_workload_policy_packets_total")
    assert not metric_samples(text, "calico_accountant_node_policy_packets_total")
