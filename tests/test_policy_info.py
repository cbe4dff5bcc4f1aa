"""``calico_accountant_policy_info`` / ``_policy_rule_info``: rules rendered short and bounded,
canaries recognised, and (with a real aggregator, agents and the simulated cluster) rule ids
that name exactly the rules of the per-rule hit family."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregator.catalog.index import Catalog
from aggregator.datastore.objects import object_from_manifest
from aggregator.metrics.policy_info import (
    RULE_INFO,
    RULE_INFO_LABELS,
    PolicyInfoCollector,
    is_canary,
    policy_info_rows,
    rule_info_rows,
)
from aggregator.metrics.rule_text import MAX_LABEL_CHARS, bounded, rule_text
from calico_accountant_cli.demo.store import ClusterStore
from tests.support.deployment import Deployment
from tests.support.processes import Processes, processes
from tests.support.scrape import metric_samples
from tests.support.simulated import NODE_RULE, SimulatedCluster


def _policy(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "shop", **metadata},
        "spec": spec,
    }


def _catalog(*documents: dict[str, Any]) -> Catalog:
    objects = [object_from_manifest(d) for d in documents]
    return Catalog.from_objects([o for o in objects if o is not None])


def test_rule_text_renders_every_field_short() -> None:
    text = rule_text(
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {
                "selector": "app == 'frontend'",
                "namespaceSelector": "team == 'web'",
                "nets": ["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "100.64.0.0/10", "169.254.0.0/16"],
                "ports": [1024],
            },
            "destination": {
                "ports": [80, "8000:8100"],
                "notPorts": [8080],
                "serviceAccounts": {"names": ["api"]},
            },
        }
    )
    assert text.action == "allow"
    assert text.protocol == "tcp"
    assert text.ports == "80,8000:8100,!8080"
    assert text.source == (
        "sel=app == 'frontend'; ns=team == 'web'; "
        "nets=10.0.0.0/8,192.168.0.0/16,172.16.0.0/12,100.64.0.0/10,+1; ports=1024"
    )
    assert text.destination == "sa=api"


def test_rule_text_any_icmp_and_bad_types() -> None:
    assert rule_text({"action": "Deny"}) == rule_text({"action": "deny"})
    any_rule = rule_text({"action": "Deny"})
    assert (any_rule.protocol, any_rule.ports, any_rule.source, any_rule.destination) == ("", "", "", "")
    icmp = rule_text({"action": "Log", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}, "ipVersion": 4})
    assert (icmp.action, icmp.protocol) == ("log", "icmp type=8/0 ipv4")
    assert rule_text({"action": "Pass", "notProtocol": "UDP"}).protocol == "!udp"
    broken = rule_text({"action": 3, "protocol": [1], "source": "x", "destination": {"nets": {"a": 1}}})
    assert (broken.action, broken.protocol, broken.source, broken.destination) == ("?", "?", "?", "nets=?")
    assert rule_text("not a rule").action == "?"


def test_long_values_are_bounded() -> None:
    selector = " || ".join(f"app == 'service-{i}'" for i in range(50))
    text = rule_text({"action": "Allow", "source": {"selector": selector}})
    assert len(text.source) == MAX_LABEL_CHARS
    assert text.source.endswith("...")
    assert text.source.startswith("sel=app == 'service-0' || app == 'service-1'")
    assert bounded("a\n  b") == "a b"


def test_rows_follow_types_order_and_canary_marks() -> None:
    catalog = _catalog(
        _policy(
            "allow-web",
            {
                "order": 100,
                "selector": "app == 'web'",
                "types": ["Ingress"],
                "ingress": [{"action": "Allow", "protocol": "TCP"}, {"action": "Deny"}],
                "egress": [{"action": "Allow"}],  # not rendered: types says Ingress only
            },
        ),
        _policy(
            "canary",
            {
                "order": 1500.5,
                "selector": "all()",
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
            },
            labels={"calico-accountant.io/canary": "true"},
        ),
        _policy("annotated", {"selector": "all()"}, annotations={"calico-accountant.io/canary": "True"}),
        _policy("not-canary", {"selector": "all()"}, labels={"calico-accountant.io/canary": "no"}),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "StagedNetworkPolicy",
            "metadata": {"name": "staged", "namespace": "shop"},
            "spec": {"selector": "all()", "ingress": [{"action": "Allow"}]},
        },
    )
    policies = {row[3]: row for row in policy_info_rows(catalog)}
    assert set(policies) == {"allow-web", "canary", "annotated", "not-canary"}
    assert policies["allow-web"] == (
        "default",
        "NetworkPolicy",
        "shop",
        "allow-web",
        "100",
        "app == 'web'",
        "false",
    )
    assert policies["canary"][4:] == ("1500.5", "all()", "true")
    assert policies["annotated"][6] == "true"
    assert policies["not-canary"][6] == "false"
    rules = [dict(zip(RULE_INFO_LABELS, row, strict=True)) for row in rule_info_rows(catalog)]
    keys = [(r["policy"], r["direction"], r["rule"], r["action"]) for r in rules]
    assert keys == [
        ("allow-web", "ingress", "0", "allow"),
        ("allow-web", "ingress", "1", "deny"),
        ("canary", "ingress", "0", "allow"),
        ("canary", "egress", "0", "allow"),
    ]


def test_is_canary_ignores_other_values() -> None:
    document = _policy("p", {}, labels={"calico-accountant.io/canary": "false"})
    obj = object_from_manifest(document)
    assert obj is not None and not is_canary(obj)


def test_collector_renders_once_per_catalog() -> None:
    first = _catalog(_policy("a", {"ingress": [{"action": "Allow"}]}))
    current = [first]
    collector = PolicyInfoCollector(lambda: current[0])
    families = {f.name: f for f in collector.collect()}
    assert [s.labels["policy"] for s in families[RULE_INFO].samples] == ["a"]
    rows_before = collector._rows()
    assert collector._rows()[1] is rows_before[1]  # same catalog: not rendered again
    current[0] = _catalog(_policy("b", {"ingress": [{"action": "Deny"}]}))
    families = {f.name: f for f in collector.collect()}
    assert [(s.labels["policy"], s.labels["action"]) for s in families[RULE_INFO].samples] == [("b", "deny")]
    without_rules = PolicyInfoCollector(lambda: current[0], rules=False)
    assert [f.name for f in without_rules.collect()] == ["calico_accountant_policy_info"]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_rule_ids_match_the_per_rule_hit_family(run: Processes, tmp_path: Path) -> None:
    """Every per-rule hit series of a real aggregator (agents reading the simulated cluster)
    has exactly one rule-info series with the same policy, direction, rule id and action."""
    with ClusterStore(None) as store:
        deployment = Deployment.of(run, SimulatedCluster(tmp_path, store))
        deployment.start()
        deployment.start_agents()
        text = deployment.step("traffic", rounds=2)
        text = deployment.served.scrape()
    hits = metric_samples(text, NODE_RULE)
    info = metric_samples(text, RULE_INFO)
    assert hits and info
    key_labels = ("tier", "policy_kind", "policy_namespace", "policy", "direction", "rule")
    described = {}
    for labels, value in info.items():
        found = dict(labels)
        assert value == 1
        key = tuple(found[name] for name in key_labels)
        assert key not in described, f"two info series for {key}"
        described[key] = found
    for labels in hits:
        found = dict(labels)
        key = tuple(found[name] for name in key_labels)
        assert key in described, f"rule hit {found} has no rule info"
        assert described[key]["action"] == found["action"]
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert "error" not in checked.stdout.lower() + checked.stderr.lower(), checked.stdout + checked.stderr


def test_kdd_calico_policies_keep_their_rules_and_canary_mark() -> None:
    """A Calico policy CRD read from the Kubernetes API (KDD) keeps its rules and the canary
    label; other labels and annotations are not kept."""
    from aggregator.datastore.kdd_objects import KubeTranslator

    body = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "default.canary",
            "namespace": "shop",
            "labels": {"calico-accountant.io/canary": "true", "team": "web"},
            "annotations": {"note": "dropped"},
        },
        "spec": {
            "tier": "default",
            "order": 1500,
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
        },
    }
    obj = KubeTranslator().document(body)
    assert obj is not None
    assert dict(obj.labels) == {"calico-accountant.io/canary": "true"}
    catalog = Catalog.from_objects([obj])
    assert policy_info_rows(catalog) == [
        ("default", "NetworkPolicy", "shop", "canary", "1500", "all()", "true")
    ]
    rows = [dict(zip(RULE_INFO_LABELS, row, strict=True)) for row in rule_info_rows(catalog)]
    assert [(r["direction"], r["rule"], r["action"], r["protocol"], r["ports"]) for r in rows] == [
        ("ingress", "0", "allow", "tcp", "80")
    ]


def test_kdd_kubernetes_network_policy_keeps_the_canary_annotation() -> None:
    from aggregator.datastore.kdd_objects import KubeTranslator

    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "canary",
            "namespace": "shop",
            "annotations": {"calico-accountant.io/canary": "true", "other": "x"},
        },
        "spec": {"podSelector": {}, "ingress": [{}]},
    }
    obj = KubeTranslator().document(body)
    assert obj is not None
    rows = policy_info_rows(Catalog.from_objects([obj]))
    assert rows == [("default", "KubernetesNetworkPolicy", "shop", "canary", "1000", "", "true")]
