"""Resolved, pre-aggregated series: labels, sums across levels, options, catalog changes, expiry."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregator.accountant as accountant_module
from aggregator.accountant import Accountant
from aggregator.exposition.text import render_text
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot, Increases
from aggregator.metrics import Level
from aggregator.model import (
    CounterNames,
    PolicyGroup,
    PolicyIdentity,
    PolicyKind,
    ProfileIdentity,
    WorkloadIdentity,
)
from aggregator.series.options import SeriesOptions, parse_labels, parse_levels
from aggregator.series.routes import NodeRoutes
from aggregator.series.state import SeriesState
from aggregator.series.views import Hits, StateView
from calico_accountant.records import CounterRecord, Kind
from tests.support.accounting import (
    EGRESS,
    FakeCatalog,
    accept,
    deny,
    no_policy_drop,
    no_profile_drop,
    policy_rule,
    profile_accept,
    snapshot,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)

Series = dict[tuple[tuple[str, str], ...], tuple[int, int]]


def by_name(view: StateView) -> dict[str, Series]:
    """Family (by its packets name) -> {sorted label pairs: (packets, bytes)}."""
    out: dict[str, Series] = {}
    for family in view.families:
        out[family.family.packets_name] = {
            tuple(sorted(zip(family.label_names, labels, strict=True))): values
            for labels, values in family.series
        }
    return out


def one(series: Series) -> tuple[dict[str, str], tuple[int, int]]:
    assert len(series) == 1, series
    labels, values = next(iter(series.items()))
    return dict(labels), values


def catalog() -> FakeCatalog:
    return (
        FakeCatalog()
        .add_pod("n1", "cali1", "shop", "web-1", "web", ["169.254.1.1"])
        .add_pod("n1", "cali2", "shop", "web-2", "web", ["169.254.1.2"])
        .add_pod("n2", "cali3", "shop", "db-1", "db", ["169.254.1.3", "2001:db8::3"])
        .add_policy("cali-pi-allow", "allow-web", "shop")
        .add_policy("cali-pi-gdeny", "deny-all", tier="security")
    )


WORKLOAD_POLICY = "calico_accountant_workload_policy_packets_total"
NODE_POLICY = "calico_accountant_node_policy_packets_total"
CLUSTER_POLICY = "calico_accountant_cluster_policy_packets_total"
APP_POLICY = "calico_accountant_app_policy_packets_total"


def test_workload_policy_series_carry_the_resolved_names() -> None:
    acct = Accountant(catalog())
    acct.apply(
        snapshot(
            "n1", [accept("cali1", "cali-pi-allow", 5), deny("cali1", "cali-pi-gdeny", 2, tier="security")]
        ),
        0,
    )
    series = by_name(acct.view(0))[WORKLOAD_POLICY]
    assert series == {
        tuple(
            sorted(
                {
                    "node": "n1",
                    "namespace": "shop",
                    "pod": "web-1",
                    "app": "web",
                    "direction": "ingress",
                    "verdict": "accept",
                    "tier": "default",
                    "policy_kind": "NetworkPolicy",
                    "policy_namespace": "shop",
                    "policy": "allow-web",
                }.items()
            )
        ): (5, 500),
        tuple(
            sorted(
                {
                    "node": "n1",
                    "namespace": "shop",
                    "pod": "web-1",
                    "app": "web",
                    "direction": "ingress",
                    "verdict": "deny",
                    "tier": "security",
                    "policy_kind": "GlobalNetworkPolicy",
                    "policy_namespace": "",
                    "policy": "deny-all",
                }.items()
            )
        ): (2, 200),
    }


def test_ipv4_and_ipv6_records_of_one_series_are_summed() -> None:
    acct = Accountant(catalog())
    acct.apply(
        snapshot("n2", [accept("cali3", "cali-pi-allow", 5), accept("cali3", "cali-pi-allow", 7, family=6)]),
        0,
    )
    labels, values = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert values == (12, 1200) and labels["pod"] == "db-1"


def test_group_chains_export_one_policy_group_series() -> None:
    cat = catalog().add_policy("cali-pi-b", "allow-b", "shop")
    acct = Accountant(cat)
    members = ("cali-pi-allow", "cali-pi-b")
    acct.apply(snapshot("n1", [accept("cali1", "cali-gi-XYZ", 4, members=members)]), 0)
    labels, values = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert (labels["policy_kind"], labels["policy"], labels["policy_namespace"]) == (
        "PolicyGroup",
        "allow-web+allow-b",
        "shop",
    )
    assert values == (4, 400)


def test_unresolved_interfaces_and_chains_are_exported_raw_and_counted() -> None:
    acct = Accountant(catalog())
    acct.apply(snapshot("n1", [accept("caliX", "cali-pi-_unknownHash", 3)]), 0)
    view = acct.view(0)
    labels, values = one(by_name(view)[WORKLOAD_POLICY])
    assert (labels["namespace"], labels["pod"], labels["policy_kind"], labels["policy"]) == (
        "",
        "caliX",
        "Unresolved",
        "cali-pi-_unknownHash",
    )
    assert values == (3, 300)
    (node,) = view.nodes
    assert (node.unresolved_interfaces, node.unresolved_chains) == (1, 1)


def test_the_counts_of_raw_names_follow_counters_as_they_come_and_go() -> None:
    """Kept per node as routes are registered and released (a scrape reads them under the
    lock): a raw name counts once however many counters carry it, and until the last goes."""
    acct = Accountant(catalog(), ledger=Ledger(retired_grace=0))

    def counts() -> dict[str, tuple[int, int]]:
        return {v.node: (v.unresolved_interfaces, v.unresolved_chains) for v in acct.view(9).nodes}

    unknown = [accept("caliX", "cali-pi-_unknownA", 3), accept("caliX", "cali-pi-_unknownB", 1)]
    acct.apply(snapshot("n1", [*unknown, accept("caliY", "cali-pi-_unknownA", 2)]), 0)
    acct.apply(snapshot("n2", [accept("cali3", "cali-pi-allow", 2)]), 0)
    assert counts() == {"n1": (2, 2), "n2": (0, 0)}
    acct.apply(snapshot("n1", unknown, sequence=2), 1)  # caliY's counter retired
    assert acct.expire(1) == 1
    assert counts() == {"n1": (1, 2), "n2": (0, 0)}  # cali-pi-_unknownA still has caliX's
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 4)], sequence=3), 2)
    assert acct.expire(2) > 0
    assert counts() == {"n1": (0, 0), "n2": (0, 0)}
    acct.forget_nodes(["n1"])
    assert counts() == {"n2": (0, 0)}


def test_profiles_accept_and_no_profile_drop() -> None:
    cat = catalog()
    cat.profiles["cali-pri-kns.shop"] = "kns.shop"
    acct = Accountant(cat)
    acct.apply(
        snapshot("n1", [profile_accept("cali1", "cali-pri-kns.shop", 6), no_profile_drop("cali1", 2)]), 0
    )
    series = by_name(acct.view(0))["calico_accountant_workload_profile_packets_total"]
    got = {(dict(k)["verdict"], dict(k)["profile"]): v for k, v in series.items()}
    assert got == {("accept", "kns.shop"): (6, 600), ("deny", ""): (2, 200)}


def test_policy_rules_are_per_node_and_per_real_policy() -> None:
    acct = Accountant(catalog())
    acct.apply(
        snapshot(
            "n1",
            [
                policy_rule("cali-pi-allow", 0, "allow", 8),
                policy_rule("cali-pi-allow", 1, "deny", 1),
                policy_rule("cali-pi-allow", 1, "deny", 2, family=6),
            ],
        ),
        0,
    )
    series = by_name(acct.view(0))["calico_accountant_node_policy_rule_packets_total"]
    got = {
        (dict(k)["node"], dict(k)["policy"], dict(k)["rule"], dict(k)["action"]): v[0]
        for k, v in series.items()
    }
    assert got == {("n1", "allow-web", "0", "allow"): 8, ("n1", "allow-web", "1", "deny"): 3}


def test_no_policy_drop_at_every_level() -> None:
    acct = Accountant(catalog())
    acct.apply(
        snapshot(
            "n1",
            [
                no_policy_drop("cali1", 4),
                no_policy_drop("cali2", 5, tier="security"),
                no_policy_drop("cali1", 1, direction=EGRESS),
            ],
        ),
        0,
    )
    acct.apply(snapshot("n2", [no_policy_drop("cali3", 7)]), 0)
    families = by_name(acct.view(0))
    node = {
        (dict(k)["node"], dict(k)["direction"]): v[0]
        for k, v in families["calico_accountant_node_no_policy_drop_packets_total"].items()
    }
    assert node == {("n1", "ingress"): 9, ("n1", "egress"): 1, ("n2", "ingress"): 7}
    cluster = {
        (dict(k)["namespace"], dict(k)["app"], dict(k)["direction"]): v[0]
        for k, v in families["calico_accountant_cluster_no_policy_drop_packets_total"].items()
    }
    assert cluster == {
        ("shop", "web", "ingress"): 9,
        ("shop", "web", "egress"): 1,
        ("shop", "db", "ingress"): 7,
    }


def test_compat_names_have_monzo_labels_and_values() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(compat=True))
    acct.apply(
        snapshot(
            "n2",
            [
                accept("cali3", "cali-pi-allow", 5),
                deny("cali3", "cali-pi-allow", 2, direction=EGRESS),
                no_policy_drop("cali3", 4),
            ],
        ),
        0,
    )
    families = by_name(acct.view(0))
    labels, values = one(families["policy_accept_counter"])
    assert labels == {
        "pod": "db-1",
        "pod_namespace": "shop",
        "app": "db",
        "ip": "169.254.1.3,2001:db8::3",
        "type": "tw",
        "policy": "shop/default.allow-web",
    }
    assert values[0] == 5
    labels, values = one(families["policy_accept_drop_counter"])
    assert (labels["type"], labels["policy"], values[0]) == ("fw", "shop/default.allow-web", 2)
    labels, values = one(families["no_policy_drop_counter"])
    assert (labels["type"], values[0]) == ("tw", 4)


def test_compat_policy_label_prefers_felix_identity_comment() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(compat=True))
    record = accept("cali1", "cali-pi-allow", 5)
    commented = CounterRecord(
        record.key, record.packets, record.bytes, record.rule_ids, "Policy shop/allow-web ingress"
    )
    acct.apply(snapshot("n1", [commented]), 0)
    labels, _ = one(by_name(acct.view(0))["policy_accept_counter"])
    assert labels["policy"] == "shop/allow-web"


def test_compat_names_are_off_by_default() -> None:
    acct = Accountant(catalog())
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5)]), 0)
    assert "policy_accept_counter" not in by_name(acct.view(0))


def test_levels_choose_what_is_exported() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(levels=parse_levels("node,cluster")))
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5)]), 0)
    names = set(by_name(acct.view(0)))
    assert NODE_POLICY in names and CLUSTER_POLICY in names
    assert not any(name.startswith("calico_accountant_workload_") for name in names)
    with pytest.raises(ValueError, match="subset of workload,app,node,cluster"):
        parse_levels("workload,pods")


def test_the_app_level_sums_pods_of_one_app_and_fits_big_clusters() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(levels=parse_levels("app,node,cluster")))
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5), accept("cali2", "cali-pi-allow", 6)]), 0)
    acct.apply(snapshot("n2", [no_policy_drop("cali3", 2), no_profile_drop("cali3", 1)]), 0)
    families = by_name(acct.view(0))
    assert not any(name.startswith("calico_accountant_workload_") for name in families)
    labels, values = one(families[APP_POLICY])
    assert (labels["namespace"], labels["app"], labels["policy"], values) == (
        "shop",
        "web",
        "allow-web",
        (11, 1100),
    )
    assert "pod" not in labels and "node" not in labels
    labels, values = one(families["calico_accountant_app_no_policy_drop_packets_total"])
    assert (labels["app"], labels["tier"], values[0]) == ("db", "default", 2)
    labels, values = one(families["calico_accountant_app_profile_packets_total"])
    assert (labels["app"], labels["verdict"], labels["profile"], values[0]) == ("db", "deny", "", 1)


def test_allow_list_drops_labels_and_sums_what_merges() -> None:
    acct = Accountant(
        catalog(),
        options=SeriesOptions(
            allowed_labels=parse_labels(
                "node,namespace,app,direction,verdict,tier,policy_kind,policy_namespace,policy"
            )
        ),
    )
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5), accept("cali2", "cali-pi-allow", 6)]), 0)
    labels, values = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert "pod" not in labels and labels["app"] == "web"
    assert values == (11, 1100)
    with pytest.raises(ValueError):
        parse_labels("pod,colour")


def test_series_cap_refuses_new_series_and_counts_them() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(levels=frozenset({Level.WORKLOAD}), max_series=2))
    acct.apply(
        snapshot(
            "n1",
            [
                accept("cali1", "cali-pi-allow", 1),
                accept("cali2", "cali-pi-allow", 2),
                no_policy_drop("cali1", 3),
            ],
        ),
        0,
    )
    view = acct.view(0)
    assert view.series_count == 2
    assert sum(len(f.series) for f in view.families) == 2
    assert view.overflow == {"workload": 1}
    # more traffic for a refused series neither creates it nor counts it again
    acct.apply(
        snapshot(
            "n1",
            [
                accept("cali1", "cali-pi-allow", 1),
                accept("cali2", "cali-pi-allow", 2),
                no_policy_drop("cali1", 9),
            ],
            sequence=2,
        ),
        1,
    )
    assert acct.view(1).overflow == {"workload": 1}


def test_rebuild_prefers_aggregate_series_under_the_cap() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(max_series=2))
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 1)]), 0)
    assert acct.view(0).overflow == {"cluster": 1}  # arrival order: workload, node, then no room
    acct.rebuild()
    names = {name for name, series in by_name(acct.view(0)).items() if series}
    assert names == {NODE_POLICY, CLUSTER_POLICY}
    # the counter stays monotonic: the workload series is newly refused, the cluster one admitted
    assert acct.view(0).overflow == {"cluster": 1, "workload": 1}
    acct.rebuild()
    assert acct.view(0).overflow == {"cluster": 1, "workload": 1}


def test_a_rebuild_without_a_cap_routes_as_the_one_with_priorities_and_as_no_rebuild() -> None:
    """Without a cap a rebuild routes each counter as it comes (no priorities to keep); with one
    it admits by level first.  Both, and an accountant never rebuilt, must agree on every
    series then and after more increases, expiries (the holders) and a catalog change."""

    def make(options: SeriesOptions) -> Accountant:
        return Accountant(catalog(), options=options, ledger=Ledger(retired_grace=60))

    plain, capped, never = (
        make(SeriesOptions(compat=True)),
        make(SeriesOptions(compat=True, max_series=10_000)),
        make(SeriesOptions(compat=True)),
    )
    first_n1 = [
        accept("cali1", "cali-pi-allow", 5),
        deny("cali1", "cali-pi-gdeny", 2, tier="security"),
        accept("cali2", "cali-pi-allow", 6),
        no_policy_drop("cali2", 1, direction=EGRESS),
        accept("cali9", "cali-pi-unknown", 3),
        profile_accept("cali1", "kns.shop", 4),
        no_profile_drop("cali2", 1),
        policy_rule("cali-pi-allow", 0, "allow", 7),
    ]
    first_n2 = [accept("cali3", "cali-pi-allow", 1), deny("cali3", "cali-pi-gdeny", 1, tier="security")]
    grown = [*first_n1[:4], accept("cali2", "cali-pi-allow", 9), *first_n1[5:]]
    for acct in (plain, capped, never):
        acct.apply(snapshot("n1", first_n1), 0)
        acct.apply(snapshot("n2", first_n2), 0)
        acct.apply(snapshot("n1", [*grown[:4], *grown[5:]], sequence=2), 10)  # cali9's counter gone
        # expired: its workload series leave, its node and cluster series stay without a holder
        assert acct.expire(70) == 2
    plain.rebuild()
    capped.rebuild()
    assert by_name(plain.view(70)) == by_name(capped.view(70)) == by_name(never.view(70))
    held_by_none = [
        value
        for labels, value in by_name(plain.view(70))[NODE_POLICY].items()
        if dict(labels)["policy"] == "cali-pi-unknown"
    ]
    assert held_by_none == [(3, 300)]
    later = [deny("cali1", "cali-pi-gdeny", 9, tier="security"), accept("cali2", "cali-pi-allow", 16)]
    renamed = (
        catalog().add_pod("n1", "cali9", "late", "late-pod").add_policy("cali-pi-allow", "allow-2", "shop")
    )
    for acct in (plain, capped, never):
        acct.apply(snapshot("n1", later, sequence=3), 80)
        acct.apply(snapshot("n2", first_n2, sequence=2), 80)
        assert acct.expire(140) > 0  # the holders: what n1 stopped sending at t=80 leaves
        acct.set_resolver(renamed)
        acct.apply(snapshot("n1", [*later, accept("cali9", "cali-pi-unknown", 4)], sequence=4), 150)
    assert by_name(plain.view(150)) == by_name(capped.view(150)) == by_name(never.view(150))


def test_a_pod_learned_late_gets_its_future_increases_and_no_series_goes_down() -> None:
    cat = FakeCatalog()
    acct = Accountant(cat)
    acct.apply(snapshot("n1", [accept("cali9", "cali-pi-late", 5)]), 0)
    acct.apply(snapshot("n1", [accept("cali9", "cali-pi-late", 8)], sequence=2), 1)
    labels, _ = one(by_name(acct.view(1))[WORKLOAD_POLICY])
    assert labels["pod"] == "cali9" and labels["policy_kind"] == "Unresolved"
    before = by_name(acct.view(1))
    acct.set_resolver(
        FakeCatalog().add_pod("n1", "cali9", "late", "late-pod").add_policy("cali-pi-late", "p", "late")
    )
    # the raw-named workload series leaves (its counter moved away); the pod's starts at zero
    labels, values = one(by_name(acct.view(1))[WORKLOAD_POLICY])
    assert (labels["pod"], labels["policy"], values) == ("late-pod", "p", (0, 0))
    assert acct.view(1).nodes[0].unresolved_interfaces == 0
    # what was counted stays counted where it was: the node series under the raw chain
    node_after = by_name(acct.view(1))[NODE_POLICY]
    for labels_, value in before[NODE_POLICY].items():
        assert node_after[labels_] == value
    acct.apply(snapshot("n1", [accept("cali9", "cali-pi-late", 12)], sequence=3), 2)
    labels, values = one(by_name(acct.view(2))[WORKLOAD_POLICY])
    assert (labels["pod"], values) == ("late-pod", (4, 400))
    assert sum(v[0] for v in by_name(acct.view(2))[CLUSTER_POLICY].values()) == 12


def test_expired_pods_leave_workload_series_but_not_the_sums() -> None:
    acct = Accountant(catalog(), options=SeriesOptions(compat=True), ledger=Ledger(retired_grace=60))
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5), accept("cali2", "cali-pi-allow", 6)]), 0)
    acct.apply(snapshot("n1", [accept("cali2", "cali-pi-allow", 6)], sequence=2), 10)
    assert acct.expire(69) == 0
    assert len(by_name(acct.view(69))[WORKLOAD_POLICY]) == 2  # still within the grace period
    assert acct.expire(70) == 2  # the workload series and its compat twin
    families = by_name(acct.view(70))
    assert [dict(k)["pod"] for k in families[WORKLOAD_POLICY]] == ["web-2"]
    assert [dict(k)["pod"] for k in families["policy_accept_counter"]] == ["web-2"]
    assert one(families[NODE_POLICY])[1] == (11, 1100)
    assert one(families[CLUSTER_POLICY])[1] == (11, 1100)
    # a rebuild keeps the expired totals in the sums
    acct.set_resolver(catalog())
    assert one(by_name(acct.view(70))[NODE_POLICY])[1] == (11, 1100)
    assert acct.view(70).expired_counters == 1


def test_a_workload_series_with_a_live_twin_counter_stays() -> None:
    acct = Accountant(catalog(), ledger=Ledger(retired_grace=0))
    acct.apply(
        snapshot("n2", [accept("cali3", "cali-pi-allow", 5), accept("cali3", "cali-pi-allow", 7, family=6)]),
        0,
    )
    acct.apply(snapshot("n2", [accept("cali3", "cali-pi-allow", 7, family=6)], sequence=2), 1)
    assert acct.expire(1) == 0
    assert one(by_name(acct.view(1))[WORKLOAD_POLICY])[1] == (12, 1200)


def test_a_resolver_that_raises_costs_names_not_counts() -> None:
    class Broken(FakeCatalog):
        def workload(self, node: str, interface: str) -> WorkloadIdentity:
            raise RuntimeError("datastore exploded")

        def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
            raise KeyError(chain)

    acct = Accountant(Broken())
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5)]), 0)
    view = acct.view(0)
    labels, values = one(by_name(view)[WORKLOAD_POLICY])
    assert (labels["pod"], labels["policy"], values[0]) == ("cali1", "cali-pi-allow", 5)
    assert view.resolution_errors == 2


def test_hits_for_the_hit_api() -> None:
    """A hit is traffic seen happen: not a node's first snapshot (history, even when the
    ledger counts it), not a counter that did not move."""
    acct = Accountant(catalog(), ledger=Ledger(first_snapshot=FirstSnapshot.COUNT))
    first = acct.apply(
        snapshot("n1", [accept("cali1", "cali-pi-allow", 5), deny("cali1", "cali-pi-allow", 2)]), 0
    )
    assert not first and list(first) == []
    assert sorted(v[0] for v in by_name(acct.view(0))[WORKLOAD_POLICY].values()) == [
        2,
        5,
    ]  # counted all the same
    later = acct.apply(
        snapshot("n1", [accept("cali1", "cali-pi-allow", 9), deny("cali1", "cali-pi-allow", 2)], sequence=2),
        1,
    )
    assert [(i.counter.workload.pod, i.counter.policy.name, i.counter.verdict, i.packets) for i in later] == [  # type: ignore[union-attr]
        ("web-1", "allow-web", "accept", 4)
    ]
    totals = acct.totals()
    assert sorted((t.counter.key.kind, t.packets, t.live) for t in totals) == [
        (Kind.POLICY_ACCEPT, 9, True),
        (Kind.POLICY_DENY, 2, True),
    ]


def test_a_row_without_a_counter_is_skipped_and_the_other_hits_keep_their_values() -> None:
    """Increases are columns, and a delta's hits take its packets and bytes columns whole; a
    row that holds no counter (not possible through the accountant) is skipped, and the hits
    on either side of it keep their own values."""
    ledger = Ledger(first_snapshot=FirstSnapshot.BASELINE)
    state = SeriesState(catalog())
    records = [accept("cali1", "cali-pi-allow", 1), accept("cali2", "cali-pi-allow", 1)]
    for step in ledger.applying(snapshot("n1", records), 0):
        state.apply(step.increases, ledger, Hits(T0))
    assert [ledger.counter_at("n1", row).key for row in (0, 1)] == [r.key for r in records]  # type: ignore[union-attr]
    assert ledger.counter_at("n1", 2) is None
    increases = Increases("n1", [record.key for record in records] + [None], [""] * 3, [()] * 3)
    for row, packets in ((0, 3), (2, 7), (1, 5)):  # row 2 holds no counter
        increases.rows.append(row)
        increases.packets.append(packets)
        increases.bytes.append(packets * 100)
    assert increases.all_hits
    hits = Hits(T0)
    state.apply(increases, ledger, hits)
    assert [(hit.key, hit.packets, hit.bytes) for hit in hits] == [
        (records[0].key, 3, 300),
        (records[1].key, 5, 500),
    ]
    (workload,) = [i for i, family in enumerate(state.families) if family.packets_name == WORKLOAD_POLICY]
    assert sorted(v for (index, _), v in state.series_values().items() if index == workload) == [
        (3, 300),
        (5, 500),
    ]


def test_series_count_on_past_64_bits() -> None:
    """Series are 64-bit columns with the excess carried beside them: a counter's resets
    near the top of its 64-bit range take its series (and their sums over pods, nodes and
    the cluster) past 2**64, exactly."""
    acct = Accountant(catalog(), ledger=Ledger(first_snapshot=FirstSnapshot.COUNT))
    top = 2**64 - 1
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", top, top)]), 0)
    acct.apply(snapshot("n2", [accept("cali3", "cali-pi-allow", top - 1, top)]), 0)
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5, 7)], sequence=2), 1)  # reset: + 5, 7
    series = by_name(acct.view(1))
    assert one(series[CLUSTER_POLICY])[1] == (2 * top - 1 + 5, 2 * top + 7)
    assert sorted(series[WORKLOAD_POLICY].values()) == [(top - 1, top), (top + 5, top + 7)]
    assert sorted(v for v in series[NODE_POLICY].values()) == [(top - 1, top), (top + 5, top + 7)]
    bytes_family = "calico_accountant_cluster_policy_bytes_total"
    assert f"{bytes_family}{{" in render_text(acct.view(1))
    assert f" {2 * top + 7}\n" in render_text(acct.view(1))


def test_scrapes_while_ingesting_see_consistent_copies() -> None:
    acct = Accountant(catalog())
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            while not stop.is_set():
                for family in acct.view(0).families:
                    for _, (packets, octets) in family.series:
                        assert octets == packets * 100
        except BaseException as error:  # surfaced below
            errors.append(error)

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for sequence in range(1, 200):
            acct.apply(
                snapshot(
                    "n1",
                    [accept(f"cali{i}", "cali-pi-allow", sequence) for i in range(50)],
                    sequence=sequence,
                ),
                sequence,
            )
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_snapshots_applied_in_steps_interleave_and_sum_exactly() -> None:
    """A big snapshot applied in steps of one counter on a worker thread, other nodes'
    snapshots applied between its steps: every series ends exactly where applying them one
    after the other leaves it, and the increases handed out are the same."""

    def updates(node: str, rounds: int) -> list[tuple[int, list[CounterRecord]]]:
        return [
            (sequence, [accept(f"cali{i}", "cali-pi-allow", sequence * (i + 1)) for i in range(40)])
            for sequence in range(1, rounds + 1)
        ]

    serial, stepped = Accountant(catalog()), Accountant(catalog(), chunk=1)
    expected = [
        (node, len(serial.apply(snapshot(node, records, sequence=sequence), sequence)))
        for node in ("n1", "n2")
        for sequence, records in updates(node, 5)
    ]
    got: list[tuple[str, int]] = []

    def big() -> None:
        for sequence, records in updates("n1", 5):
            got.append(("n1", len(stepped.apply(snapshot("n1", records, sequence=sequence), sequence))))

    worker = threading.Thread(target=big)
    worker.start()
    for sequence, records in updates("n2", 5):
        got.append(("n2", len(stepped.apply(snapshot("n2", records, sequence=sequence), sequence))))
    worker.join()
    assert sorted(got) == sorted(expected)
    assert [dict(f.series) for f in stepped.view(0).families] == [
        dict(f.series) for f in serial.view(0).families
    ]


# -- property: every level is the sum of the level below it ------------------------------------

_PODS = [("n1", "cali1"), ("n1", "cali2"), ("n2", "cali3"), ("n2", "cali4"), ("n3", "cali5")]
_CHAINS = ["cali-pi-allow", "cali-pi-gdeny", "cali-pi-unknown"]


@st.composite
def _records(draw: st.DrawFn) -> list[tuple[str, CounterRecord]]:
    out: list[tuple[str, CounterRecord]] = []
    for node, iface in draw(st.lists(st.sampled_from(_PODS), min_size=1, max_size=5, unique=True)):
        for _ in range(draw(st.integers(0, 4))):
            maker = draw(st.sampled_from(["accept", "deny", "drop"]))
            packets = draw(st.integers(0, 10**6))
            family = draw(st.sampled_from([4, 6]))
            direction = draw(st.sampled_from(list(type(EGRESS))))
            chain = draw(st.sampled_from(_CHAINS))
            tier = draw(st.sampled_from(["default", "security"]))
            if maker == "accept":
                record = accept(iface, chain, packets, family=family, direction=direction, tier=tier)
            elif maker == "deny":
                record = deny(iface, chain, packets, family=family, direction=direction, tier=tier)
            else:
                record = no_policy_drop(iface, packets, family=family, direction=direction, tier=tier)
            out.append((node, record))
    return out


def _sum(series: Series, keep: Sequence[str]) -> dict[tuple[str, ...], tuple[int, int]]:
    sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for labels, (packets, octets) in series.items():
        as_dict = dict(labels)
        target = sums[tuple(as_dict[name] for name in keep)]
        target[0] += packets
        target[1] += octets
    return {k: (v[0], v[1]) for k, v in sums.items()}


@settings(max_examples=150, deadline=None)
@given(batch=_records(), allow_app=st.booleans())
def test_node_series_sum_workloads_and_cluster_series_sum_nodes(
    batch: list[tuple[str, CounterRecord]], allow_app: bool
) -> None:
    cat = catalog().add_pod("n2", "cali4", "shop", "web-4", "web").add_pod("n3", "cali5", "ops", "tool", "")
    allowed = (
        None
        if allow_app
        else frozenset(
            parse_labels("node,namespace,pod,direction,verdict,tier,policy_kind,policy_namespace,policy")
        )
    )
    every_level = parse_levels("workload,app,node,cluster")
    acct = Accountant(cat, options=SeriesOptions(levels=every_level, allowed_labels=allowed))
    by_node: dict[str, dict[object, CounterRecord]] = defaultdict(dict)
    for node, record in batch:
        by_node[node][record.key] = record  # one value per key, like a real snapshot
    for node, records in by_node.items():
        acct.apply(snapshot(node, list(records.values())), 0)
    families = by_name(acct.view(0))
    policy_keys = ("node", "direction", "verdict", "tier", "policy_kind", "policy_namespace", "policy")
    assert _sum(families[WORKLOAD_POLICY], policy_keys) == _sum(families[NODE_POLICY], policy_keys)
    assert _sum(families[NODE_POLICY], policy_keys[1:]) == _sum(families[CLUSTER_POLICY], policy_keys[1:])
    drops_workload = families["calico_accountant_workload_no_policy_drop_packets_total"]
    drops_node = families["calico_accountant_node_no_policy_drop_packets_total"]
    drops_cluster = families["calico_accountant_cluster_no_policy_drop_packets_total"]
    assert _sum(drops_workload, ("node", "direction")) == _sum(drops_node, ("node", "direction"))
    assert _sum(drops_node, ("direction",)) == _sum(drops_cluster, ("direction",))
    # the app level: the workload series without the pod and node
    app = ("namespace", "app") if allow_app else ("namespace",)
    app_keys = (*app, *policy_keys[1:])
    assert _sum(families[WORKLOAD_POLICY], app_keys) == _sum(families[APP_POLICY], app_keys)
    drops_app = families["calico_accountant_app_no_policy_drop_packets_total"]
    assert _sum(drops_workload, (*app, "direction", "tier")) == _sum(drops_app, (*app, "direction", "tier"))
    assert _sum(drops_app, (*app, "direction")) == _sum(drops_cluster, (*app, "direction"))
    # and the grand total is what the records said
    expected = sum(
        r.packets
        for records in by_node.values()
        for r in records.values()
        if r.key.kind.value != "no_policy_drop"
    )
    assert sum(v[0] for v in families[CLUSTER_POLICY].values()) == expected


def test_identity_types_used_by_the_fake_match_the_model() -> None:
    # the fake catalog must return the model's types, or the tests above prove nothing
    cat = catalog()
    assert isinstance(cat.group("g", ["cali-pi-allow"], [""]), PolicyGroup)
    assert isinstance(cat.profile("x"), ProfileIdentity)


def _partial_catalog(pods: set[tuple[str, str]], chains: set[str]) -> FakeCatalog:
    full = catalog().add_pod("n2", "cali4", "shop", "web-4", "web").add_pod("n3", "cali5", "ops", "tool", "")
    partial = FakeCatalog()
    partial.workloads = {where: w for where, w in full.workloads.items() if where in pods}
    partial.policies = {chain: p for chain, p in full.policies.items() if chain in chains}
    return partial


@settings(max_examples=100, deadline=None)
@given(
    batch=_records(),
    before=st.tuples(st.sets(st.sampled_from(_PODS)), st.sets(st.sampled_from(_CHAINS))),
    after=st.tuples(st.sets(st.sampled_from(_PODS)), st.sets(st.sampled_from(_CHAINS))),
    growth=st.integers(1, 1000),
    compat=st.booleans(),
)
def test_a_catalog_change_routes_future_increases_and_moves_no_history(
    batch: list[tuple[str, CounterRecord]],
    before: tuple[set[tuple[str, str]], set[str]],
    after: tuple[set[tuple[str, str]], set[str]],
    growth: int,
    compat: bool,
) -> None:
    by_node: dict[str, dict[object, CounterRecord]] = defaultdict(dict)
    for node, record in batch:
        by_node[node][record.key] = record
    grown = {
        node: [r._replace(packets=r.packets + growth, bytes=r.bytes + 100 * growth) for r in records.values()]
        for node, records in by_node.items()
    }
    options = SeriesOptions(compat=compat)
    changed = Accountant(_partial_catalog(*before), options=options)
    rebuilt = Accountant(_partial_catalog(*before), options=options)
    # where the second read's increases must land: names as a catalog knowing everything
    # ever known gives them (what left the catalog keeps the names it was counted under)
    ever_known = (before[0] | after[0], before[1] | after[1])
    expected = Accountant(_partial_catalog(*ever_known), options=options)
    for acct in (changed, rebuilt, expected):
        for node, records in by_node.items():
            acct.apply(snapshot(node, list(records.values())), 0)
    first = by_name(changed.view(0))
    expected_first = by_name(expected.view(0))
    changed.set_resolver(_partial_catalog(*after))
    rebuilt.set_resolver(_partial_catalog(*after))
    rebuilt.rebuild()
    middle = by_name(changed.view(0))
    # a catalog change moves no value: every series still exported is exactly where it was
    for name, series in middle.items():
        for labels, value in series.items():
            assert value == first.get(name, {}).get(labels, (0, 0)), (name, labels)
    assert by_name(rebuilt.view(0)) == middle
    for acct in (changed, rebuilt, expected):
        for node, later in grown.items():
            acct.apply(snapshot(node, later, sequence=2), 1)
    last = by_name(changed.view(1))
    assert by_name(rebuilt.view(1)) == last
    expected_last = by_name(expected.view(1))
    for name in expected_last:
        for labels, value in expected_last[name].items():
            grew = value[0] - expected_first[name].get(labels, (0, 0))[0]
            assert last[name].get(labels, (0, 0))[0] - middle[name].get(labels, (0, 0))[0] == grew, (
                name,
                labels,
            )
    assert [(n.unresolved_interfaces, n.unresolved_chains) for n in changed.view(1).nodes] == [
        (n.unresolved_interfaces, n.unresolved_chains) for n in expected.view(1).nodes
    ]


def test_a_pod_leaving_the_catalog_keeps_the_names_it_was_counted_under() -> None:
    acct = Accountant(catalog())
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5)]), 0)
    acct.set_resolver(FakeCatalog())
    labels, values = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert (labels["pod"], labels["namespace"], labels["policy"], values) == (
        "web-1",
        "shop",
        "allow-web",
        (5, 500),
    )
    assert acct.moved_counters == 0
    acct.rebuild()
    labels, values = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert (labels["pod"], labels["namespace"], values) == ("web-1", "shop", (5, 500))


def test_an_interface_reused_by_a_new_pod_moves_to_the_new_pod() -> None:
    acct = Accountant(catalog())
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5)]), 0)
    acct.set_resolver(catalog().add_pod("n1", "cali1", "shop", "web-9", "web"))
    labels, _ = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert labels["pod"] == "web-9"
    assert acct.moved_counters == 1


def test_group_members_resolve_with_comments_from_policy_rules() -> None:
    class ByComment(FakeCatalog):
        def policy(self, chain: str, comment: str = "") -> PolicyIdentity:
            if comment == "Policy shop/default.late ingress":
                return PolicyIdentity(PolicyKind.NETWORK_POLICY, "shop", "late", "default", "default.late")
            return super().policy(chain, comment)

    acct = Accountant(ByComment())
    acct.apply(
        snapshot(
            "n1",
            [
                policy_rule("cali-pi-_hashed", 0, "allow", 1, comment="Policy shop/default.late ingress"),
                accept("cali1", "cali-gi-group", 3, members=("cali-pi-_hashed",)),
            ],
        ),
        0,
    )
    labels, _ = one(by_name(acct.view(0))[WORKLOAD_POLICY])
    assert (labels["policy_kind"], labels["policy"]) == ("PolicyGroup", "late")


def test_a_scrape_copy_taken_in_steps_is_the_copy_taken_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Accountant.view`` copies ``VIEW_STEP`` series slots per step under the lock: the
    same series and values as one copy, also with holes left by expired series."""
    pods = [(f"cali{i}", f"web-{i}") for i in range(1, 12)]
    shop = FakeCatalog().add_policy("cali-pi-allow", "allow-web", "shop")
    for interface, pod in pods:
        shop.add_pod("n1", interface, "shop", pod, "web", [])
    acct = Accountant(shop, ledger=Ledger(retired_grace=0))
    acct.apply(snapshot("n1", [accept(i, "cali-pi-allow", n + 1) for n, (i, _) in enumerate(pods)]), 0)
    kept = [accept(i, "cali-pi-allow", 20 + n) for n, (i, _) in enumerate(pods) if n % 3]
    acct.apply(snapshot("n1", kept, sequence=2), 1)
    assert acct.expire(1) == 4  # holes in the workload family's table
    whole = [(f.labels, f.texts, f.values) for f in acct.view(1).families]
    monkeypatch.setattr(accountant_module, "VIEW_STEP", 2)
    assert [(f.labels, f.texts, f.values) for f in acct.view(1).families] == whole
    assert sum(len(labels) for labels, _, _ in whole) > 2 * 4  # several steps in a family


def test_node_routes_keep_rows_in_any_order_with_holes_between() -> None:
    """A new node's routes are appended row after row; a row past the end leaves holes, and a
    hole filled later holds its route (routes of a node whose rows were freed and reused)."""
    routes = NodeRoutes()
    names = [CounterNames(f"n{i}", None, None, None, None, "", None) for i in range(5)]
    for row in (0, 1, 4, 2):
        routes.put(row, names[row], ((0, row),), (), ())
    assert [routes.get(row) is not None for row in range(6)] == [True, True, True, False, True, False]
    assert list(routes.rows()) == [0, 1, 2, 4]
    for row in (0, 1, 2, 4):
        route = routes.get(row)
        assert route is not None and route.names is names[row] and route.slots == ((0, row),)
    routes.put(3, names[3], (), (), ())
    assert list(routes.rows()) == [0, 1, 2, 3, 4]
    assert routes.pop(1) is not None and routes.get(1) is None and list(routes.rows()) == [0, 2, 3, 4]
