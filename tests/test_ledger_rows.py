"""A node's counters as columns by row (:mod:`aggregator.ledger.rows`): the columns behave like a
dictionary of keys to counters whatever is added and removed, holes are reused, and a reused
row never carries the series route of the counter that held it before."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.accountant import Accountant
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.rows import RAW_MAX, CounterRows, row_number
from aggregator.ledger.state import CounterState, FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from calico_accountant.records import CounterKey
from tests.support.accounting import FakeCatalog, accept, deny, snapshot

KEYS = [accept(f"cali-{i}", "cali-pi-allow", 1).key for i in range(6)]
VALUES = st.integers(0, RAW_MAX)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove"]),
        st.sampled_from(KEYS),
        VALUES,
        st.integers(0, 2**80),  # totals may outgrow 64 bits over a long life
        st.sampled_from([(), ("r1",), ("r1", "r2")]),
        st.none() | st.floats(0, 1e9),
    ),
    max_size=50,
)


def _state(
    key: CounterKey, raw: int, total: int, ids: tuple[str, ...], retired: float | None
) -> CounterState:
    return CounterState(key, raw, RAW_MAX - raw, ids, total, total + 1, "comment", ids, retired)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_rows_are_a_dictionary_of_counters(
    ops: list[tuple[str, CounterKey, int, int, tuple[str, ...], float | None]],
) -> None:
    rows = CounterRows()
    model: dict[CounterKey, CounterState] = {}
    for op, key, raw, total, ids, retired in ops:
        if op == "add" and key not in model:
            state = _state(key, raw, total, ids, retired)
            high = len(rows.keys)
            row = rows.add(*astuple(state))
            assert row <= high  # a hole is reused before the columns grow
            model[key] = state
        elif op == "remove" and key in model:
            assert rows.remove(rows.row_of[key]) == model.pop(key)
        assert len(rows) == len(model)
        assert {key: rows.get(key) for key in model} == model
        assert {state.key: state for _, state in rows.states()} == model
        assert [state.key for _, state in rows.states()] == [k for k in rows.keys if k is not None]
        assert all(rows.keys[row] == key for key, row in rows.row_of.items())
    frozen = rows.frozen()
    held = [state for _, state in rows.states()]
    assert list(frozen) == held and len(frozen) == len(held) and list(frozen[:]) == held
    for key in list(rows.row_of):  # what the ledger does later changes no frozen copy
        rows.remove(rows.row_of[key])
    rows.add(*astuple(_state(KEYS[0], 1, 1, ("r9",), None)))
    assert list(frozen) == held


def test_a_checkpoint_lists_each_key_once_and_the_last_one_counts() -> None:
    ledger = Ledger()
    ledger.apply(snapshot("n1", [accept("cali-a", "cali-pi-allow", 5)]), 0.0)
    [record] = ledger.export()
    first = record.counters[0]
    again = CounterState(first.key, 9, 900, first.rule_ids, 7, 700)
    ledger.restore([type(record)(record.state, (first, again), record.chain_comments)])
    assert dict(ledger.counters("n1")) == {first.key: again}
    assert ledger.node("n1") is not None and ledger.node("n1").counters_known == 1  # type: ignore[union-attr]


def test_a_reused_row_is_routed_for_its_new_counter() -> None:
    """Pods come and go on one node: each new pod's counters take the rows the expired pods
    freed, and every series gets exactly its own pod's traffic."""
    catalog = FakeCatalog().add_policy("cali-pi-allow", "allow", "shop")
    for pod in range(6):
        catalog.add_pod("n1", f"cali-{pod}", "shop", f"pod-{pod}", app="web")
    accountant = Accountant(catalog, ledger=Ledger(retired_grace=0))
    for round_ in range(1, 6):
        pods = [f"cali-{round_ - 1}", f"cali-{round_}"]  # one pod stays a round, one is new
        records = [accept(pod, "cali-pi-allow", 10 * round_ + i) for i, pod in enumerate(pods)]
        accountant.apply(snapshot("n1", records, sequence=round_), float(round_))
        accountant.expire(float(round_) + 0.5)  # the pod gone this round expires: its row is free
        rows = {state.key.interface for _, state in accountant.ledger.node_rows("n1")}
        assert rows == set(pods)
    totals = {t.counter.workload.pod: t.packets for t in accountant.totals() if t.counter.workload}
    # pod-k counted its first value (the first snapshot of a node counts its raw values) and,
    # a round later, the growth from 10k+1 to 10(k+1)
    assert totals == {"pod-4": 41 + 9, "pod-5": 51}
    assert len(accountant.ledger.counters("n1")) == 2
    [family] = [
        family
        for family in accountant.view(9.0).families
        if family.family.packets_name == "calico_accountant_workload_policy_packets_total"
    ]
    pod = family.label_names.index("pod")
    series = {labels[pod]: value for labels, value in zip(family.labels, family.values, strict=True)}
    assert {pod: packets for pod, (packets, _) in series.items()} == {"pod-4": 50, "pod-5": 51}


