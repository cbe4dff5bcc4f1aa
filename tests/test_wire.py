"""Records <-> wire messages: round trips, validation, deltas, chunking and reassembly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic, Direction, Kind
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.chunks import ChunkAssembler, split_snapshot
from calico_accountant.wire.counters import counter_to_record, key_to_counter, record_to_counter
from calico_accountant.wire.delta import compute_delta, index_records
from calico_accountant.wire.snapshots import SourceInfo, build_snapshot, decode_snapshot

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def accept(
    interface: str, packets: int, chain: str = "cali-pi-_abc", ids: tuple[str, ...] = ("h1",)
) -> CounterRecord:
    return CounterRecord(
        CounterKey(Kind.POLICY_ACCEPT, 4, Direction.INGRESS, interface, chain, "default"),
        packets,
        packets * 60,
        ids,
        chain_comment="Policy prod/web ingress",
    )


def rule(chain: str, index: int, action: str, packets: int) -> CounterRecord:
    return CounterRecord(
        CounterKey(Kind.POLICY_RULE, 6, Direction.EGRESS, "", chain, "security", index, action),
        packets,
        packets,
    )


records_strategy = st.lists(
    st.builds(
        lambda i, p, b, ids, members: CounterRecord(
            CounterKey(Kind.POLICY_DENY, 4, Direction.EGRESS, f"cali{i:05d}", "cali-go-grp", "t1"),
            p,
            b,
            tuple(ids),
            group_members=tuple(members),
        ),
        st.integers(0, 99999),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.lists(st.text(alphabet="abcdef0123456789", min_size=1, max_size=16), max_size=3),
        st.lists(st.sampled_from(["cali-po-a", "cali-po-b"]), max_size=2),
    ),
    max_size=200,
)


def test_record_round_trip_keeps_every_field() -> None:
    for record in (accept("cali1", 5), rule("cali-po-x", 3, "deny", 2**64 - 1)):
        assert counter_to_record(record_to_counter(record)) == record
    key = rule("cali-po-x", 3, "pass", 1).key
    back = counter_to_record(key_to_counter(key))
    assert back.key == key and back.packets == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: setattr(c, "kind", 0), "unknown counter kind"),
        (lambda c: setattr(c, "direction", 0), "unknown direction"),
        (lambda c: setattr(c, "family", 5), "family must be 4 or 6"),
        (lambda c: setattr(c, "interface", ""), "without an interface"),
        (lambda c: setattr(c, "rule_index", 2), "carries rule_index"),
    ],
)
def test_invalid_counters_are_rejected_with_a_reason(mutate, message) -> None:  # type: ignore[no-untyped-def]
    counter = record_to_counter(accept("cali1", 1))
    mutate(counter)
    with pytest.raises(WireError, match=message):
        counter_to_record(counter)


def test_policy_rule_needs_a_known_action_and_index() -> None:
    counter = record_to_counter(rule("cali-pi-x", 0, "allow", 1))
    counter.action = "explode"
    with pytest.raises(WireError, match="action"):
        counter_to_record(counter)
    counter.action, counter.rule_index = "allow", -1
    with pytest.raises(WireError, match="rule_index"):
        counter_to_record(counter)


def test_delta_lists_changed_new_and_removed() -> None:
    previous = index_records([accept("a", 1), accept("b", 2), accept("c", 3)])
    current = index_records(
        [accept("a", 1), accept("b", 5), accept("b", 2, chain="cali-pi-other"), accept("d", 0)]
    )
    delta = compute_delta(previous, current)
    changed = {(r.key.interface, r.key.chain, r.packets) for r in delta.changed}
    assert changed == {("b", "cali-pi-_abc", 5), ("b", "cali-pi-other", 2), ("d", "cali-pi-_abc", 0)}
    assert [k.interface for k in delta.removed] == ["c"]
    assert compute_delta(current, current).empty


def test_delta_sees_a_rule_id_change_with_the_same_value() -> None:
    previous = index_records([accept("a", 7, ids=("h1",))])
    current = index_records([accept("a", 7, ids=("h2",))])
    assert [r.rule_ids for r in compute_delta(previous, current).changed] == [("h2",)]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(("h1", "h2"))), min_size=0, max_size=12),
    edits=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 3), st.sampled_from(("h1", "h2", "h3")))),
    reorder=st.booleans(),
    drop=st.integers(-1, 11),
)
def test_delta_is_what_differs_whatever_the_shape(
    values: list[tuple[int, str]], edits: list[tuple[int, int, str]], reorder: bool, drop: int
) -> None:
    """The agent's usual case (same keys in the same order, unmoved records the same
    objects) takes a shortcut; every shape must give what the definition says."""
    before = [accept(f"cali{i}", packets, ids=(rule_id,)) for i, (packets, rule_id) in enumerate(values)]
    after = list(before)
    for position, packets, rule_id in edits:
        if position < len(after):
            after[position] = accept(f"cali{position}", packets, ids=(rule_id,))
    if reorder:
        after.reverse()
    if 0 <= drop < len(after):
        del after[drop]
    previous, current = index_records(before), index_records(after)
    delta = compute_delta(previous, current)
    assert delta.changed == tuple(record for key, record in current.items() if previous.get(key) != record)
    assert set(delta.removed) == set(previous) - set(current)


def _snapshot(
    records: list[CounterRecord], removed: list[CounterKey] | None = None, full: bool = True
) -> pb.NodeSnapshot:
    return build_snapshot(
        node="node-1",
        agent_instance_id="inst",
        sequence=7,
        read_time=T0,
        full=full,
        records=records,
        removed=removed or [],
        sources=[SourceInfo(pb.IPTABLES_NFT, 4, "iptables-nft-save -c -t filter", 1234)],
        diagnostic_counts={"garbled_line": 2},
        diagnostics=[Diagnostic("garbled_line", "what is this", 12, "iptables-save")],
        agent_version="9.9",
    )


def test_decode_gives_back_what_was_built() -> None:
    records = [accept(f"cali{i}", i) for i in range(5)]
    removed = [accept("gone", 0).key]
    update = decode_snapshot(_snapshot(records, removed, full=False))
    assert (update.node, update.agent_instance_id, update.sequence, update.full) == (
        "node-1",
        "inst",
        7,
        False,
    )
    assert update.read_time == T0
    assert list(update.records) == records and list(update.removed) == removed
    assert update.diagnostic_counts == {"garbled_line": 2}
    assert update.diagnostics[0].line == 12
    assert update.sources == (SourceInfo(pb.IPTABLES_NFT, 4, "iptables-nft-save -c -t filter", 1234),)
    assert update.agent_version == "9.9" and update.invalid_counters == 0


def test_decode_skips_and_counts_invalid_counters() -> None:
    snapshot = _snapshot([accept("a", 1), accept("b", 2)])
    snapshot.counters[0].family = 7
    update = decode_snapshot(snapshot)
    assert [r.key.interface for r in update.records] == ["b"]
    assert update.invalid_counters == 1
    assert any("family" in reason for reason in update.invalid_reasons)


@pytest.mark.parametrize("field", ["node", "agent_instance_id", "sequence", "read_time"])
def test_decode_refuses_a_snapshot_it_cannot_place(field: str) -> None:
    snapshot = _snapshot([accept("a", 1)])
    snapshot.ClearField(field)
    with pytest.raises(WireError):
        decode_snapshot(snapshot)


def test_small_snapshot_is_not_chunked() -> None:
    snapshot = _snapshot([accept("a", 1)])
    assert split_snapshot(snapshot, 1 << 20) == [snapshot]


@settings(max_examples=40, deadline=None)
@given(records=records_strategy, limit=st.integers(600, 5000))
def test_chunks_fit_the_limit_and_reassemble_exactly(records: list[CounterRecord], limit: int) -> None:
    removed = [accept(f"gone{i}", 0).key for i in range(len(records) // 3)]
    snapshot = _snapshot(records, removed)
    chunks = split_snapshot(snapshot, limit)
    assert all(chunk.ByteSize() <= limit for chunk in chunks)
    if len(chunks) > 1:
        assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
        assert {c.chunk_count for c in chunks} == {len(chunks)}
        assert all(c.sequence == 7 and c.node == "node-1" for c in chunks)
    assembler = ChunkAssembler()
    outputs = [assembler.add(chunk) for chunk in chunks]
    assert all(out is None for out in outputs[:-1])
    whole = outputs[-1]
    assert whole is not None and not assembler.pending
    update = decode_snapshot(whole)
    assert list(update.records) == records
    assert list(update.removed) == removed
    assert update.diagnostic_counts == {"garbled_line": 2} and len(update.sources) == 1


def test_a_counter_larger_than_the_limit_is_an_error() -> None:
    big = CounterRecord(accept("a", 1).key, 1, 1, tuple(f"id{i}" for i in range(200)))
    with pytest.raises(WireError, match="does not fit"):
        split_snapshot(_snapshot([big, accept("b", 1)]), 600)


def _chunks(count: int = 3) -> list[pb.NodeSnapshot]:
    chunks = split_snapshot(_snapshot([accept(f"cali{i:04d}", i) for i in range(60)]), 1200)
    assert len(chunks) >= count
    return chunks


def test_assembler_rejects_a_chunk_out_of_order_and_recovers() -> None:
    chunks = _chunks()
    assembler = ChunkAssembler()
    assert assembler.add(chunks[0]) is None
    with pytest.raises(WireError, match="chunk 2 where 1 was due"):
        assembler.add(chunks[2])
    assert not assembler.pending
    for chunk in chunks[:-1]:
        assert assembler.add(chunk) is None
    assert assembler.add(chunks[-1]) is not None


def test_assembler_rejects_interleaved_snapshots() -> None:
    chunks = _chunks()
    assembler = ChunkAssembler()
    assembler.add(chunks[0])
    other = pb.NodeSnapshot()
    other.CopyFrom(chunks[1])
    other.sequence = 8
    with pytest.raises(WireError, match="interleaved"):
        assembler.add(other)
    assembler.add(chunks[0])
    with pytest.raises(WireError, match="unchunked snapshot"):
        assembler.add(_snapshot([accept("x", 1)]))


def test_assembler_rejects_a_start_in_the_middle_and_absurd_counts() -> None:
    chunks = _chunks()
    with pytest.raises(WireError, match="starts at chunk 1"):
        ChunkAssembler().add(chunks[1])
    absurd = pb.NodeSnapshot()
    absurd.CopyFrom(chunks[0])
    absurd.chunk_count = 10**6
    with pytest.raises(WireError, match="exceeds"):
        ChunkAssembler().add(absurd)
    with pytest.raises(WireError, match="exceeds 5 counters"):
        small = ChunkAssembler(max_counters=5)
        for chunk in chunks:
            small.add(chunk)
