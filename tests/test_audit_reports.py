"""The audit's pure parts on hand-made observations: each report's edge cases, ``--fail-on``,
the formats, and the ``--server`` source's reading of a ``SnapshotResponse``.  (The real
Prometheus and aggregator runs are in ``test_audit_prometheus.py``.)"""

from __future__ import annotations

import json

import pytest

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.audit.canaries import canary_report
from calico_accountant_cli.audit.changes import change_report
from calico_accountant_cli.audit.command import _threshold
from calico_accountant_cli.audit.default_deny import default_deny_report
from calico_accountant_cli.audit.denies import deny_report
from calico_accountant_cli.audit.findings import Category, FailOnError, counts, fails, parse_fail_on
from calico_accountant_cli.audit.formatting import OutputFormat, format_report, report_json
from calico_accountant_cli.audit.model import (
    CanaryStatus,
    Observations,
    PolicyInfo,
    PolicyKey,
    PolicyTraffic,
    RuleInfo,
    RuleKey,
    UnusedReason,
    WorkloadDrop,
)
from calico_accountant_cli.audit.prometheus_source import SourceError, check_window
from calico_accountant_cli.audit.report import AuditOptions, build_report
from calico_accountant_cli.audit.server_source import observations_from_snapshot
from calico_accountant_cli.audit.unused import unused_policies, unused_rules

WEB = PolicyKey("default", "NetworkPolicy", "shop", "allow-web")
CANARY = PolicyKey("default", "NetworkPolicy", "shop", "canary")
IDLE = PolicyKey("default", "GlobalNetworkPolicy", "", "idle-canary")
GONE = PolicyKey("default", "NetworkPolicy", "shop", "selects-nothing")
DENY = PolicyKey("security", "GlobalNetworkPolicy", "", "deny-db")
GROUP = PolicyKey("default", "PolicyGroup", "shop", "a+b")


def _observations() -> Observations:
    obs = Observations(window="7d", source="test")
    obs.policies = {
        WEB: PolicyInfo("100", "app == 'web'"),
        CANARY: PolicyInfo("1500", "all()", canary=True),
        IDLE: PolicyInfo("1500", "all()"),
        GONE: PolicyInfo("10", "app == 'none'"),
        DENY: PolicyInfo("1", "all()"),
    }
    obs.rules = {
        RuleKey(WEB, "ingress", 0): RuleInfo("allow", "tcp", "80"),
        RuleKey(WEB, "ingress", 1): RuleInfo("allow", "tcp", "81"),
        RuleKey(WEB, "egress", 0): RuleInfo("allow"),
        RuleKey(CANARY, "ingress", 0): RuleInfo("allow"),
        RuleKey(IDLE, "ingress", 0): RuleInfo("allow"),
        RuleKey(GONE, "ingress", 0): RuleInfo("deny"),
        RuleKey(DENY, "ingress", 0): RuleInfo("deny"),
    }
    obs.traffic = [
        PolicyTraffic(WEB, "shop", "web", "ingress", "accept", 10),
        PolicyTraffic(CANARY, "shop", "web", "ingress", "accept", 3),
        PolicyTraffic(CANARY, "shop", "api", "ingress", "accept", 5),
        PolicyTraffic(CANARY, "shop", "db", "ingress", "accept", 0),
        PolicyTraffic(IDLE, "shop", "web", "ingress", "accept", 0),
        PolicyTraffic(DENY, "shop", "db", "ingress", "deny", 7),
        PolicyTraffic(DENY, "payments", "ledger", "ingress", "deny", 2),
        PolicyTraffic(GROUP, "shop", "web", "ingress", "accept", 0),
    ]
    for row in obs.traffic:
        key = (row.policy, row.direction, row.verdict)
        obs.policy_totals[key] = obs.policy_totals.get(key, 0) + row.packets
    obs.rule_hits = {
        (RuleKey(WEB, "ingress", 0), "allow"): 10,
        (RuleKey(WEB, "ingress", 1), "allow"): 0,
        (RuleKey(CANARY, "ingress", 0), "allow"): 8,
        (RuleKey(IDLE, "ingress", 0), "allow"): 0,
        (RuleKey(DENY, "ingress", 0), "deny"): 9,
    }
    obs.drops = [
        WorkloadDrop("shop", "web", "ingress", "default", 4),
        WorkloadDrop("shop", "web", "egress", "default", 0),
        WorkloadDrop("shop", "db", "ingress", "security", 1),
    ]
    obs.previous_accepts = {WEB: 40, CANARY: 8, IDLE: 0, GROUP: 5}
    return obs


