"""The shared part of the membership backends (aggregator.shard.membership) and what the
etcd backend makes of a key's value (bad values are skipped, logged, never fatal)."""

from __future__ import annotations

import pytest

from aggregator.shard.etcd import DEFAULT_PREFIX, decode_member
from aggregator.shard.membership import ViewKeeper
from aggregator.shard.ring import Member, Ring

ME = Member("shard-0", "10.0.0.1:9010")


def test_this_replica_is_always_in_its_own_view() -> None:
    keeper = ViewKeeper(ME)
    assert set(keeper.ring.members) == {"shard-0"}
    keeper.update([Member("shard-1", "10.0.0.2:9010")], "test")
    assert set(keeper.ring.members) == {"shard-0", "shard-1"}


def test_listeners_hear_changes_only_and_a_failing_one_does_not_stop_the_others() -> None:
    keeper = ViewKeeper(ME)
    heard: list[tuple[set[str], set[str]]] = []

    def failing(previous: Ring, current: Ring) -> None:
        raise RuntimeError("a listener's bug")

    keeper.add_listener(failing)
    keeper.add_listener(lambda previous, current: heard.append((set(previous.members), set(current.members))))
    other = Member("shard-1", "10.0.0.2:9010")
    assert keeper.update([other], "test")
    assert not keeper.update([other, ME], "test")  # the same set: no change
    assert keeper.update([], "test")
    assert heard == [({"shard-0"}, {"shard-0", "shard-1"}), ({"shard-0", "shard-1"}, {"shard-0"})]
    assert keeper.metrics.changes._value.get() == 2


def test_a_moved_address_is_a_change() -> None:
    keeper = ViewKeeper(ME)
    keeper.update([Member("shard-1", "10.0.0.2:9010")], "test")
    assert keeper.update([Member("shard-1", "10.0.0.3:9010")], "test")
    owner = keeper.ring.members["shard-1"]
    assert owner.address == "10.0.0.3:9010"


def test_an_etcd_key_becomes_a_member() -> None:
    key = f"{DEFAULT_PREFIX}shard-1".encode()
    assert decode_member(key, b'{"address": "10.0.0.2:9010"}', DEFAULT_PREFIX) == Member(
        "shard-1", "10.0.0.2:9010"
    )


@pytest.mark.parametrize("value", [b"not json", b"[]", b"{}", b'{"address": 7}', b'{"address": ""}'])
def test_a_value_that_is_not_ours_is_skipped(value: bytes) -> None:
    assert decode_member(f"{DEFAULT_PREFIX}shard-1".encode(), value, DEFAULT_PREFIX) is None
