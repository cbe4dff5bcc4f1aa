"""deploy/grafana's dashboard: every series its queries use is exposed by the aggregator or
the agents (or recorded by deploy/monitoring's rules), it covers what the issue asks for, it
uses its data source variable, and its panels neither share ids nor overlap."""

from __future__ import annotations

import itertools

from tests.support.monitoring import dashboard, dashboard_queries, exposed_everywhere, rules
from tests.support.promql import metric_names


def test_every_series_the_dashboard_uses_is_exposed_or_recorded() -> None:
    exposed = exposed_everywhere()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    queries = dashboard_queries(dashboard())
    used = set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no series in {expr!r}"
        for name in names:
            assert name in (recorded if ":" in name else exposed), (
                f"{where}: {name} is neither exposed nor recorded"
            )
        used |= names
    assert {
        "calico_accountant_agent_read_duration_seconds_bucket",
        "calico_accountant_node_connected",
    } <= used


def test_the_dashboard_shows_what_an_operator_asks_first() -> None:
    queries = " ".join(expr for _, expr in dashboard_queries(dashboard()))
    for wanted in (
        "calico_accountant_cluster_no_policy_drop_packets_total",  # cluster-wide drops
        'calico_accountant_workload_policy_packets_total{verdict="deny"',  # top denied workloads
        'calico_accountant_cluster_policy_packets_total{verdict="deny"}',  # top denying policies
        "calico_accountant_node_policy_rule_packets_total",  # per-rule hits
        "calico_accountant_node_last_snapshot_timestamp_seconds",  # per-node agent health
        "calico_accountant_agent_read_duration_seconds_bucket",  # read cost
    ):
        assert wanted in queries, wanted


def test_every_panel_uses_the_data_source_variable() -> None:
    board = dashboard()
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in board["templating"]["list"])
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for a, b in itertools.combinations(panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, (a["title"], b["title"])
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)
