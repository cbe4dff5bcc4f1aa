"""Host endpoints end to end, without a kernel: felix-shaped tables (the lab renderer, in
iptables and nftables form) to records, records over the wire and through a checkpoint,
HostEndpoints read from every datastore backend (file, a real etcd, the stand-in Kubernetes
API), and the resolved counters in their own metric families.

The kernel half (real traffic) is ``tests/test_host_endpoint_kernel.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aetcd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.checkpoint.codec import Checkpoint, decode, encode
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.etcd import EtcdDatastore
from aggregator.datastore.file import decode_text
from aggregator.datastore.kubernetes import KubernetesDatastore
from aggregator.datastore.spec import EtcdSpec, KubernetesSpec, parse_datastore_spec
from aggregator.model import PolicyKind
from aggregator.series.options import SeriesOptions
from calico_accountant.felix.endpoints import ALL_INTERFACES, endpoint_chain
from calico_accountant.felix.naming import length_limited_id
from calico_accountant.records import CounterKey, CounterRecord, Direction, EndpointKind, Kind
from calico_accountant.wire.counters import counter_to_record, record_to_counter
from calico_accountant_cli.commands.parse import record_as_json
from calico_accountant_cli.lab.calico_rules import LabEndpoint, LabPolicy, LabRule, Layout, policy_chain_name
from calico_accountant_cli.lab.calico_rules import render_filter_table as render_workloads
from calico_accountant_cli.lab.host_endpoints import (
    LabHostEndpoint,
    nft_endpoint_names,
    render_host_filter_table,
)
from calico_accountant_cli.lab.nft_rules import to_nft
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.accounting import FakeCatalog, accept, deny, no_policy_drop, snapshot
from tests.support.etcd_server import EtcdServer
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import calico_host_endpoint, calico_policy, kubectl_list
from tests.test_series import by_name

HOST, FORWARD, WORKLOAD = EndpointKind.HOST, EndpointKind.HOST_FORWARD, EndpointKind.WORKLOAD
INGRESS, EGRESS = Direction.INGRESS, Direction.EGRESS
ALLOW_SSH = LabPolicy("hosts", "allow-ssh", ingress=(LabRule("allow", "tcp", 22),))
DENY_OUT = LabPolicy("hosts", "deny-out", egress=(LabRule("deny", "udp", 53),))
FORWARD_IN = LabPolicy("hosts", "forward-in", ingress=(LabRule("allow"),))


def _endpoints() -> list[LabHostEndpoint]:
    return [
        LabHostEndpoint(
            "eth0", ingress_policies=(ALLOW_SSH,), egress_policies=(DENY_OUT,), profiles=("hep",)
        ),
        LabHostEndpoint(ALL_INTERFACES, forward_ingress_policies=(FORWARD_IN,)),
    ]


def _with_counts(text: str) -> str:
    """Counters that keep flow conservation (every endpoint chain here has one policy per
    tier): 10 into a policy jump, 3 accepted, 2 on every other rule, so each deny is 5."""
    lines = []
    for line in text.splitlines():
        if line.startswith("[0:0] "):
            body = line[6:]
            packets = 10 if " -j cali-p" in body and "MARK" not in body else 3 if "accepted" in body else 2
            line = f"[{packets}:{packets * 60}] " + body
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_endpoint_chain_names() -> None:
    assert endpoint_chain("cali-tw-cali1") == (INGRESS, WORKLOAD, "cali1")
    assert endpoint_chain("cali-th-eth0") == (EGRESS, HOST, "eth0")
    assert endpoint_chain("cali-fh-eth0") == (INGRESS, HOST, "eth0")
    assert endpoint_chain("cali-thfw-eth0") == (EGRESS, FORWARD, "eth0")
    assert endpoint_chain("cali-fhfw-eth0") == (INGRESS, FORWARD, "eth0")
    # The wildcard's forward chains are hashed in iptables; recognised by their hash.
    hashed = length_limited_id("cali-fhfw-", ALL_INTERFACES)
    assert hashed != "cali-fhfw-" + ALL_INTERFACES and len(hashed) == 28
    assert endpoint_chain(hashed) == (INGRESS, FORWARD, ALL_INTERFACES)
    assert endpoint_chain("cali-th-any-interface-at-all") == (EGRESS, HOST, ALL_INTERFACES)
    for not_endpoint in ("cali-failsafe-in", "cali-to-host-endpoint", "cali-th-", "cali-pi-x", "KUBE-x"):
        assert endpoint_chain(not_endpoint) is None


@pytest.mark.parametrize("family", [4, 6])
def test_host_endpoint_chains_parse_alike_in_every_path_and_dataplane(family: int) -> None:
    text = _with_counts(render_host_filter_table(_endpoints(), family=family))
    general = parse_node([("t", text)], columnar=False, family=family)
    columnar = parse_node([("t", text)], family=family)
    assert general.diagnostics == [] and columnar.diagnostics == []
    assert sorted(columnar.records) == sorted(general.records)
    keys = {record.key for record in general.records}
    pi_ssh = policy_chain_name(ALLOW_SSH, "ingress", Layout.V3_30)
    po_out = policy_chain_name(DENY_OUT, "egress", Layout.V3_30)
    pi_forward = policy_chain_name(FORWARD_IN, "ingress", Layout.V3_30)
    assert CounterKey(Kind.POLICY_ACCEPT, family, INGRESS, "eth0", pi_ssh, "default", endpoint=HOST) in keys
    assert CounterKey(Kind.POLICY_DENY, family, EGRESS, "eth0", po_out, "default", endpoint=HOST) in keys
    assert CounterKey(Kind.PROFILE_ACCEPT, family, EGRESS, "eth0", "cali-pro-hep", endpoint=HOST) in keys
    assert CounterKey(Kind.NO_PROFILE_DROP, family, INGRESS, ALL_INTERFACES, endpoint=HOST) in keys
    forward = CounterKey(
        Kind.POLICY_ACCEPT, family, INGRESS, ALL_INTERFACES, pi_forward, "default", endpoint=FORWARD
    )
    assert forward in keys
    # Forward chains have no profiles; failsafe jumps and "Allow forwarded traffic by default" are no policy.
    assert not [
        k for k in keys if k.endpoint is FORWARD and k.kind in (Kind.NO_PROFILE_DROP, Kind.PROFILE_ACCEPT)
    ]
    assert not [k for k in keys if "failsafe" in k.chain]
    assert {k.endpoint for k in keys if k.kind is Kind.POLICY_RULE} == {WORKLOAD}
    by_key = {r.key: r for r in general.records}
    denied = by_key[CounterKey(Kind.POLICY_DENY, family, EGRESS, "eth0", po_out, "default", endpoint=HOST)]
    assert denied.packets > 0  # entered - accepted - next, from distinct counters

    listing = to_nft(text, family, nft_endpoint_names(_endpoints())).json
    assert '"filter-cali-fhfw-any-interface-at-all"' in listing
    nft = parse_node([("nft", listing)])
    assert nft.diagnostics == []
    # nft chain names are never hashed: the forward chains carry the wildcard's name.
    assert {(r.key, r.packets, r.bytes) for r in nft.records} == {
        (r.key, r.packets, r.bytes) for r in general.records
    }

    steady = SteadyStateParser(family=family)
    steady.parse([("t", text)])
    assert sorted(steady.parse([("t", text)]).records) == sorted(general.records)
    assert steady.fast_path_reads == 1


def _merged(first: str, second: str) -> str:
    """One filter table: ``first``, then the chains of ``second`` that ``first`` lacks."""
    declared = [line for line in first.splitlines() if line.startswith(":")]
    rules = [line for line in first.splitlines() if line.startswith("[")]
    names = {line.split()[0] for line in declared}
    extra = [line for line in second.splitlines() if line.startswith(":") and line.split()[0] not in names]
    extra_names = {line[1:].split()[0] for line in extra}
    rules += [line for line in second.splitlines() if line.startswith("[") and line.split()[2] in extra_names]
    return "\n".join(["*filter", *declared, *extra, *rules, "COMMIT"]) + "\n"


def test_workload_and_host_endpoint_chains_in_one_table() -> None:
    web = LabPolicy("shop", "web", ingress=(LabRule("allow", "tcp", 80),))
    workloads = render_workloads([LabEndpoint("cali1", ingress_policies=(web,))], Layout.V3_30)
    hosts = render_host_filter_table([LabHostEndpoint("eth0", ingress_policies=(ALLOW_SSH,))])
    text = _with_counts(_merged(workloads, hosts))
    records = parse_node([("t", text)]).records
    assert sorted(records) == sorted(parse_node([("t", text)], columnar=False).records)
    endpoints = {(r.key.interface, r.key.endpoint) for r in records if r.key.interface}
    assert endpoints == {("cali1", WORKLOAD), ("eth0", HOST)}


def test_host_endpoint_records_on_the_wire_in_json_and_in_checkpoints() -> None:
    for endpoint in EndpointKind:
        key = CounterKey(Kind.POLICY_DENY, 6, INGRESS, "eth0", "cali-pi-x", "default", endpoint=endpoint)
        record = CounterRecord(key, 3, 300, ("a", "b", "c"))
        assert counter_to_record(record_to_counter(record)) == record
        assert record_as_json(record)["endpoint"] == endpoint.value
    # Same fields apart from the endpoint: two counters, kept apart through a checkpoint.
    acct = Accountant(FakeCatalog().add_host_endpoint("n1", "eth0", "n1-eth0"), options=SeriesOptions())
    records = [
        accept("eth0", "cali-pi-x", 5, endpoint=HOST),
        accept("eth0", "cali-pi-x", 7, endpoint=FORWARD),
        no_policy_drop("eth0", 2, endpoint=HOST),
    ]
    acct.apply(snapshot("n1", records), 0)
    nodes, families, tombstones = acct.capture()
    restored = decode(encode(Checkpoint(1.0, "t", nodes, families, tombstones)))
    keys = {counter.key for node in restored.nodes for counter in node.counters}
    assert keys == {record.key for record in records}


def test_host_endpoint_counters_get_their_own_families() -> None:
    catalog = (
        FakeCatalog()
        .add_pod("n1", "cali1", "shop", "web-1", "web")
        .add_policy("cali-pi-x", "allow-ssh", "")
        .add_host_endpoint("n1", "eth0", "n1-eth0")
    )
    acct = Accountant(catalog)
    acct.apply(
        snapshot(
            "n1",
            [
                accept("eth0", "cali-pi-x", 5, endpoint=HOST),
                deny("eth0", "cali-pi-x", 2, endpoint=HOST),
                accept("eth0", "cali-pi-x", 7, endpoint=FORWARD),
                accept("eth9", "cali-pi-x", 1, endpoint=HOST),
                no_policy_drop("eth0", 4, endpoint=HOST),
                accept("cali1", "cali-pi-x", 11),
            ],
        ),
        0,
    )
    families = by_name(acct.view(0))
    policy = {
        (labels["host_endpoint"], labels["interface"], labels["traffic"], labels["verdict"]): values
        for labels, values in (
            (dict(k), v) for k, v in families["calico_accountant_host_endpoint_policy_packets_total"].items()
        )
    }
    assert policy == {
        ("n1-eth0", "eth0", "host", "accept"): (5, 500),
        ("n1-eth0", "eth0", "host", "deny"): (2, 200),
        ("n1-eth0", "eth0", "forward", "accept"): (7, 700),
        ("", "eth9", "host", "accept"): (1, 100),  # no HostEndpoint names eth9: exported raw
    }
    assert all(
        dict(k)["policy"] == "allow-ssh"
        for k in families["calico_accountant_host_endpoint_policy_packets_total"]
    )
    drops = families["calico_accountant_host_endpoint_no_policy_drop_packets_total"]
    assert list(drops.values()) == [(4, 400)]
    # Workload and node families keep meaning the workloads' traffic.
    assert sum(v[0] for v in families["calico_accountant_workload_policy_packets_total"].values()) == 11
    assert sum(v[0] for v in families["calico_accountant_node_policy_packets_total"].values()) == 11


# ---------------------------------------------------------------------- the datastore backends

_V3 = "projectcalico.org/v3"


def _hep(name: str, node: str, interface: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"node": node, **spec}
    if interface is not None:
        body["interfaceName"] = interface
    return {
        "apiVersion": _V3,
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": {"role": "edge"}},
        "spec": body,
    }


_HEPS = [
    _hep("b-eth0", "node-a", "eth0", profiles=["edge-profile"]),
    _hep("a-eth0", "node-a", "eth0"),  # felix: the smallest name wins
    _hep("node-b-all", "node-b", "*"),
    _hep("node-c-by-ip", "node-c", None, expectedIPs=["169.254.9.9"]),
]


def _check(catalog: Catalog) -> None:
    eth0 = catalog.host_endpoint("node-a", "eth0")
    assert (eth0.name, eth0.resolved, eth0.labels) == ("a-eth0", True, (("role", "edge"),))
    assert catalog.host_endpoint("node-b", ALL_INTERFACES).name == "node-b-all"
    assert not catalog.host_endpoint("node-b", "eth0").resolved
    assert not catalog.host_endpoint("node-c", "eth0").resolved  # matched by IP on the node only
    assert "edge-profile" in catalog.profiles()
    assert catalog.resolution_stats().host_endpoints == 2
    # What the aggregator exports for these nodes' host endpoint counters, with this catalog.
    acct = Accountant(catalog)
    acct.apply(snapshot("node-a", [no_policy_drop("eth0", 3, endpoint=HOST)]), 0)
    acct.apply(snapshot("node-b", [no_policy_drop(ALL_INTERFACES, 4, endpoint=FORWARD)]), 0)
    acct.apply(snapshot("node-c", [no_policy_drop("eth0", 5, endpoint=HOST)]), 0)
    drops = by_name(acct.view(0))["calico_accountant_host_endpoint_no_policy_drop_packets_total"]
    assert {
        (d["node"], d["host_endpoint"], d["interface"], d["traffic"]): v
        for d, v in ((dict(k), v) for k, v in drops.items())
    } == {
        ("node-a", "a-eth0", "eth0", "host"): (3, 300),
        ("node-b", "node-b-all", ALL_INTERFACES, "forward"): (4, 400),
        ("node-c", "", "eth0", "host"): (5, 500),
    }


def test_host_endpoints_from_files_and_kubectl_lists() -> None:
    manifests = decode_text("\n---\n".join(json.dumps(doc) for doc in _HEPS))
    assert manifests.bad == {}
    _check(Catalog.from_objects(manifests.objects))
    crds = [
        calico_host_endpoint("b-eth0", "node-a", "eth0", profiles=["edge-profile"], labels={"role": "edge"}),
        calico_host_endpoint("a-eth0", "node-a", "eth0", labels={"role": "edge"}),
        calico_host_endpoint("node-b-all", "node-b", "*"),
        calico_host_endpoint("node-c-by-ip", "node-c", None, expected_ips=["169.254.9.9"]),
    ]
    listed = decode_text(json.dumps(kubectl_list(crds)))
    assert listed.bad == {}
    _check(Catalog.from_objects(listed.objects))
    bad = decode_text(json.dumps(_hep("broken", "", "eth0")))
    assert bad.bad == {"bad_spec": 1} and not bad.objects


async def _synced(cache: DatastoreCache, source: EtcdDatastore | KubernetesDatastore) -> Catalog:
    source.start()
    try:
        return await cache.wait_synced(timeout=15)
    finally:
        await source.stop()


def test_host_endpoints_from_a_real_etcd(etcd: EtcdServer) -> None:
    async def scenario() -> Catalog:
        host, port = etcd.endpoint.rsplit(":", 1)
        client = aetcd.Client(host=host, port=int(port), timeout=10)
        try:
            for doc in _HEPS:
                key = f"/calico/resources/v3/projectcalico.org/hostendpoints/{doc['metadata']['name']}"
                await client.put(key.encode(), json.dumps(doc).encode())
        finally:
            await client.close()
        spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
        assert isinstance(spec, EtcdSpec)
        cache = DatastoreCache(source="etcd", min_rebuild_interval=0.01)
        return await _synced(cache, EtcdDatastore(spec, cache))

    catalog = asyncio.run(scenario())
    _check(catalog)
    assert catalog.object_counts["HostEndpoint"] == 4


def test_host_endpoints_from_the_kubernetes_api(tmp_path: Path) -> None:
    with KubeApiServer(tmp_path) as api:
        api.put(
            calico_host_endpoint(
                "b-eth0", "node-a", "eth0", profiles=["edge-profile"], labels={"role": "edge"}
            ),
            calico_host_endpoint("a-eth0", "node-a", "eth0", labels={"role": "edge"}),
            calico_host_endpoint("node-b-all", "node-b", "*"),
            calico_host_endpoint("node-c-by-ip", "node-c", None, expected_ips=["169.254.9.9"]),
            calico_policy("GlobalNetworkPolicy", "default.allow-ssh", {"tier": "default"}),
        )
        spec = parse_datastore_spec("kubernetes", kubeconfig=str(api.write_kubeconfig()))
        assert isinstance(spec, KubernetesSpec)
        cache = DatastoreCache(min_rebuild_interval=0.01)
        catalog = asyncio.run(_synced(cache, KubernetesDatastore(spec, cache, page_size=2)))
    _check(catalog)
    assert catalog.policy("cali-pi-default.allow-ssh").kind is PolicyKind.GLOBAL_NETWORK_POLICY


def test_a_host_endpoint_hit_names_its_host_endpoint() -> None:
    from datetime import UTC, datetime

    from aggregator.hits.convert import counter_to_hit
    from aggregator.resolution.resolve import resolve_counter
    from calico_accountant.v1 import snapshot_pb2 as pb

    catalog = FakeCatalog().add_host_endpoint("n1", "eth0", "n1-eth0").add_policy("cali-pi-x", "allow-ssh")
    key = accept("eth0", "cali-pi-x", 1, endpoint=FORWARD).key
    hit = counter_to_hit(resolve_counter(catalog, "n1", key), 1, 100, datetime.now(UTC))
    assert (hit.endpoint, hit.host_endpoint, hit.pod, hit.policy.name) == (
        pb.ENDPOINT_HOST_FORWARD,
        "n1-eth0",
        "",
        "allow-ssh",
    )
    from calico_accountant_cli.hit_format import format_hit_json, workload_text

    assert workload_text(hit) == "host n1-eth0 (eth0 forward)"
    shown = json.loads(format_hit_json(hit))
    assert (shown["endpoint"], shown["host_endpoint"]) == ("host_forward", "n1-eth0")
    workload = counter_to_hit(
        resolve_counter(catalog, "n1", accept("cali1", "cali-pi-x", 1).key), 1, 1, datetime.now(UTC)
    )
    assert (workload.endpoint, workload.host_endpoint) == (pb.ENDPOINT_WORKLOAD, "")


_POLICIES = (ALLOW_SSH, DENY_OUT, FORWARD_IN, LabPolicy("hosts", "pass-all", ingress=(LabRule("pass"),)))


@st.composite
def _host_tables(draw: st.DrawFn) -> tuple[str, int, dict[str, str]]:
    """A random set of host endpoints (named and wildcard interfaces, any policies in any
    chain, profiles or none) with random counters, and its family."""
    names = draw(
        st.lists(st.sampled_from(["eth0", "bond0.12", "ens5", ALL_INTERFACES]), min_size=1, unique=True)
    )
    policies = st.lists(st.sampled_from(_POLICIES), max_size=2, unique=True).map(tuple)
    endpoints = [
        LabHostEndpoint(
            name,
            ingress_policies=draw(policies),
            egress_policies=draw(policies),
            forward_ingress_policies=draw(policies),
            forward_egress_policies=draw(policies),
            profiles=tuple(draw(st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True))),
        )
        for name in names
    ]
    family = draw(st.sampled_from([4, 6]))
    lines = []
    for line in render_host_filter_table(endpoints, family=family).splitlines():
        if line.startswith("[0:0] "):
            packets = draw(st.integers(0, 50))
            line = f"[{packets}:{packets * 80}] " + line[6:]
        lines.append(line)
    return "\n".join(lines) + "\n", family, nft_endpoint_names(endpoints)


@settings(max_examples=60, deadline=None)
@given(_host_tables())
def test_random_host_endpoint_tables_parse_alike_in_every_path_and_dataplane(
    table: tuple[str, int, dict[str, str]],
) -> None:
    text, family, nft_names = table
    general = parse_node([("t", text)], columnar=False, family=family)
    columnar = parse_node([("t", text)], family=family)
    assert sorted(columnar.records) == sorted(general.records)
    assert columnar.diagnostic_counts() == general.diagnostic_counts()
    nft = parse_node([("nft", to_nft(text, family, nft_names).json)])
    assert sorted(nft.records) == sorted(general.records)
    assert nft.diagnostic_counts() == general.diagnostic_counts()
    # Every endpoint record is a host endpoint's, and every rule of theirs is somewhere.
    assert all(r.key.endpoint is not WORKLOAD for r in general.records if r.key.kind is not Kind.POLICY_RULE)
    assert {r.key.interface for r in general.records if r.key.interface} == {
        line.split()[0][len(":cali-th-") :] for line in text.splitlines() if line.startswith(":cali-th-")
    }


def test_a_deleted_host_endpoint_keeps_its_name_in_the_series() -> None:
    """As for pods: felix removes the chains soon after; until then the counters keep counting
    under the name they had, not under a new unresolved series."""
    acct = Accountant(FakeCatalog().add_host_endpoint("n1", "eth0", "n1-eth0"))
    acct.apply(snapshot("n1", [accept("eth0", "cali-pi-x", 5, endpoint=HOST)]), 0)
    acct.set_resolver(FakeCatalog())
    acct.apply(snapshot("n1", [accept("eth0", "cali-pi-x", 8, endpoint=HOST)], sequence=2), 1)
    series = by_name(acct.view(1))["calico_accountant_host_endpoint_policy_packets_total"]
    assert [(dict(labels)["host_endpoint"], values) for labels, values in series.items()] == [
        ("n1-eth0", (8, 800))
    ]
