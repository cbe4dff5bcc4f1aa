"""Counters applied by key id (aggregator.ledger.keyed) against the same counters applied
whole: the same increases, totals, resets, retirements and series, whatever the reads do;
and what the ledger refuses (unknown ids, an id redefined for another key, a table over the
node's cap, ids after a restore) without changing anything."""

from __future__ import annotations

import random
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.accountant import Accountant, SnapshotRefused
from aggregator.ledger.admission import Limits, RefusalProblem
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.series.options import SeriesOptions, parse_levels
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.keyed import KeyedColumns
from calico_accountant.wire.snapshots import DecodedSnapshot, build_snapshot, decode_snapshot
from tests.support.accounting import FakeCatalog, accept
from tests.support.keyed import T0, agent_messages, evolving_reads

NODE = "node-k"


def _accountant(limits: Limits | None = None, chunk: int = 3) -> Accountant:
    catalog = FakeCatalog().add_pod(NODE, "cali00000000000", "ns", "pod-0", "app")
    ledger = Ledger(first_snapshot=FirstSnapshot.COUNT, limits=limits, retired_grace=5.0)
    return Accountant(
        catalog,
        ledger=ledger,
        chunk=chunk,
        options=SeriesOptions(levels=parse_levels("workload,app,node,cluster")),
    )


def _outcome(messages: list[pb.NodeSnapshot]) -> tuple[object, ...]:
    """Everything the accounting state holds after applying ``messages`` (through the wire:
    serialized, parsed and decoded as ingest does), and every increase on the way."""
    accountant = _accountant()
    increases = []
    for index, message in enumerate(messages):
        update = decode_snapshot(pb.NodeSnapshot.FromString(message.SerializeToString()))
        applied = accountant.apply(update, float(index))
        increases.append(sorted((str(i.counter.key), i.packets, i.bytes) for i in applied))
    state = accountant.ledger.node(NODE)
    assert state is not None
    counters = sorted(
        (str(c.key), c.raw_packets, c.raw_bytes, c.rule_ids, c.total_packets, c.total_bytes, c.retired_at)
        for c in accountant.ledger.counters(NODE).values()
    )
    series = [
        (f.family, sorted(zip(f.labels, f.values, strict=True))) for f in accountant.view(99.0).families
    ]
    node = (state.resets, state.counters_known, state.counters_retired, state.sequence, state.sequence_gaps)
    return increases, counters, series, node, dict(accountant.ledger.chain_comments(NODE))


@settings(max_examples=60, deadline=None)
@given(rng=st.randoms(use_true_random=False), resync=st.sets(st.integers(1, 11), max_size=2))
def test_by_id_and_whole_give_identical_accounting(rng: random.Random, resync: set[int]) -> None:
    reads = evolving_reads(rng, 12, size=rng.randint(1, 6))
    keyed = agent_messages(reads, by_id=True, resync_at=frozenset(resync))
    plain = agent_messages(reads, by_id=False, resync_at=frozenset(resync))
    for by_id, whole in zip(keyed, plain, strict=True):  # each change sent once, either way
        assert len(by_id.counters) + len(by_id.values.ids) == len(whole.counters)
        assert len(by_id.removed) + len(by_id.removed_ids) == len(whole.removed)
    assert _outcome(keyed) == _outcome(plain)


def _applied(accountant: Accountant, message: pb.NodeSnapshot, now: float = 1.0) -> DecodedSnapshot:
    update = decode_snapshot(message)
    accountant.apply(update, now)
    return update


def _delta(sequence: int, **fields: object) -> pb.NodeSnapshot:
    base: dict[str, object] = {
        "node": NODE,
        "agent_instance_id": "agent-k",
        "sequence": sequence,
        "read_time": T0,
        "full": False,
        "records": (),
    }
    return build_snapshot(**(base | fields))  # type: ignore[arg-type]


def _started(accountant: Accountant) -> list[pb.NodeSnapshot]:
    messages = agent_messages(evolving_reads(random.Random(5), 2, size=3), by_id=True)
    _applied(accountant, messages[0])
    return messages


def _frozen(accountant: Accountant) -> list[tuple[object, ...]]:
    return sorted(astuple(c) for c in accountant.ledger.counters(NODE).values())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"values": KeyedColumns([999], [1], [1])}, RefusalProblem.UNKNOWN_KEY_ID),
        ({"values": KeyedColumns([1, 999], [50, 1], [5000, 1])}, RefusalProblem.UNKNOWN_KEY_ID),
        ({"removed_ids": [999]}, RefusalProblem.UNKNOWN_KEY_ID),
        ({"records": (accept("cali9", "cali-pi-_z", 1),), "key_ids": (1,)}, RefusalProblem.KEY_ID_CONFLICT),
    ],
)
def test_untrustworthy_ids_refuse_the_whole_snapshot(
    fields: dict[str, object], problem: RefusalProblem
) -> None:
    accountant = _accountant()
    _started(accountant)
    before = _frozen(accountant)
    with pytest.raises(SnapshotRefused) as refused:
        _applied(accountant, _delta(2, **fields))
    assert refused.value.refusal.problem is problem and problem.is_sequence  # ingest asks for a resync
    assert _frozen(accountant) == before
    state = accountant.ledger.node(NODE)
    assert state is not None and state.sequence == 1 and state.sequence_gaps == 1


