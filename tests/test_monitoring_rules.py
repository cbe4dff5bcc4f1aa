"""deploy/monitoring's rules: valid for the real promtool, every alert unit-tested with promtool
(fired and quiet), the unit tests' input series shaped like the aggregator's real exposition as
the ServiceMonitor scrapes it, every series name the rules use exposed by the aggregator, and
the PrometheusRule generated from the plain rule file."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.exposition import aggregator_exposition, label_sets
from tests.support.kustomize import find, kustomize
from tests.support.monitoring import (
    MONITORING,
    RULES,
    RULES_TEST,
    exposed_everywhere,
    load_yaml,
    rules,
)
from tests.support.processes import REPO
from tests.support.promql import metric_names, parse_series
from tests.support.skips import requires_tools

TARGET_LABELS = {"container", "endpoint", "instance", "job", "service"}
"""What the Prometheus operator adds to every series of a ServiceMonitor's target (with
honorLabels the series' own win); `namespace` too where the series has none, `pod` is dropped."""


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=MONITORING, check=False
    )


@requires_tools("promtool")
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@requires_tools("promtool")
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@requires_tools("promtool")
def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A threshold changed in the rules makes promtool's tests fail: they test something."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("> 1\n", "> 100\n"))
    (tmp_path / RULES_TEST.name).write_text(RULES_TEST.read_text())
    result = subprocess.run(
        ["promtool", "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0 and "CalicoAccountantNoPolicyDrops" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, list[list[Any]]] = {}
    for test in load_yaml(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    alerts = [rule["alert"] for rule in rules() if "alert" in rule]
    assert len(alerts) >= 8
    for alert in alerts:
        assert any(cases.get(alert, [])), f"{alert}: no test where it fires"
        assert any(not expected for expected in cases.get(alert, [])), (
            f"{alert}: no test where it stays quiet"
        )


def test_every_recording_rule_is_tested() -> None:
    tested = {
        expression["expr"]
        for test in load_yaml(RULES_TEST)["tests"]
        for expression in test.get("promql_expr_test", [])
    }
    for rule in rules():
        if "record" in rule:
            assert rule["record"] in tested, rule["record"]


def test_the_input_series_are_shaped_like_the_aggregators_exposition(tmp_path: Path) -> None:
    shapes = label_sets(aggregator_exposition(tmp_path))
    monitor = load_yaml(MONITORING / "servicemonitor.yaml")
    endpoint = monitor["spec"]["endpoints"][0]
    instance = next(r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "instance")
    service = find(kustomize(REPO / "deploy" / "base"), "Service")["metadata"]["name"]
    checked = 0
    for test in load_yaml(RULES_TEST)["tests"]:
        for item in test["input_series"]:
            name, labels = parse_series(item["series"])
            assert name in shapes, f"{name} is not in the aggregator's exposition"
            own = (
                frozenset(labels)
                - TARGET_LABELS
                - ({"namespace"} if labels.get("namespace") == "calico-accountant" else set())
            )
            assert own in shapes[name], (
                f"{item['series']}: the aggregator exposes {sorted(map(sorted, shapes[name]))}"
            )
            assert labels.keys() >= TARGET_LABELS and "namespace" in labels, item["series"]
            assert (labels["instance"], labels["job"], labels["service"]) == (instance, service, service)
            assert labels["endpoint"] == endpoint["port"]
            checked += 1
    assert checked >= 15


def test_every_series_the_rules_use_is_exposed() -> None:
    exposed = exposed_everywhere()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = set()
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.add(name)
            if ":" in name:
                assert name in recorded, f"{name}: no recording rule defines it"
            else:
                assert name in exposed, f"{rule.get('alert') or rule.get('record')}: {name} is not exposed"
    assert {"calico_accountant_node_connected", "calico_accountant_ingest_rejected_total"} <= used


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_prometheus_rule", REPO / "scripts" / "gen_prometheus_rule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_is_generated_from_the_rule_file() -> None:
    """Run scripts/gen_prometheus_rule.py when this fails."""
    generated = _generator().render(RULES.read_text())
    assert (MONITORING / "prometheusrule.yaml").read_text() == generated
    assert load_yaml(MONITORING / "prometheusrule.yaml")["spec"]["groups"] == load_yaml(RULES)["groups"]


@pytest.mark.parametrize("name", ["namespace", "pod", "node"])
def test_the_service_monitor_honours_the_aggregators_labels(name: str) -> None:
    """The labels the queries group by are the aggregator's own: honorLabels keeps them."""
    monitor = load_yaml(MONITORING / "servicemonitor.yaml")
    assert all(endpoint["honorLabels"] is True for endpoint in monitor["spec"]["endpoints"])
    with tempfile.TemporaryDirectory() as directory:
        shapes = label_sets(aggregator_exposition(Path(directory)))
    assert any(name in shape for shape in shapes["calico_accountant_workload_policy_packets_total"])