def test_canaries_hit_covered_not_rendered_and_not_found() -> None:
    obs = _observations()
    entries = canary_report(obs, ["idle-canary", "shop/selects-nothing", "nope/missing"])
    got = [(e.policy.name, e.status, e.namespace, e.app, e.packets) for e in entries]
    assert got == [
        ("idle-canary", CanaryStatus.COVERED, "", "", 0),
        ("canary", CanaryStatus.HIT, "shop", "api", 5),
        ("canary", CanaryStatus.HIT, "shop", "web", 3),
        ("selects-nothing", CanaryStatus.NOT_RENDERED, "", "", 0),
        ("missing", CanaryStatus.NOT_FOUND, "", "", 0),
    ]
    assert entries[-1].policy.namespace == "nope"


def test_a_grouped_canary_is_hit_by_its_rule_counters() -> None:
    """In a policy group the per-workload accepts are the group's; the canary's own allow
    rule counters still say it accepted traffic."""
    obs = _observations()
    obs.traffic = [row for row in obs.traffic if row.policy != CANARY]
    entries = [e for e in canary_report(obs, []) if e.policy == CANARY]
    assert [(e.status, e.namespace, e.app, e.packets) for e in entries] == [(CanaryStatus.HIT, "", "", 8)]


def test_canary_names_match_name_namespace_and_tier() -> None:
    assert (
        CANARY.matches("canary") and CANARY.matches("shop/canary") and CANARY.matches("default/shop/canary")
    )
    assert not CANARY.matches("other/canary")
    assert IDLE.matches("default/idle-canary")


def test_unused_policies_tell_the_three_reasons_apart() -> None:
    obs = _observations()
    obs.policies[PolicyKey("default", "GlobalNetworkPolicy", "", "no-rules")] = PolicyInfo()
    obs.traffic.append(
        PolicyTraffic(
            PolicyKey("default", "GlobalNetworkPolicy", "", "no-rules"), "shop", "web", "ingress", "deny", 0
        )
    )
    got = {(u.policy.name, u.reason) for u in unused_policies(obs)}
    assert got == {
        ("idle-canary", UnusedReason.NO_TRAFFIC),
        ("selects-nothing", UnusedReason.NOT_RENDERED),
        ("no-rules", UnusedReason.NO_RULES),
    }  # groups are not audited; canary, allow-web and deny-db moved


def test_unused_rules_rendered_or_not() -> None:
    got = [
        (u.rule.policy.name, u.rule.direction, u.rule.rule, u.reason) for u in unused_rules(_observations())
    ]
    assert got == [
        ("idle-canary", "ingress", 0, UnusedReason.NO_TRAFFIC),
        ("allow-web", "egress", 0, UnusedReason.NOT_RENDERED),
        ("allow-web", "ingress", 1, UnusedReason.NO_TRAFFIC),
        ("selects-nothing", "ingress", 0, UnusedReason.NOT_RENDERED),
    ]


def test_without_the_datastore_view_only_seen_counters_are_judged() -> None:
    obs = _observations()
    obs.policies, obs.rules = {}, {}
    assert {u.policy.name for u in unused_policies(obs)} == {"idle-canary"}
    assert [(u.rule.policy.name, u.rule.rule, u.reason) for u in unused_rules(obs)] == [
        ("idle-canary", 0, UnusedReason.NO_TRAFFIC),
        ("allow-web", 1, UnusedReason.NO_TRAFFIC),
    ]
    assert [e.status for e in canary_report(obs, [])] == []  # no label without the datastore


def test_default_deny_lists_the_selecting_policies_of_the_tier() -> None:
    entries = default_deny_report(_observations())
    got = [
        (e.namespace, e.app, e.direction, e.tier, e.packets, [p.name for p in e.policies]) for e in entries
    ]
    assert got == [
        ("shop", "web", "ingress", "default", 4, ["idle-canary", "allow-web", "canary", "a+b"]),
        ("shop", "db", "ingress", "security", 1, ["deny-db"]),
    ]


def test_denies_cluster_rules_and_namespaces_with_top() -> None:
    entries = deny_report(_observations(), top=1)
    got = [(e.scope.value, e.policy.name, e.rule, e.direction, e.namespace, e.packets) for e in entries]
    assert got == [
        ("cluster", "deny-db", None, "", "", 9),
        ("cluster", "deny-db", 0, "ingress", "", 9),
        ("namespace", "deny-db", None, "", "payments", 2),
        ("namespace", "deny-db", None, "", "shop", 7),
    ]