def test_whole_counters_without_ids_and_values_by_id_mix() -> None:
    accountant = _accountant()
    messages = _started(accountant)
    first = decode_snapshot(messages[0]).records
    grown = first[1]._replace(packets=first[1].packets + 3, bytes=first[1].bytes + 30)
    key_id = messages[0].counters[0].key_id
    _applied(
        accountant,
        _delta(
            2, records=[grown], values=KeyedColumns([key_id], [first[0].packets + 2], [first[0].bytes + 20])
        ),
    )
    counters = accountant.ledger.counters(NODE)
    assert counters[first[0].key].total_packets - first[0].packets == 2
    assert counters[grown.key].total_packets - first[1].packets == 3


def test_a_table_over_the_node_cap_is_a_limit_refusal() -> None:
    accountant = _accountant(limits=Limits(max_counters_per_node=20))
    messages = _started(accountant)
    count = len(messages[0].counters)
    again = [decode_snapshot(messages[0]).records[0]] * (21 - count)  # one key under ever new ids
    with pytest.raises(SnapshotRefused) as refused:
        _applied(accountant, _delta(2, records=again, key_ids=range(100, 100 + len(again))))
    assert refused.value.refusal.problem is RefusalProblem.TOO_MANY_COUNTERS
    state = accountant.ledger.node(NODE)
    assert state is not None and state.limit_refusals == 1


def test_ids_without_end_for_the_same_keys_are_refused() -> None:
    accountant = _accountant()
    messages = _started(accountant)
    first = decode_snapshot(messages[0]).records
    next_id, sequence = 1000, 2
    with pytest.raises(SnapshotRefused) as refused:
        while sequence < 100:  # the same counters again and again under new ids
            ids = range(next_id, next_id + len(first))
            _applied(accountant, _delta(sequence, records=first, key_ids=ids))
            next_id, sequence = next_id + len(first), sequence + 1
    assert refused.value.refusal.problem is RefusalProblem.TOO_MANY_COUNTERS
    assert sequence == 3  # the table holds at most the counters plus one snapshot's definitions


def test_after_a_restore_ids_must_be_defined_again() -> None:
    reads = evolving_reads(random.Random(11), 5, size=3)
    messages = agent_messages(reads, by_id=True)
    first = _accountant()
    for index, message in enumerate(messages[:3]):
        _applied(first, message, float(index))
    restored = _accountant()
    restored.restore(first.capture()[0], [], [])  # a checkpoint keeps no ids
    with pytest.raises(SnapshotRefused) as refused:
        _applied(restored, messages[3], 3.0)
    assert len(messages[3].values.ids) and refused.value.refusal.problem is RefusalProblem.UNKNOWN_KEY_ID
    resent = agent_messages(reads, by_id=True, resync_at=frozenset({3}))  # the agent's full resync
    for index, message in enumerate(resent[3:], start=3):
        _applied(restored, message, float(index))
    for index, message in enumerate(messages[3:], start=3):
        _applied(first, message, float(index))
    totals = [
        sorted((str(c.key), c.total_packets, c.total_bytes) for c in a.ledger.counters(NODE).values())
        for a in (first, restored)
    ]
    assert totals[0] == totals[1]


def test_expired_counters_leave_the_table() -> None:
    accountant = _accountant()
    messages = _started(accountant)
    record = decode_snapshot(messages[0]).records[0]
    key_id = messages[0].counters[0].key_id
    _applied(accountant, _delta(2, removed=[record.key]), 1.0)  # removed by key: the id stays meanwhile
    _applied(accountant, _delta(3, values=KeyedColumns([key_id], [record.packets], [record.bytes])), 2.0)
    assert accountant.ledger.counters(NODE)[record.key].live  # a value by id brought it back
    _applied(accountant, _delta(4, removed=[record.key]), 3.0)
    assert accountant.expire(100.0) >= 0 and record.key not in accountant.ledger.counters(NODE)
    with pytest.raises(SnapshotRefused) as refused:
        _applied(accountant, _delta(5, values=KeyedColumns([key_id], [1], [1])), 101.0)
    assert refused.value.refusal.problem is RefusalProblem.UNKNOWN_KEY_ID


def test_a_full_snapshot_of_a_new_instance_drops_the_old_ids() -> None:
    accountant = _accountant()
    messages = _started(accountant)
    plain_full = decode_snapshot(messages[0])
    records = plain_full.records
    _applied(
        accountant,
        build_snapshot(
            node=NODE, agent_instance_id="agent-2", sequence=1, read_time=T0, full=True, records=records
        ),
    )
    delta = _delta(2, values=KeyedColumns([messages[0].counters[0].key_id], [1], [1]))
    delta.agent_instance_id = "agent-2"
    with pytest.raises(SnapshotRefused) as refused:
        _applied(accountant, delta)
    assert refused.value.refusal.problem is RefusalProblem.UNKNOWN_KEY_ID
