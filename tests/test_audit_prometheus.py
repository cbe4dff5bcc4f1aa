"""``calico-accountant audit`` against real components: a real aggregator (agents reading the
simulated cluster, :mod:`tests.support.audit_scenario`) scraped at 15 moments of a two-week
scenario, its expositions backfilled with those timestamps into a real Prometheus by
``promtool``; and the same aggregator read directly with ``--server``.

Each section of every output format must say exactly what the cluster and the traffic
oracle say: a canary that saw traffic and one that did not, an unused rule (rendered, no
traffic) and one that can never match (its policy selects nothing), default-deny drops, a
policy whose accepts fell; and the exit status must follow ``--fail-on``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.audit_scenario import (
    CANARY_BY_FLAG,
    REDUCED_PLAN,
    LabelledFileStore,
    Window,
    expected_sections,
    scenario_cluster,
    window,
)
from tests.support.backfill import backfill, openmetrics_history, promtool_available
from tests.support.deployment import Deployment
from tests.support.processes import cli, processes
from tests.support.prometheus_server import SKIP_REASON, PrometheusServer, prometheus_available
from tests.support.simulated import EXACT, SimulatedCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not prometheus_available(), reason=SKIP_REASON),
    pytest.mark.skipif(not promtool_available(), reason="promtool not installed (Debian package prometheus)"),
]

DAY = 86400.0
SECTIONS = ("canaries", "unused_policies", "unused_rules", "default_deny", "denies", "changes")


@dataclass
class Scenario:
    prometheus: PrometheusServer
    app_level: PrometheusServer
    """The same history without the per-workload families (an aggregator with
    ``--levels app,node,cluster``)."""
    end: float
    """The last scrape's timestamp: the audit's ``--at``."""
    middle: float
    expected: dict[str, list[dict[str, Any]]]
    first_week: dict[str, list[dict[str, Any]]]
    server_json: dict[str, Any]
    server_status: int
    server_expected: dict[str, list[dict[str, Any]]]

    def audit(self, *args: str, at: float | None = None, app_level: bool = False) -> tuple[int, str]:
        moment = self.end if at is None else at
        done = cli(
            "audit",
            "--prometheus",
            (self.app_level if app_level else self.prometheus).url,
            "--window",
            "7d",
            "--at",
            f"{moment:.3f}",
            "--canary",
            CANARY_BY_FLAG,
            *args,
        )
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, done.stdout


def _frozen(expected: Any) -> Window:
    return {family: Counter(expected.want(family)) for family in EXACT}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    directory = tmp_path_factory.mktemp("audit")
    cluster = scenario_cluster()
    scrapes: list[tuple[float, str]] = []
    with processes(directory) as run:
        sim = SimulatedCluster(directory, LabelledFileStore(directory / "cluster.yaml"))
        sim.rerender(cluster)
        sim.publish()
        deployment = Deployment.of(run, sim, "--levels", "workload,app,node,cluster")
        deployment.start()
        deployment.start_agents()
        end = float(int(time.time()) - 600)
        scrapes.append((end - 14 * DAY, deployment.served.wait_exact(sim.expected, "baseline")))
        week: list[Window] = []
        for day in range(1, 15):
            sim.traffic(1, plan=REDUCED_PLAN) if day > 7 else sim.traffic(1)
            scrapes.append((end - (14 - day) * DAY, deployment.served.wait_exact(sim.expected, f"day {day}")))
            if day in (7, 14):
                week.append(_frozen(sim.expected))
        done = cli("audit", "--server", deployment.served.target, "-o", "json", "--canary", CANARY_BY_FLAG)
        assert done.returncode in (0, 1), done.stderr
        server_json, server_status = json.loads(done.stdout), done.returncode
        for agent in deployment.agents.values():
            agent.stop()
    prometheus = PrometheusServer(targets=[], retention="60d")
    app_level = PrometheusServer(targets=[], retention="60d")
    try:
        backfill(openmetrics_history(scrapes), prometheus.data_path)
        backfill(openmetrics_history(scrapes, exclude=("calico_accountant_workload_",)), app_level.data_path)
        prometheus.start()
        app_level.start()
        yield Scenario(
            prometheus=prometheus,
            app_level=app_level,
            end=end,
            middle=end - 7 * DAY,
            expected=expected_sections(cluster, window(week[1], week[0]), window(week[0])),
            first_week=expected_sections(cluster, window(week[0]), None),
            server_json=server_json,
            server_status=server_status,
            server_expected=expected_sections(cluster, window(week[1]), None, with_datastore=False),
        )
    finally:
        prometheus.close()
        app_level.close()


def _subset(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = set().union(*(w.keys() for w in want)) if want else set()
    return [{k: g.get(k) for k in keys} for g in got] if want else got


def test_scenario_has_every_kind_of_finding(scenario: Scenario) -> None:
    """The oracle says the scenario is what the module promises (else the checks below are weak)."""
    want = scenario.expected
    statuses = {c["policy"]: c["status"] for c in want["canaries"]}
    assert statuses == {"canary-catalog": "hit", "canary-payments-api": "covered"}
    reasons = {(r["policy"], r["rule"], r["reason"]) for r in want["unused_rules"]}
    assert ("never-selected", 0, "not_rendered") in reasons
    assert ("allow-checkout-to-payments-api", 1, "no_traffic") in reasons
    assert ("allow-checkout-to-payments-api", 0, "no_traffic") not in reasons
    assert any(d["app"] == "cart" for d in want["default_deny"])
    assert [c["policy"] for c in want["changes"]] == ["allow-api-to-ledger-db"]


def test_json_reports_every_section_exactly(scenario: Scenario) -> None:
    status, out = scenario.audit("-o", "json")
    got = json.loads(out)
    assert status == 1
    assert got["window"] == "7d"
    for section in SECTIONS:
        assert _subset(got[section], scenario.expected[section]) == scenario.expected[section], section
    rule = next(r for r in got["unused_rules"] if r["policy"] == "allow-checkout-to-payments-api")
    assert (rule["action"], rule["protocol"], rule["ports"]) == ("allow", "tcp", "9999")
    assert "sel=app == 'checkout'" in rule["source"]


def test_app_level_history_gives_the_same_report(scenario: Scenario) -> None:
    """Without the per-workload families the audit reads the app level: the same findings."""
    assert (
        scenario.app_level.query("count(calico_accountant_workload_policy_packets_total)", at=scenario.end)
        == []
    )
    assert scenario.app_level.query("count(calico_accountant_app_policy_packets_total)", at=scenario.end)
    assert scenario.prometheus.query(
        "count(calico_accountant_workload_policy_packets_total)", at=scenario.end
    )
    status, out = scenario.audit("-o", "json", app_level=True)
    got = json.loads(out)
    assert status == 1
    for section in SECTIONS:
        assert _subset(got[section], scenario.expected[section]) == scenario.expected[section], section


def test_first_week_has_no_changes(scenario: Scenario) -> None:
    """At the end of the first week there is no week before it: no changes, exit 0 on them."""
    status, out = scenario.audit("-o", "json", "--fail-on", "change", at=scenario.middle)
    got = json.loads(out)
    assert status == 0
    assert got["changes"] == []
    for section in ("canaries", "unused_policies", "default_deny", "denies"):
        assert _subset(got[section], scenario.first_week[section]) == scenario.first_week[section], section


def _table_sections(text: str, marker: str) -> dict[str, str]:
    """Section title -> its lines (a section starts at a line that starts with ``marker``)."""
    parts: dict[str, str] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith(marker):
            title = line[len(marker) :].rsplit(" (", 1)[0]
            parts[title] = line[len(marker) :] + "\n"
        elif title:
            parts[title] += line + "\n"
    return parts


TITLES = {
    "canaries": "Canary coverage",
    "unused_policies": "Unused policies",
    "unused_rules": "Unused rules",
    "default_deny": "Default-deny drops",
    "denies": "Top denies",
    "changes": "Changes",
}


@pytest.mark.parametrize(("output", "marker"), [("table", "== "), ("markdown", "## ")])
def test_text_formats_show_every_finding(scenario: Scenario, output: str, marker: str) -> None:
    status, out = scenario.audit("-o", output)
    assert status == 1
    parts = _table_sections(out, marker)
    for section, title in TITLES.items():
        want = scenario.expected[section]
        body = parts[title]
        assert body.startswith(f"{title} ({len(want)})"), body.splitlines()[0]
        for entry in want:
            shown = (
                f"{entry['policy_namespace']}/{entry['policy']}"
                if entry["policy_namespace"]
                else entry["policy"]
            )
            assert shown in body or entry["policy"] == "", (section, shown)
    canaries = parts["Canary coverage"]
    hit = next(e for e in scenario.expected["canaries"] if e["status"] == "hit")
    assert any("hit" in line and str(hit["packets"]) in line for line in canaries.splitlines())
    if output == "markdown":
        assert "| TIER | KIND | POLICY |" in out


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("--fail-on", "none"), 0),
        (("--fail-on", "canary-hit"), 1),
        (("--fail-on", "default-deny"), 1),
        (("--fail-on", "change"), 1),
        (("--fail-on", "change", "--threshold", "100%"), 0),
        (("--fail-on", "canary-missing"), 0),
    ],
)
def test_exit_status_follows_fail_on(scenario: Scenario, args: tuple[str, ...], status: int) -> None:
    got, _ = scenario.audit(*args)
    assert got == status


def test_usage_and_connection_errors_exit_2(scenario: Scenario) -> None:
    bad_window = cli("audit", "--prometheus", scenario.prometheus.url, "--window", "7x")
    assert bad_window.returncode == 2 and "--window" in bad_window.stderr
    bad_fail_on = cli("audit", "--prometheus", scenario.prometheus.url, "--fail-on", "everything")
    assert bad_fail_on.returncode == 2 and "--fail-on" in bad_fail_on.stderr
    nowhere = cli("audit", "--prometheus", "http://127.0.0.1:9", "--timeout", "2")
    assert nowhere.returncode == 2 and "cannot reach" in nowhere.stderr
    no_source = cli("audit")
    assert no_source.returncode == 2
    not_prometheus = cli("audit", "--prometheus", scenario.prometheus.url + "/not-here")
    assert not_prometheus.returncode == 2 and "answered 404" in not_prometheus.stderr
    bad_time = cli("audit", "--prometheus", scenario.prometheus.url, "--at", "yesterday")
    assert bad_time.returncode == 2 and "answered 400" in bad_time.stderr
    no_server = cli("audit", "--server", "127.0.0.1:9", "--timeout", "2")
    assert no_server.returncode == 2 and no_server.stderr.startswith("calico-accountant audit:")
    both = cli("audit", "--server", "127.0.0.1:9", "--prometheus", scenario.prometheus.url)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_server_source_reports_the_aggregators_totals(scenario: Scenario) -> None:
    """``--server``: the same reports over everything the aggregator counted (both weeks);
    no datastore view (rendered policies only) and no previous window."""
    got = scenario.server_json
    assert scenario.server_status == 1
    assert any("previous window" in note for note in got["notes"])
    for section in SECTIONS:
        if section == "unused_rules":
            continue  # rules: checked below (the hit API has no rule texts)
        want = scenario.server_expected[section]
        assert _subset(got[section], want) == want, section
    want_rules = scenario.server_expected["unused_rules"]
    assert _subset(got["unused_rules"], want_rules) == want_rules
