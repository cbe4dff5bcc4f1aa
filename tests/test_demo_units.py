"""The demo's pure parts, without root: selectors, the sample cluster, the oracle, the
renderer, the table simulator, the bundled dumps -- and, end to end without a kernel,
rendered table -> simulated traffic -> the real parser -> the real catalog, against the
oracle's expectations."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aggregator.catalog.index import Catalog
from aggregator.datastore.objects import decode_documents, object_from_etcd
from calico_accountant.records import Kind
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.demo.cluster import (
    ClusterError,
    load_cluster,
    load_sample_cluster,
    manifest_documents,
    sample_cluster_text,
    stored_documents,
)
from calico_accountant_cli.demo.plan import DEFAULT_PLAN, flows_of, node_packets
from calico_accountant_cli.demo.render import carry_counters, node_ipsets, render_node_table
from calico_accountant_cli.demo.replay import (
    bundled_dump,
    bundled_dump_name,
    render_bundled_dumps,
    replayed_dump,
)
from calico_accountant_cli.demo.selectors import SelectorError, parse_selector
from calico_accountant_cli.demo.simulate import Packet, TableError, advance_counters, load_table
from calico_accountant_cli.demo.summary import render_summary, summarize
from calico_accountant_cli.demo.verdicts import Flow, OutcomeKind, decide, effective_tiers, outcomes_for
from calico_accountant_cli.lab.calico_rules import Layout
from node_agent.parsing import parse_node

LABELS = {"app": "cart", "projectcalico.org/namespace": "shop", "tier": "web"}


# ----------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("all()", True),
        ("global()", False),
        ("app == 'cart'", True),
        ('app == "cart"', True),
        ("app != 'cart'", False),
        ("missing != 'x'", True),
        ("has(tier)", True),
        ("!has(tier)", False),
        ("has(missing)", False),
        ("app in {'cart', 'catalog'}", True),
        ("app in {}", False),
        ("app not in {'cart'}", False),
        ("projectcalico.org/namespace in {'shop','payments'} && app == 'cart'", True),
        ("app == 'x' || tier == 'web'", True),
        ("app == 'x' || tier == 'db' && has(app)", False),
        ("(app == 'x' || tier == 'web') && !has(nope)", True),
        ("!(app == 'cart')", False),
        ("!!has(app)", True),
    ],
)
def test_selectors_evaluate_like_calico(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    "text",
    [
        "app ==",
        "app = 'x'",
        "has(app",
        "app == 'x' &&",
        "app contains 'x'",
        "app in {'a' 'b'}",
        "(app == 'x'",
        "%",
    ],
)
def test_selectors_outside_the_subset_are_errors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


# ----------------------------------------------------------------------------- the cluster


def test_sample_cluster_has_what_the_issue_asks_for() -> None:
    cluster = load_sample_cluster()
    assert cluster.nodes == ("node-a", "node-b")
    assert len(cluster.workloads) == 8
    assert {w.namespace for w in cluster.workloads} == {"shop", "payments", "monitoring"}
    kinds = Counter(p.shown_kind for p in cluster.policies)
    assert kinds["KubernetesNetworkPolicy"] >= 2 and kinds["NetworkPolicy"] >= 2
    assert kinds["GlobalNetworkPolicy"] >= 2
    assert any(rule.action == "deny" for p in cluster.policies for rule in p.ingress)
    assert any(p.ingress == () and "ingress" in p.types for p in cluster.policies), "a default deny"
    assert cluster.tier("security").default_action == "Pass"
    assert all(w.ipv4.startswith("169.254.") for w in cluster.workloads)


def test_manifest_round_trip_keeps_the_cluster() -> None:
    import yaml

    cluster = load_sample_cluster()
    again = load_cluster(yaml.safe_dump_all(manifest_documents(cluster)))
    assert again == cluster


def test_cluster_refuses_rules_it_cannot_render() -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {nets: [169.254.0.0/16]}
"""
    with pytest.raises(ClusterError, match=r"source\.selector"):
        load_cluster(text)


