"""Everything a client sends is bounded: the ledger's caps, the stream admission, the wire
fields, and nodes that stop reporting are forgotten without losing the cluster sums."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.accountant import Accountant, SnapshotRefused
from aggregator.datastore.file import DatastoreFileError, decode_text
from aggregator.datastore.objects import BadObject, object_from_etcd
from aggregator.ingest.limits import StreamAdmission, StreamLimits
from aggregator.ledger.admission import Limits, RefusalProblem
from aggregator.ledger.ledger import Ledger
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.snapshots import build_snapshot, decode_snapshot
from tests.support.accounting import FakeCatalog, accept, no_policy_drop, snapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_node_over_the_node_cap_is_refused_and_leaves_no_trace() -> None:
    ledger = Ledger(limits=Limits(max_nodes=2))
    for node in ("a", "b"):
        assert ledger.apply(snapshot(node, [accept("cali1", "cali-pi-x", 1)]), now=0)
    refusal = ledger.check(snapshot("c", [accept("cali1", "cali-pi-x", 1)]))
    assert refusal is not None and refusal.problem is RefusalProblem.TOO_MANY_NODES
    assert ledger.apply(snapshot("c", [accept("cali1", "cali-pi-x", 1)]), now=1) == []
    assert ledger.node_names() == ["a", "b"]
    # known nodes keep reporting
    assert ledger.apply(snapshot("a", [accept("cali1", "cali-pi-x", 5)], sequence=2), now=2)


def test_counters_per_node_are_capped_counting_only_new_keys() -> None:
    ledger = Ledger(limits=Limits(max_counters_per_node=3))
    three = [accept(f"cali{i}", "cali-pi-x", 1) for i in range(3)]
    assert len(ledger.apply(snapshot("n", three), now=0)) == 3
    # the same keys again (a later read) are not new
    assert ledger.check(snapshot("n", three, sequence=2)) is None
    refusal = ledger.check(snapshot("n", [*three, accept("cali9", "cali-pi-x", 1)], sequence=2))
    assert refusal is not None and refusal.problem is RefusalProblem.TOO_MANY_COUNTERS
    assert ledger.apply(snapshot("n", [*three, accept("cali9", "cali-pi-x", 1)], sequence=2), now=1) == []
    state = ledger.node("n")
    assert state is not None and state.limit_refusals == 1 and len(ledger.counters("n")) == 3


def test_too_many_diagnostic_codes_are_refused() -> None:
    ledger = Ledger(limits=Limits(max_diagnostic_codes=2))
    refusal = ledger.check(snapshot("n", [], diagnostics={"a": 1, "b": 1, "c": 1}))
    assert refusal is not None and refusal.problem is RefusalProblem.TOO_MANY_DIAGNOSTIC_CODES
    assert ledger.check(snapshot("n", [], diagnostics={"a": 1, "b": 1})) is None


def test_the_accountant_raises_what_the_ledger_refuses_and_counts_nothing() -> None:
    acct = Accountant(FakeCatalog(), ledger=Ledger(limits=Limits(max_nodes=1)))
    acct.apply(snapshot("a", [accept("cali1", "cali-pi-x", 4)]), 0)
    with pytest.raises(SnapshotRefused) as refused:
        acct.apply(snapshot("b", [accept("cali1", "cali-pi-x", 1000)]), 0)
    assert refused.value.refusal.problem is RefusalProblem.TOO_MANY_NODES
    assert [t.packets for t in acct.totals()] == [4]


def test_stream_admission_caps_streams_per_peer_and_pending_bytes() -> None:
    admission = StreamAdmission(
        StreamLimits(
            max_streams=3, max_streams_per_peer=2, max_pending_bytes=100, max_pending_bytes_total=150
        )
    )
    assert admission.open("p1") is None and admission.open("p1") is None
    assert admission.open("p1") is not None  # third from one peer
    assert admission.open("p2") is None
    assert admission.open("p3") is not None  # three in all
    admission.close("p1")
    assert admission.open("p3") is None
    assert admission.hold(0, 90) is None
    assert admission.hold(90, 20) is not None  # one stream over 100
    assert admission.hold(0, 70) is not None  # 90 + 70 over 150 in all
    admission.release(90)
    assert admission.hold(0, 70) is None and admission.pending_total == 70


def _snapshot_pb(**fields: object) -> pb.NodeSnapshot:
    message = build_snapshot(
        node="n1",
        agent_instance_id="i1",
        sequence=1,
        read_time=T0,
        full=True,
        records=[accept("cali1", "x", 1)],
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


@pytest.mark.parametrize(
    "fields",
    [
        {"node": "n" * 254},
        {"node": "bad\x1b[2Jname"},
        {"node": "two words"},
        {"agent_instance_id": "i" * 300},
    ],
)
def test_unreasonable_names_are_malformed(fields: dict[str, object]) -> None:
    with pytest.raises(WireError):
        decode_snapshot(_snapshot_pb(**fields))


def test_a_read_time_out_of_range_is_malformed_not_a_crash() -> None:
    message = _snapshot_pb()
    message.read_time.seconds = 2**62
    with pytest.raises(WireError, match="read_time"):
        decode_snapshot(message)


def test_oversized_counter_fields_are_skipped_and_counted() -> None:
    message = _snapshot_pb()
    message.counters[0].chain = "c" * 10_000
    extra = message.counters.add()
    extra.CopyFrom(message.counters[0])
    extra.chain = "cali-pi-ok"
    extra.rule_ids.extend(["r"] * 100)
    good = message.counters.add()
    good.CopyFrom(extra)
    del good.rule_ids[:]
    good.rule_ids.append("r1")
    decoded = decode_snapshot(message)
    assert decoded.invalid_counters == 2 and len(decoded.records) == 1
    assert any("chain longer" in reason for reason in decoded.invalid_reasons)


def test_a_forgotten_node_leaves_its_series_but_not_the_cluster_sums() -> None:
    catalog = FakeCatalog().add_pod("n1", "cali1", "shop", "web").add_pod("n2", "cali2", "shop", "api")
    catalog.add_policy("cali-pi-allow", "allow", "shop")
    ledger = Ledger(node_expiry=100.0, retired_grace=10.0)
    acct = Accountant(catalog, ledger=ledger)
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 5), no_policy_drop("cali1", 2)]), 0)
    acct.apply(snapshot("n2", [accept("cali2", "cali-pi-allow", 7)]), 0)
    acct.set_connected("n2", True)

    def series(now: float) -> dict[str, dict[tuple[str, ...], tuple[int, int]]]:
        view = acct.view(now)
        return {f.family.packets_name: dict(f.series) for f in view.families}

    before = series(0)
    cluster = before["calico_accountant_cluster_policy_packets_total"]
    assert sum(p for p, _ in cluster.values()) == 12
    assert acct.expire(50) == 0  # not yet
    removed = acct.expire(150)  # n1 silent and disconnected for 150 s; n2 still connected
    after = series(150)
    assert removed > 0
    assert [n.node for n in acct.node_views(150)] == ["n2"]
    for name, values in after.items():
        if name.startswith(("calico_accountant_workload_", "calico_accountant_node_")):
            assert all("n1" not in labels for labels in values), name
    assert after["calico_accountant_cluster_policy_packets_total"] == cluster
    assert (
        after["calico_accountant_cluster_no_policy_drop_packets_total"]
        == (before["calico_accountant_cluster_no_policy_drop_packets_total"])
    )
    assert acct.view(150).forgotten_nodes == 1
    # the node comes back: it starts from its first snapshot, and the sums keep growing
    acct.apply(snapshot("n1", [accept("cali1", "cali-pi-allow", 6)], instance="agent-2"), 200)
    back = series(200)["calico_accountant_cluster_policy_packets_total"]
    assert sum(p for p, _ in back.values()) == 12 + 6


def test_invented_node_names_cannot_grow_memory_without_bound() -> None:
    ledger = Ledger(node_expiry=60.0, limits=Limits(max_nodes=50))
    acct = Accountant(FakeCatalog(), ledger=ledger)
    accepted = 0
    for round_ in range(20):
        for i in range(100):
            try:
                acct.apply(snapshot(f"invented-{round_}-{i}", [accept("cali1", "x", 1)]), round_ * 100.0)
                accepted += 1
            except SnapshotRefused:
                pass
        assert len(ledger.node_names()) <= 50
        acct.expire(round_ * 100.0 + 61)
    assert accepted == 20 * 50


PREFIX = "/calico/resources/v3/projectcalico.org/"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{"spec": ' + "[" * 100_000 + "]" * 100_000 + "}", "too_deep"),
        ('{"spec": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}", "too_deep"),
        ('{"spec": {"x": "' + "y" * (3 * 1024 * 1024 // 2) + '"}}', "too_large"),
    ],
)
def test_poison_datastore_values_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(BadObject) as refused:
        object_from_etcd(f"{PREFIX}globalnetworkpolicies/default.poison", value)
    assert refused.value.reason == reason


def test_a_deeply_nested_datastore_file_is_a_clear_error() -> None:
    with pytest.raises(DatastoreFileError, match="nested too deep"):
        decode_text("[" * 100_000 + "]" * 100_000)
    result = decode_text(
        '[{"kind": "GlobalNetworkPolicy", "metadata": {"name": "x"}, "spec": ' + "[" * 80 + "]" * 80 + "}]"
    )
    assert result.objects == [] and result.bad == {"too_deep": 1}


def test_counters_of_all_nodes_together_are_capped() -> None:
    ledger = Ledger(limits=Limits(max_counters=5))
    assert ledger.apply(snapshot("a", [accept(f"cali{i}", "x", 1) for i in range(3)]), now=0)
    refusal = ledger.check(snapshot("b", [accept(f"cali{i}", "x", 1) for i in range(3)]))
    assert refusal is not None and refusal.problem is RefusalProblem.TOO_MANY_COUNTERS
    assert "in all" in refusal.message
    assert ledger.check(snapshot("b", [accept(f"cali{i}", "x", 1) for i in range(2)])) is None
