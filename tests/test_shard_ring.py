"""The pure part of sharding: rendezvous hashing over member ids (aggregator.shard.ring)."""

from __future__ import annotations

from collections import Counter

from aggregator.shard.ring import Member, Ring, owner_of, weight

NODES = [f"node-{index:04d}" for index in range(2000)]


def _ring(*names: str) -> Ring:
    return Ring.of(Member(name, f"{name}.shards:9010") for name in names)


def test_owner_does_not_depend_on_member_order() -> None:
    members = ["shard-0", "shard-1", "shard-2"]
    for node in NODES[:200]:
        assert owner_of(node, members) == owner_of(node, list(reversed(members)))


def test_weights_are_stable_across_processes() -> None:
    # A fixed value: the hash must be the same in every replica (not Python's salted hash).
    assert weight("shard-0", "node-0000") == weight("shard-0", "node-0000")
    assert weight("shard-0", "node-0000") != weight("shard-1", "node-0000")
    assert weight("a", "bc") != weight("ab", "c")


def test_nodes_spread_about_evenly() -> None:
    ring = _ring("shard-0", "shard-1")
    counts = Counter(owner.identity for node in NODES if (owner := ring.owner(node)) is not None)
    assert set(counts) == {"shard-0", "shard-1"}
    assert all(800 <= count <= 1200 for count in counts.values()), counts


def test_a_leaving_member_moves_only_its_own_nodes() -> None:
    three, two = _ring("shard-0", "shard-1", "shard-2"), _ring("shard-0", "shard-1")
    moved = two.moved(three, NODES)
    leaving = {node for node in NODES if (owner := three.owner(node)) and owner.identity == "shard-2"}
    assert set(moved) == leaving
    assert {owner.identity for owner in moved.values() if owner} == {"shard-0", "shard-1"}


def test_a_joining_member_takes_about_its_share_from_the_others() -> None:
    two, three = _ring("shard-0", "shard-1"), _ring("shard-0", "shard-1", "shard-2")
    moved = three.moved(two, NODES)
    assert all(owner is not None and owner.identity == "shard-2" for owner in moved.values())
    assert 500 <= len(moved) <= 830, len(moved)


def test_an_empty_ring_owns_nothing() -> None:
    assert Ring.of([]).owner("node-1") is None
    assert owner_of("node-1", []) is None
