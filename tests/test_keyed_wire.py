"""The dictionary encoding on the wire (calico_accountant.wire.keyed): ids per key on the
agent, the choice between a whole counter and a value by id, the message round trip,
chunking, and what the decoder refuses."""

from __future__ import annotations

import random

import pytest

from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.chunks import ChunkAssembler, split_snapshot
from calico_accountant.wire.delta import compute_delta
from calico_accountant.wire.keyed import KeyedColumns, KeyIds, encode_delta, encode_read
from calico_accountant.wire.snapshots import build_snapshot, decode_snapshot
from tests.support.accounting import accept, deny, policy_rule
from tests.support.keyed import T0, agent_messages, evolving_reads

A = accept("cali1", "cali-pi-_a", 5)
B = deny("cali1", "cali-pi-_a", 2)
C = policy_rule("cali-pi-_a", 0, "allow", 7, comment="Policy a")


def _snapshot(**fields: object) -> pb.NodeSnapshot:
    base: dict[str, object] = {
        "node": "n1",
        "agent_instance_id": "i1",
        "sequence": 2,
        "read_time": T0,
        "full": False,
        "records": (),
    }
    return build_snapshot(**(base | fields))  # type: ignore[arg-type]


def test_ids_are_stable_per_key_and_never_reused() -> None:
    ids = KeyIds()
    assert ids.for_full([A, B]) == [1, 2]
    assert ids.for_full([B, C, A]) == [2, 3, 1]  # kept, and a new one for the new key
    assert ids.drop(C.key) == 3
    assert ids.assign(C.key) == 4  # back: a new id, never the freed one
    assert ids.for_full([A]) == [1] and len(ids) == 1  # a full snapshot forgets absent keys


def test_only_value_changes_go_by_id() -> None:
    ids = KeyIds()
    acked = {r.key: r for r in (A, B, C)}
    encode_read(ids, None, acked, by_id=True)
    grown = A._replace(packets=9, bytes=900)
    rewritten = B._replace(rule_ids=("j1", "r2", "n1"), packets=3)
    commented = C._replace(chain_comment="Policy a (renamed)")
    new = accept("cali2", "cali-pi-_a", 1)
    current = {r.key: r for r in (grown, rewritten, commented, new)}
    encoded = encode_delta(ids, acked, compute_delta(acked, current))
    assert list(encoded.values.ids) == [ids.get(A.key)] and list(encoded.values.packets) == [9]
    assert list(encoded.values.bytes) == [900]
    assert encoded.defined == (rewritten, commented, new)
    assert encoded.defined_ids == (ids.get(B.key), ids.get(C.key), 4)  # same ids; the new key a new one
    current.pop(new.key)
    gone = encode_delta(ids, {**acked, new.key: new}, compute_delta({**acked, new.key: new}, current))
    assert gone.removed_ids == (4,) and gone.removed == ()


def test_round_trip_and_what_a_plain_delta_carries() -> None:
    message = _snapshot(
        records=(A,), key_ids=(7,), values=KeyedColumns([1, 2], [10, 2**64 - 1], [0, 5]), removed_ids=[3]
    )
    decoded = decode_snapshot(pb.NodeSnapshot.FromString(message.SerializeToString()))
    assert decoded.records == (A,) and list(decoded.key_ids) == [7]
    assert (list(decoded.values.ids), list(decoded.values.packets), list(decoded.values.bytes)) == (
        [1, 2],
        [10, 2**64 - 1],
        [0, 5],
    )
    assert list(decoded.removed_ids) == [3] and decoded.size == 3
    plain = decode_snapshot(_snapshot(records=(A, B)))
    assert plain.key_ids == [] and len(plain.values) == 0 and plain.removed_ids == []


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"values": KeyedColumns([1, 2], [1], [1, 2])}, "unequal length"),
        ({"values": KeyedColumns([0], [1], [1])}, "id 0"),
        ({"values": KeyedColumns([4, 4], [1, 2], [1, 2])}, "listed twice"),
        ({"removed_ids": [5, 5]}, "listed twice"),
        ({"full": True, "values": KeyedColumns([1], [1], [1])}, "full snapshot"),
        ({"records": (A, B), "key_ids": (3, 3)}, "defined twice with different keys"),
    ],
)
def test_malformed_encodings_are_wire_errors(fields: dict[str, object], why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode_snapshot(_snapshot(**fields))


def test_an_id_defined_twice_for_the_same_key_is_allowed() -> None:
    assert list(decode_snapshot(_snapshot(records=(A, A), key_ids=(3, 3))).key_ids) == [3, 3]


def test_an_unequal_column_sent_raw_is_refused() -> None:
    message = _snapshot()
    message.values.ids.extend([1, 2])
    message.values.packets.extend([1, 2])
    message.values.bytes.append(1)
    with pytest.raises(WireError, match="unequal"):
        decode_snapshot(message)


@pytest.mark.parametrize("max_bytes", [300, 700, 2000])
def test_chunked_keyed_snapshots_come_back_whole(max_bytes: int) -> None:
    rng = random.Random(max_bytes)
    reads = evolving_reads(rng, 4, size=30)
    messages = agent_messages(reads, by_id=True)
    for message in messages:
        message.values.ids.extend(range(10_000, 10_400))  # long columns: several chunks of them
        message.values.packets.extend(range(400))
        message.values.bytes.extend(range(400))
        message.removed_ids.extend(range(20_000, 20_100))
        message.full = False
        chunks = split_snapshot(message, max_bytes)
        assert len(chunks) > 1 and all(chunk.ByteSize() <= max_bytes for chunk in chunks)
        assembler = ChunkAssembler()
        wholes = [assembler.add(chunk) for chunk in chunks]
        assert wholes[:-1] == [None] * (len(chunks) - 1)
        assert wholes[-1] == message