def test_the_cap_on_all_counters_follows_expiry_and_forgotten_nodes() -> None:
    """The ledger keeps its count of every node's counters as they come and go (no sum over
    the nodes for every snapshot): the cap refuses exactly when the held counters would pass it."""
    ledger = Ledger(retired_grace=0, node_expiry=1, limits=Limits(max_counters=4))
    three = [accept(f"cali-{i}", "cali-pi-allow", 1) for i in range(3)]
    ledger.apply(snapshot("n1", three), 0.0)
    two = [accept(f"cali-{i}", "cali-pi-allow", 1) for i in range(7, 9)]
    assert ledger.check(snapshot("n2", two)) is not None  # 3 + 2 > 4
    ledger.apply(snapshot("n1", three[:1], sequence=2), 1.0)  # two retire...
    ledger.expire(2.0)  # ...and expire
    assert ledger.check(snapshot("n2", two)) is None  # 1 + 2
    ledger.apply(snapshot("n2", two), 2.0)
    assert ledger.check(snapshot("n3", two)) is not None  # 3 + 2
    ledger.forget("n2")
    assert ledger.check(snapshot("n3", two)) is None
    ledger.apply(snapshot("n3", two), 3.0)
    ledger.set_connected("n3", False)
    assert [gone.node for gone in ledger.forget_nodes(10.0)] == ["n1", "n3"]
    four = [*three, accept("cali-9", "cali-pi-allow", 1)]
    assert ledger.check(snapshot("n4", four)) is None  # 0 + 4
    ledger.apply(snapshot("n4", four), 11.0)
    one = [accept("cali-5", "cali-pi-allow", 1)]
    ledger.restore(ledger.export())
    assert ledger.check(snapshot("n5", one)) is not None  # the 4 restored + 1
    ledger.restore([])
    assert ledger.check(snapshot("n5", one)) is None


def test_shared_numbers_are_their_own_value_when_ledgers_grow_them_at_once() -> None:
    """Two accountants in one process (shards in a test, a tool) grow the shared row numbers
    from their own threads: every number must stay its own index."""
    wanted = list(range(0, 1 << 20, 4093))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        with ThreadPoolExecutor(8) as pool:
            seen = list(pool.map(row_number, wanted * 4))
    finally:
        sys.setswitchinterval(switch)
    assert seen == wanted * 4
    assert all(row_number(n) == n for n in range(0, 1 << 20, 997))


def test_a_forgotten_node_leaves_nothing_in_the_memo() -> None:
    """Its counters' lookups are released with it: a catalog change afterwards re-routes only
    the counters still held, and the answers only it used are forgotten."""
    catalog = FakeCatalog().add_policy("cali-pi-allow", "allow", "shop")
    catalog.add_pod("n1", "cali-a", "shop", "a", app="web").add_pod("n2", "cali-b", "shop", "b", app="web")
    accountant = Accountant(catalog, ledger=Ledger())
    accountant.apply(snapshot("n1", [accept("cali-a", "cali-pi-allow", 1)]), 0.0)
    accountant.apply(snapshot("n2", [accept("cali-b", "cali-pi-allow", 1)]), 0.0)
    accountant.forget_nodes(["n1"])
    renamed = FakeCatalog().add_policy("cali-pi-allow", "allow-all", "shop")
    renamed.add_pod("n1", "cali-a", "shop", "a2", app="web").add_pod("n2", "cali-b", "shop", "b", app="web")
    accountant.set_resolver(renamed)
    assert accountant.moved_counters == 1  # n2's counter (its policy renamed), not n1's
    memo = accountant._series.router.memo
    assert not any("n1" in users for users in memo._users.values())


def _series_after_forgetting(
    batches: list[list[str]],
) -> dict[str, list[tuple[tuple[str, ...], tuple[int, int]]]]:
    catalog = FakeCatalog().add_policy("cali-pi-allow", "allow", "shop")
    for node in ("n1", "n2", "n3"):
        catalog.add_pod(node, "cali-a", "shop", f"a-{node}", app="web")
    accountant = Accountant(
        catalog,
        ledger=Ledger(first_snapshot=FirstSnapshot.COUNT, retired_grace=5.0, node_expiry=10_000.0),
        options=SeriesOptions(levels=parse_levels("workload,app,node,cluster")),
    )
    for node in ("n1", "n2", "n3"):
        accountant.apply(
            snapshot(node, [accept("cali-a", "cali-pi-allow", 3), deny("cali-a", "cali-pi-allow", 1)]), 0.0
        )
    # n2's deny counter retires and expires first: its node series stays without a holder
    accountant.apply(snapshot("n2", [accept("cali-a", "cali-pi-allow", 4)], sequence=2), 1.0)
    assert accountant.expire(100.0) == 1  # its workload series; its node series stays, held by none
    for batch in batches:
        accountant.forget_nodes(batch)
    return {
        family.family.packets_name: sorted(zip(family.labels, family.values, strict=True))
        for family in accountant.view(99.0).families
    }


def test_forgetting_nodes_at_once_is_forgetting_them_one_by_one() -> None:
    """A shard hands nodes over in one batch (one pass over the node-labelled series): the
    same series leave as one node at a time, also a node series no counter holds any more."""
    together = _series_after_forgetting([["n1", "n2"]])
    assert together == _series_after_forgetting([["n1"], ["n2"]])
    nodes_left = {labels[0] for labels, _ in together["calico_accountant_node_policy_packets_total"]}
    assert nodes_left == {"n3"}
    cluster = together["calico_accountant_cluster_policy_packets_total"]
    assert sorted(value[0] for _, value in cluster) == [1 + 1 + 1, 3 + 4 + 3]  # sums keep what they counted