def test_changes_over_the_threshold_only() -> None:
    obs = _observations()
    got = [(c.policy.name, c.packets, c.previous_packets) for c in change_report(obs, 0.5)]
    assert got == [("allow-web", 10, 40)]  # 75% fall; canary 8 -> 8; idle had none; groups skipped
    assert change_report(obs, 0.75) == ()
    obs.previous_accepts = None
    assert change_report(obs, 0.0) == ()


def test_fail_on_and_counts() -> None:
    assert parse_fail_on("all") == frozenset(Category)
    assert parse_fail_on("none") == frozenset()
    assert parse_fail_on(" Canary-Hit , default-deny") == {Category.CANARY_HIT, Category.DEFAULT_DENY}
    with pytest.raises(FailOnError, match="unknown everything"):
        parse_fail_on("everything")
    report = build_report(_observations(), AuditOptions(canaries=("missing",)))
    found = counts(report)
    assert found[Category.CANARY_HIT] == 2 and found[Category.CANARY_MISSING] == 1
    assert fails(report, frozenset({Category.CHANGE}))
    empty = build_report(Observations(window="7d", source="t", previous_accepts={}), AuditOptions())
    assert not fails(empty, parse_fail_on("all"))
    assert empty.notes and "policy_info" in empty.notes[0]


def test_threshold_and_window_parsing() -> None:
    assert _threshold("50%") == 0.5 and _threshold("0.25") == 0.25
    for bad in ("x", "150%", "-1"):
        with pytest.raises(ValueError, match="--threshold"):
            _threshold(bad)
    assert check_window("1h30m") == "1h30m"
    with pytest.raises(SourceError, match="--window"):
        check_window("7 days")


def test_formats_agree() -> None:
    report = build_report(_observations(), AuditOptions(canaries=()))
    document = json.loads(format_report(report, OutputFormat.JSON))
    assert document == json.loads(json.dumps(report_json(report)))
    for section in ("canaries", "unused_policies", "unused_rules", "default_deny", "denies", "changes"):
        assert document[section], section
        for entry in document[section]:
            assert {"tier", "policy_kind", "policy_namespace", "policy"} <= set(entry), section
    rule = next(
        r for r in document["unused_rules"] if r["policy"] == "allow-web" and r["reason"] == "no_traffic"
    )
    assert (rule["action"], rule["ports"]) == ("allow", "81")
    table = format_report(report, OutputFormat.TABLE)
    markdown = format_report(report, OutputFormat.MARKDOWN)
    assert "== Changes (1)" in table and "## Changes (1)" in markdown
    assert "allow tcp 81 from any to any" in table
    assert "| default | NetworkPolicy | shop/allow-web | 10 | 40 | 75% |" in markdown


def test_server_source_reads_snapshot_totals() -> None:
    response = hpb.SnapshotResponse()
    policy = hpb.PolicyRef(kind="NetworkPolicy", namespace="shop", name="allow-web", tier="default")
    for pod, packets in (("web-1", 3), ("web-2", 4)):
        response.totals.append(
            hpb.Hit(
                namespace="shop",
                pod=pod,
                app="web",
                direction=spb.INGRESS,
                verdict="accept",
                kind=spb.POLICY_ACCEPT,
                policy=policy,
                packets=packets,
                tier="default",
            )
        )
    response.totals.append(
        hpb.Hit(
            direction=spb.INGRESS,
            kind=spb.POLICY_RULE,
            policy=policy,
            rule=hpb.RuleRef(index=2, action="allow"),
            packets=9,
        )
    )
    response.totals.append(
        hpb.Hit(
            namespace="shop",
            app="db",
            direction=spb.EGRESS,
            kind=spb.NO_POLICY_DROP,
            tier="security",
            packets=5,
        )
    )
    obs = observations_from_snapshot(response, "aggregator x")
    key = PolicyKey("default", "NetworkPolicy", "shop", "allow-web")
    assert obs.traffic == [PolicyTraffic(key, "shop", "web", "ingress", "accept", 7)]
    assert obs.policy_totals == {(key, "ingress", "accept"): 7}
    assert obs.rule_hits == {(RuleKey(key, "ingress", 2), "allow"): 9}
    assert obs.drops == [WorkloadDrop("shop", "db", "egress", "security", 5)]
    assert obs.previous_accepts is None