def test_stored_documents_are_what_calico_writes_to_etcd() -> None:
    stored = dict(stored_documents(load_sample_cluster()))
    prefix = "/calico/resources/v3/projectcalico.org/"
    key = prefix + "networkpolicies/payments/default.deny-frontend-to-payments-api"
    assert key in stored
    body = json.loads(stored[key])
    assert body["metadata"]["name"] == "default.deny-frontend-to-payments-api"
    assert json.loads(body["metadata"]["annotations"]["projectcalico.org/metadata"]) == {
        "name": "deny-frontend-to-payments-api"
    }
    assert prefix + "globalnetworkpolicies/security.deny-shop-to-ledger-db" in stored
    assert prefix + "networkpolicies/shop/knp.default.allow-frontend-to-cart" in stored
    assert prefix + "workloadendpoints/shop/node--a-k8s-frontend--6c9f8d7b5--x2x4k-eth0" in stored
    assert prefix + "tiers/security" in stored
    for key, value in stored.items():  # every value decodes as the aggregator reads etcd
        assert object_from_etcd(key, value) is not None


# ----------------------------------------------------------------------------- oracle


def test_oracle_decides_the_samples_documented_cases() -> None:
    cluster = load_sample_cluster()
    pods = {w.app: w for w in cluster.workloads}
    cases = [
        (("frontend", "cart", "tcp", 8080), OutcomeKind.POLICY, "accept", "allow-frontend-to-cart"),
        (("frontend", "cart", "tcp", 9999), OutcomeKind.NO_POLICY_DROP, "deny", ""),
        (
            ("frontend", "payments-api", "tcp", 8443),
            OutcomeKind.POLICY,
            "deny",
            "deny-frontend-to-payments-api",
        ),
        (
            ("checkout", "payments-api", "tcp", 8443),
            OutcomeKind.POLICY,
            "accept",
            "allow-checkout-to-payments-api",
        ),
        (("payments-api", "ledger-db", "tcp", 5432), OutcomeKind.POLICY, "accept", "allow-api-to-ledger-db"),
        (("cart", "ledger-db", "tcp", 5432), OutcomeKind.POLICY, "deny", "deny-shop-to-ledger-db"),
        (("prometheus", "ledger-db", "tcp", 9090), OutcomeKind.POLICY, "accept", "allow-prometheus-scrape"),
        (("cart", "grafana", "icmp", None), OutcomeKind.PROFILE, "accept", ""),
    ]
    for layout in Layout:
        for (source, dest, protocol, port), kind, verdict, policy in cases:
            outcome = decide(cluster, layout, Flow(pods[source], pods[dest], protocol, port), "ingress")
            assert (outcome.kind, outcome.verdict, outcome.policy) == (kind, verdict, policy), (
                layout,
                source,
                dest,
            )
    security = decide(cluster, Layout.V3_30, Flow(pods["cart"], pods["ledger-db"], "tcp", 5432), "ingress")
    flat = decide(cluster, Layout.V3_27, Flow(pods["cart"], pods["ledger-db"], "tcp", 5432), "ingress")
    assert (security.tier, flat.tier) == ("security", "default")


def test_v3_27_flattens_tiers_in_tier_order() -> None:
    cluster = load_sample_cluster()
    (only,) = effective_tiers(cluster, Layout.V3_27)
    assert only.policies[0].name == "deny-shop-to-ledger-db"
    assert [t.name for t in effective_tiers(cluster, Layout.V3_30)] == ["security", "default"]


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("use_ipsets", [True, False])
def test_rendered_tables_parse_cleanly(layout: Layout, use_ipsets: bool) -> None:
    cluster = load_sample_cluster()
    for node in cluster.nodes:
        result = parse_node([(node, render_node_table(cluster, node, layout, use_ipsets=use_ipsets))])
        assert list(result.diagnostics) == []
        tiers = {r.key.tier for r in result.records if r.key.kind is Kind.POLICY_DENY}
        assert tiers <= ({"default", "security"} if layout is Layout.V3_30 else {"default"})


