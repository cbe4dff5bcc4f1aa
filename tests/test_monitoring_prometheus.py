"""deploy/monitoring's rules in a real Prometheus, on a real aggregator's series: a real
aggregator process (the sample cluster as its file datastore) and two agent processes
reading the sample nodes' tables, whose counters the test advances; Prometheus scrapes it as
the ServiceMonitor does (honor_labels, the target's own namespace and pod attached) and
evaluates the rules every second.

It shows what promtool's unit tests cannot: every rule evaluates without error on the real
label sets (no vector-matching surprise), the per-app recording rules group by the workloads'
namespaces -- not the aggregator's, which the self-metrics get -- and the no-policy drop
alerts go pending on the sample cluster's default-deny drops."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from aggregator.catalog.index import Catalog
from aggregator.datastore.file import decode_text
from tests.support.dumps import scale_dump, with_counters, write_atomic
from tests.support.monitoring import RULES, load_yaml
from tests.support.ports import free_port
from tests.support.processes import processes
from tests.support.prometheus_server import SKIP_REASON, PrometheusServer, prometheus_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not prometheus_available(), reason=SKIP_REASON)]

SAMPLE = resources.files("calico_accountant_cli").joinpath("sample")
NODES = ("node-a", "node-b")
TARGET = {"namespace": "calico-accountant", "pod": "calico-accountant-aggregator-0"}
"""What the operator attaches to the aggregator's target."""


def test_the_rules_evaluate_on_a_real_aggregators_series(tmp_path: Path) -> None:
    rules = load_yaml(RULES)
    for group in rules["groups"]:
        group.pop("interval", None)  # evaluate every second (the global interval), not every minute
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    cluster = SAMPLE.joinpath("cluster.yaml")
    workloads = Catalog.from_objects(decode_text(cluster.read_text()).objects).workloads()
    tables = {node: with_counters(SAMPLE.joinpath(f"{node}.v3.30.save").read_text()) for node in NODES}
    factor = 1

    def advance() -> None:
        """Every counter up by 50 times its base: drops of several packets a second."""
        nonlocal factor
        factor += 50
        for node, text in tables.items():
            write_atomic(tmp_path / f"{node}.save", scale_dump(text, factor))

    advance()
    grpc, metrics = free_port(), free_port()
    with processes(tmp_path) as group:
        group.aggregator(grpc, metrics, "--datastore", f"file:{cluster}")
        for node in NODES:
            group.agent(node, grpc, [f"cat {tmp_path / f'{node}.save'}"], "--interval", "0.5", "--no-ipv6")
        with PrometheusServer(
            [f"127.0.0.1:{metrics}"], job={"honor_labels": True}, target_labels=TARGET, rule_files=[rule_file]
        ) as prometheus:
            prometheus.wait_for_target_up(timeout=60)

            def apps(expression: str) -> set[tuple[str, str]]:
                return {(labels["namespace"], labels["app"]) for labels, _ in prometheus.query(expression)}

            def every_app_over_the_threshold_is_pending() -> bool:
                """The recording and alerting groups are evaluated apart: wait until they agree."""
                advance()
                over = apps("namespace_app:calico_accountant_no_policy_drop_packets:rate5m > 1")
                pending = apps('ALERTS{alertname="CalicoAccountantNoPolicyDrops",alertstate="pending"}')
                return bool(over) and pending == over

            prometheus.wait_for(every_app_over_the_threshold_is_pending, timeout=90, interval=1)
            recorded = apps("namespace_app:calico_accountant_no_policy_drop_packets:rate5m")
            assert recorded and recorded <= {
                (w.namespace, w.app) for w in workloads
            }  # the workloads', not ours
            # Series without a namespace of their own take the target's.
            connected = prometheus.query("calico_accountant_node_connected")
            assert {labels["node"] for labels, _ in connected} == set(NODES)
            assert {labels["namespace"] for labels, _ in connected} == {TARGET["namespace"]}

            def all_evaluated() -> bool:
                return all(rule.get("lastEvaluation", "").startswith("2") for rule in prometheus.rules())

            prometheus.wait_for(all_evaluated, timeout=30)
            states = {
                rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in prometheus.rules()
            }
            assert len(states) == sum(len(g["rules"]) for g in rules["groups"])
            assert all(health == "ok" for health, _ in states.values()), states
