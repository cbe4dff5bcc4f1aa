"""Checkpoints: counters that continue exactly across restarts, and never lie.

* the codec round-trips a populated state, and refuses corrupt and foreign bytes whole;
* an accountant restored from a checkpoint continues exactly as one that never stopped;
* the file store replaces atomically; the etcd store (a real etcd) chunks big checkpoints;
* property: random snapshots, counter resets, catalog changes, expiries and checkpoint
  restarts never make an exported series decrease within a process life, and a restore
  continues every series from its checkpointed value.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.accountant import Accountant
from aggregator.checkpoint.codec import Checkpoint, CheckpointError, CheckpointProblem, decode, encode
from aggregator.checkpoint.etcd import CHUNK_BYTES, EtcdCheckpointStore
from aggregator.checkpoint.file import FileCheckpointStore
from aggregator.checkpoint.keeper import CheckpointKeeper, RestoreOutcome
from aggregator.datastore.spec import parse_datastore_spec
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot, NodeState
from aggregator.series.options import SeriesOptions
from aggregator.series.views import StateView
from calico_accountant.records import CounterRecord
from tests.support.accounting import FakeCatalog, accept, deny, no_policy_drop, policy_rule, snapshot
from tests.support.etcd_server import EtcdServer

Series = dict[tuple[str, tuple[str, ...]], tuple[int, int]]


def catalog() -> FakeCatalog:
    return (
        FakeCatalog()
        .add_pod("n1", "cali1", "shop", "web-1", "web")
        .add_pod("n1", "cali2", "shop", "web-2", "web")
        .add_pod("n2", "cali3", "shop", "api-1", "api")
        .add_policy("cali-pi-allow", "allow-web", "shop")
        .add_policy("cali-po-guard", "guard", "", tier="security")
    )


def accountant(**ledger: object) -> Accountant:
    return Accountant(
        catalog(),
        options=SeriesOptions(compat=True),
        ledger=Ledger(first_snapshot=FirstSnapshot.BASELINE, **ledger),  # type: ignore[arg-type]
    )


def series(view: StateView) -> Series:
    return {
        (family.family.packets_name, labels): value
        for family in view.families
        for labels, value in family.series
    }


def reads(factor: int) -> dict[str, list[CounterRecord]]:
    return {
        "n1": [
            accept("cali1", "cali-pi-allow", 10 * factor),
            deny("cali2", "cali-pi-allow", 3 * factor),
            no_policy_drop("cali2", 2 * factor),
            policy_rule("cali-pi-allow", 0, "allow", 10 * factor),
        ],
        "n2": [accept("cali3", "cali-po-guard", 7 * factor), accept("cali3", "cali-pi-unknown", factor)],
    }


def feed(acct: Accountant, factor: int, sequence: int) -> None:
    for node, records in reads(factor).items():
        acct.apply(snapshot(node, records, sequence=sequence), float(sequence))


def checkpoint_of(acct: Accountant) -> Checkpoint:
    nodes, families, tombstones = acct.capture()
    return Checkpoint(1_700_000_000.0, "test", nodes, families, tombstones)


def restored(data: bytes) -> Accountant:
    fresh = accountant()
    checkpoint = decode(data)
    assert fresh.restore(checkpoint.nodes, checkpoint.series, checkpoint.tombstones) == 0
    return fresh


def test_a_restored_accountant_continues_exactly_like_one_that_never_stopped() -> None:
    never_stopped = accountant()
    for sequence, factor in enumerate((1, 2, 5), start=1):
        feed(never_stopped, factor, sequence)
    before_restart = accountant()
    for sequence, factor in enumerate((1, 2), start=1):
        feed(before_restart, factor, sequence)
    data = encode(checkpoint_of(before_restart))
    after_restart = restored(data)
    assert series(after_restart.view(0)) == series(before_restart.view(0))
    assert any(value != (0, 0) for value in series(after_restart.view(0)).values())
    feed(after_restart, 5, 3)  # the agents' next reads, after the restart
    assert series(after_restart.view(3)) == series(never_stopped.view(3))
    assert sorted((t.counter.key, t.packets, t.bytes) for t in after_restart.totals()) == sorted(
        (t.counter.key, t.packets, t.bytes) for t in never_stopped.totals()
    )
    node = after_restart.ledger.node("n1")
    assert node is not None and node.sequence == 3 and node.diagnostic_totals == {}


def test_the_codec_round_trips_everything_a_restart_needs() -> None:
    acct = accountant(retired_grace=0)
    feed(acct, 1, 1)
    feed(acct, 3, 2)
    acct.apply(snapshot("n1", reads(4)["n1"][1:], sequence=3, diagnostics={"garbled_line": 2}), 3.0)
    acct.expire(10.0)  # cali1's counter expired: its workload series became a tombstone
    original = checkpoint_of(acct)
    decoded = decode(encode(original))
    assert decoded.created == original.created and decoded.written_by == "test"

    # what restore derives again (live/retired counts) or resets (connected) is not kept
    def kept(state: NodeState) -> NodeState:
        return replace(state, counters_known=0, counters_retired=0, connected=False)

    assert [kept(n.state) for n in decoded.nodes] == [kept(n.state) for n in original.nodes]
    assert [sorted(n.counters, key=repr) for n in decoded.nodes] == [
        sorted(n.counters, key=repr) for n in original.nodes
    ]
    assert list(decoded.series) == list(original.series)
    assert list(decoded.tombstones) == list(original.tombstones) and original.tombstones


def _header_and_body(data: bytes) -> tuple[dict[str, object], dict[str, object]]:
    head, _, payload = data.partition(b"\n")
    return json.loads(head), json.loads(zlib.decompress(payload))


def _with_body(data: bytes, body: dict[str, object]) -> bytes:
    import hashlib

    header, _ = _header_and_body(data)
    payload = zlib.compress(json.dumps(body).encode())
    header.update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    return json.dumps(header).encode() + b"\n" + payload


def test_corrupt_and_foreign_checkpoints_are_refused_whole() -> None:
    acct = accountant()
    feed(acct, 1, 1)
    feed(acct, 2, 2)
    data = encode(checkpoint_of(acct))
    _, body = _header_and_body(data)
    nodes = body["nodes"]
    assert isinstance(nodes, list)
    nodes[0]["counters"][0][8] = -5  # a negative raw counter, with a valid digest
    cases = {
        CheckpointProblem.CORRUPT: [
            data[:-10],
            data[:-1] + bytes([data[-1] ^ 1]),
            _with_body(data, body),
            _with_body(data, {"nodes": "x", "series": [], "tombstones": []}),
        ],
        CheckpointProblem.FOREIGN: [
            b"",
            b"PK\x03\x04 a zip file",
            data.replace(b'"version":1', b'"version":2', 1),
            data.replace(b"calico-accountant-checkpoint", b"some-other-checkpoint", 1),
        ],
    }
    for problem, samples in cases.items():
        for sample in samples:
            with pytest.raises(CheckpointError) as refused:
                decode(sample)
            assert refused.value.problem is problem, sample[:60]


_POISON_COUNTER_FIELDS = [
    (0, "no_such_kind"),  # a kind this release does not know
    (0, ["policy_accept"]),  # not a string (and not hashable)
    (2, 1),  # a direction that is not a string
    (2, "sideways"),
    (10, ["cali:abc", 7]),  # a rule id that is not a string
    (10, "cali:abc"),  # rule ids not a list
    (14, [None]),  # a group member that is not a string
    (16, "satellite"),  # an endpoint kind this release does not know
]


@pytest.mark.parametrize(("field", "value"), _POISON_COUNTER_FIELDS)
def test_a_poison_counter_field_refuses_the_checkpoint_whole(field: int, value: object) -> None:
    """Each field a restore decodes is checked: a checkpoint with one wrong value is corrupt,
    never half restored and never a crash."""
    acct = accountant()
    feed(acct, 1, 1)
    data = encode(checkpoint_of(acct))
    _, body = _header_and_body(data)
    nodes = body["nodes"]
    assert isinstance(nodes, list)
    counter = nodes[0]["counters"][0]
    if field == 16 and len(counter) == 16:
        counter.append("workload")
    counter[field] = value
    with pytest.raises(CheckpointError) as refused:
        decode(_with_body(data, body))
    assert refused.value.problem is CheckpointProblem.CORRUPT


@pytest.mark.parametrize("poison", [5, None, ["x"]])
def test_a_poison_series_label_refuses_the_checkpoint_whole(poison: object) -> None:
    """A label value that is not a string (with the right number of labels) is corrupt."""
    acct = accountant()
    feed(acct, 1, 1)
    data = encode(checkpoint_of(acct))
    _, body = _header_and_body(data)
    series = body["series"]
    assert isinstance(series, list) and series[0]["values"]
    labels = series[0]["values"][0][0]
    assert isinstance(labels, list) and labels
    labels[-1] = poison
    with pytest.raises(CheckpointError) as refused:
        decode(_with_body(data, body))
    assert refused.value.problem is CheckpointProblem.CORRUPT
    assert "expected strings" in str(refused.value)


def test_the_keeper_restores_or_refuses_and_counts_what_happened(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "checkpoint"
        acct = accountant()
        feed(acct, 1, 1)
        feed(acct, 2, 2)
        keeper = CheckpointKeeper(acct, FileCheckpointStore(path))
        figures = await keeper.write()
        assert figures.size == path.stat().st_size > 0
        fresh = accountant()
        assert await CheckpointKeeper(fresh, FileCheckpointStore(path)).restore() is RestoreOutcome.RESTORED
        assert series(fresh.view(0)) == series(acct.view(0))
        empty = accountant()
        missing = CheckpointKeeper(empty, FileCheckpointStore(tmp_path / "none"))
        assert await missing.restore() is RestoreOutcome.NONE
        path.write_bytes(path.read_bytes()[:-3])
        broken = accountant()
        refusing = CheckpointKeeper(broken, FileCheckpointStore(path))
        assert await refusing.restore() is RestoreOutcome.CORRUPT
        assert broken.ledger.node_names() == []  # nothing half-applied
        assert refusing.metrics.restores.labels("corrupt")._value.get() == 1

    asyncio.run(scenario())


def test_the_file_store_replaces_atomically(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileCheckpointStore(tmp_path / "deep" / "checkpoint")
        assert await store.load() is None
        await store.save(b"one")
        await store.save(b"two")
        assert await store.load() == b"two"
        assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["checkpoint"]  # no temporaries

    asyncio.run(scenario())


def test_the_etcd_store_chunks_a_big_checkpoint_and_keeps_one_generation(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
        store = EtcdCheckpointStore(spec)  # type: ignore[arg-type]
        try:
            assert await store.load() is None
            big = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 17)
            await store.save(big)
            assert await store.load() == big
            await store.save(b"small")
            assert await store.load() == b"small"
            kv = await _keys(etcd)
            assert sum(1 for key in kv if "/data/" in key) == 1  # older generations deleted
        finally:
            await store.close()

    asyncio.run(scenario())


async def _keys(etcd: EtcdServer) -> list[str]:
    from aetcd import rpc

    from aggregator.datastore.etcd_channel import EtcdChannel

    channel = EtcdChannel(parse_datastore_spec(f"etcd://{etcd.endpoint}"))  # type: ignore[arg-type]
    try:
        got = await rpc.KVStub(channel.get()).Range(
            rpc.RangeRequest(key=b"/calico-accountant/", range_end=b"/calico-accountant0", keys_only=True)
        )
        return [item.key.decode() for item in got.kvs]
    finally:
        await channel.close()


# -- property: never a decrease within a process life ------------------------------------------

_IFACES = ["cali1", "cali2", "cali3", "cali9"]
_CHAINS = ["cali-pi-allow", "cali-po-guard", "cali-pi-unknown"]


def _catalog_variant(known: frozenset[str]) -> FakeCatalog:
    cat = FakeCatalog()
    full = catalog()
    cat.workloads = {k: v for k, v in full.workloads.items() if k[1] in known}
    cat.policies = {k: v for k, v in full.policies.items() if k in known}
    if "renamed" in known:
        cat.add_policy("cali-pi-allow", "allow-web-v2", "shop")
    return cat


step = st.one_of(
    st.tuples(
        st.just("read"),
        st.sampled_from(["n1", "n2"]),
        st.dictionaries(
            st.tuples(st.sampled_from(_IFACES), st.sampled_from(_CHAINS)), st.integers(0, 50), max_size=6
        ),
    ),
    st.tuples(st.just("catalog"), st.frozensets(st.sampled_from([*_IFACES, *_CHAINS, "renamed"]))),
    st.tuples(st.just("expire"), st.integers(0, 30)),
    st.tuples(st.just("restart"), st.booleans()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_no_exported_series_ever_decreases_within_a_process_life(steps: Sequence[tuple[object, ...]]) -> None:
    acct = accountant(retired_grace=5.0, node_expiry=20.0)
    raw: dict[str, dict[tuple[str, str], int]] = {"n1": {}, "n2": {}}
    sequence = {"n1": 0, "n2": 0}
    instance = 0
    now = 0.0
    seen: Series = {}
    for kind, *args in steps:
        now += 1.0
        if kind == "read":
            node, moves = args
            assert isinstance(node, str) and isinstance(moves, dict)
            counters = raw[node]
            for where, amount in moves.items():
                # a negative step is a counter reset (felix rewrote the rule)
                counters[where] = amount if amount % 7 == 0 else counters.get(where, 0) + amount
            sequence[node] += 1
            records = [accept(iface, chain, value) for (iface, chain), value in sorted(counters.items())]
            acct.apply(snapshot(node, records, sequence=sequence[node], instance=f"i{instance}"), now)
        elif kind == "catalog":
            (known,) = args
            acct.set_resolver(_catalog_variant(known))  # type: ignore[arg-type]
        elif kind == "expire":
            (later,) = args
            now += float(later)  # type: ignore[arg-type]
            acct.expire(now)
        else:
            (with_checkpoint,) = args
            before = series(acct.view(now))
            if with_checkpoint:
                data = encode(checkpoint_of(acct))
                acct = restored(data)
                acct.set_resolver(_catalog_variant(frozenset([*_IFACES, *_CHAINS])))
                after = series(acct.view(now))
                for labels, value in after.items():  # continues from where it was
                    if labels in before:
                        assert value == before[labels], labels
            else:  # a new process without a checkpoint: counts from zero
                acct = accountant(retired_grace=5.0, node_expiry=20.0)
                sequence = {"n1": 0, "n2": 0}
                instance += 1
                seen = {}
            continue
        current = series(acct.view(now))
        for labels, value in current.items():
            old = seen.get(labels)
            assert old is None or (value[0] >= old[0] and value[1] >= old[1]), (labels, old, value)
        seen.update(current)