def _counts_through_the_real_parser_and_catalog(layout: Layout, use_ipsets: bool) -> Counter[tuple[str, ...]]:
    """Simulate one round of the plan on every node's table, parse with the agent's
    parser, resolve with the aggregator's catalog: packets per (pod, direction, kind,
    verdict-ish name)."""
    cluster = load_sample_cluster()
    catalog = Catalog.from_objects(decode_documents(manifest_documents(cluster)).objects)
    flows = flows_of(cluster)
    got: Counter[tuple[str, ...]] = Counter()
    for node in cluster.nodes:
        table = render_node_table(cluster, node, layout, use_ipsets=use_ipsets)
        sets = node_ipsets(cluster, node, layout) if use_ipsets else {}
        text = advance_counters(table, node_packets(cluster, node, flows), sets)
        for record in parse_node([(node, text)]).records:
            key = record.key
            if not record.packets or not key.interface:
                continue
            pod = catalog.workload(node, key.interface).pod
            if key.kind in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY):
                policy = catalog.policy(key.chain)
                name = policy.name
                verdict = "accept" if key.kind is Kind.POLICY_ACCEPT else "deny"
                got[(pod, key.direction.value, "policy", verdict, key.tier, policy.kind, name)] += (
                    record.packets
                )
            elif key.kind is Kind.NO_POLICY_DROP:
                got[(pod, key.direction.value, "no_policy_drop", "deny", key.tier, "", "")] += record.packets
            elif key.kind is Kind.PROFILE_ACCEPT:
                profile = catalog.profile(key.chain).name
                got[(pod, key.direction.value, "profile", "accept", "", "", profile)] += record.packets
    return got


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("use_ipsets", [True, False])
def test_tables_enforce_what_the_oracle_says(layout: Layout, use_ipsets: bool) -> None:
    cluster = load_sample_cluster()
    want: Counter[tuple[str, ...]] = Counter()
    for flow, count in flows_of(cluster):
        for o in outcomes_for(cluster, layout, [flow]):
            name = o.profile if o.kind is OutcomeKind.PROFILE else o.policy
            want[(o.pod, o.direction, o.kind.value, o.verdict, o.tier, o.policy_kind, name)] += count
    assert _counts_through_the_real_parser_and_catalog(layout, use_ipsets) == want
    assert _rule_counts(layout, use_ipsets) == _expected_rule_counts(layout)


def _rule_counts(layout: Layout, use_ipsets: bool) -> Counter[tuple[str, ...]]:
    cluster = load_sample_cluster()
    catalog = Catalog.from_objects(decode_documents(manifest_documents(cluster)).objects)
    got: Counter[tuple[str, ...]] = Counter()
    for node in cluster.nodes:
        table = render_node_table(cluster, node, layout, use_ipsets=use_ipsets)
        sets = node_ipsets(cluster, node, layout) if use_ipsets else {}
        text = advance_counters(table, node_packets(cluster, node, flows_of(cluster)), sets)
        for record in parse_node([(node, text)]).records:
            if record.key.kind is Kind.POLICY_RULE and record.packets:
                policy = catalog.policy(record.key.chain).name
                got[(node, policy, str(record.key.rule_index), record.key.action)] += record.packets
    return got


def _expected_rule_counts(layout: Layout) -> Counter[tuple[str, ...]]:
    cluster = load_sample_cluster()
    want: Counter[tuple[str, ...]] = Counter()
    for flow, count in flows_of(cluster):
        for o in outcomes_for(cluster, layout, [flow]):
            if o.kind is OutcomeKind.POLICY:
                want[(o.node, o.policy, str(o.rule_index), o.rule_action)] += count
    return want


def test_carry_counters_keeps_unchanged_rules_only() -> None:
    cluster = load_sample_cluster()
    layout = Layout.V3_30
    table = render_node_table(cluster, "node-b", layout)
    counted = advance_counters(
        table, node_packets(cluster, "node-b", flows_of(cluster)), node_ipsets(cluster, "node-b", layout)
    )
    assert carry_counters(counted, table) == counted  # same rules: every counter carried
    catalog = next(w for w in cluster.workloads if w.app == "catalog")
    reset = carry_counters(counted, table, reset_chains=frozenset({f"cali-tw-{catalog.interface}"}))
    for line in reset.splitlines():
        if f"-A cali-tw-{catalog.interface} " in line:
            assert line.startswith("[0:0] ")
    smaller = render_node_table(cluster.without_workload(catalog.pod), "node-b", layout)
    carried = carry_counters(counted, smaller)
    assert f"cali-tw-{catalog.interface}" not in carried
    grafana = next(w for w in cluster.workloads if w.app == "grafana")
    line = next(
        x for x in carried.splitlines() if f"-A cali-tw-{grafana.interface} " in x and "kns.monitoring" in x
    )
    assert not line.startswith("[0:0]"), "an unchanged endpoint chain keeps its counters"


def test_simulator_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(TableError):
        load_table("*filter\n:FORWARD ACCEPT [0:0]\n[0:0] -A FORWARD -m foo --bar 1 -j ACCEPT\nCOMMIT\n")
    table = load_table("*filter\n:FORWARD ACCEPT [0:0]\n[0:0] -A FORWARD -j nowhere\nCOMMIT\n")
    with pytest.raises(TableError):
        table.walk(Packet("a", "b", "169.254.0.1", "tcp", 1))


# ----------------------------------------------------------------------------- replay


def test_bundled_dumps_are_what_the_renderer_makes(tmp_path: Path) -> None:
    cluster = load_sample_cluster()
    for path in render_bundled_dumps(cluster, tmp_path):
        node, layout = path.name.split(".", 1)[0], Layout(path.name.split(".", 1)[1].removesuffix(".save"))
        assert path.read_text() == bundled_dump(node, layout), f"regenerate {bundled_dump_name(node, layout)}"


def test_replayed_counters_advance_by_whole_rounds() -> None:
    cluster = load_sample_cluster()
    totals = []
    for rounds in (0, 1, 3):
        text = replayed_dump(cluster, "node-a", Layout.V3_30, rounds)
        totals.append(sum(r.packets for r in parse_node([("node-a", text)]).records))
    assert totals[0] == 0 and totals[1] > 0 and totals[2] == 3 * totals[1]


def test_sample_yaml_is_the_packaged_file() -> None:
    assert "kind: WorkloadEndpoint" in sample_cluster_text()
    assert len(DEFAULT_PLAN) >= 10


# ----------------------------------------------------------------------------- summary


def test_summary_ranks_denials_and_skips_per_rule_totals() -> None:
    def hit(pod: str, kind: Any, verdict: str, packets: int, policy: str = "") -> hpb.Hit:
        message = hpb.Hit(node="n", namespace="ns", pod=pod, kind=kind, verdict=verdict, packets=packets)
        if policy:
            message.policy.CopyFrom(
                hpb.PolicyRef(kind="NetworkPolicy", namespace="ns", name=policy, tier="default")
            )
        return message

    totals = [
        hit("a", spb.POLICY_DENY, "deny", 5, "deny-a"),
        hit("b", spb.NO_POLICY_DROP, "deny", 7),
        hit("a", spb.POLICY_ACCEPT, "accept", 3, "allow-a"),
        hit("", spb.POLICY_RULE, "deny", 100, "deny-a"),
        hit("c", spb.POLICY_DENY, "deny", 0, "deny-c"),
    ]
    summary = summarize(
        totals,
        hpb.ServerStatusResponse(agents_connected=2),
        hpb.ListNodesResponse(nodes=[hpb.NodeStatus(node="n", connected=True, sequence=4)]),
    )
    assert summary.denied_packets == 12 and summary.accepted_packets == 3
    assert summary.top_denied_workloads == (("ns/b", 7), ("ns/a", 5))
    assert summary.top_denied_policies[0] == ("(default deny: no policy matched)", 7)
    text = render_summary(summary, header=["hdr"])
    assert "agents connected: 2" in text and "ns/b" in text and "deny-c" not in text
