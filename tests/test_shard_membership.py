"""The shared part of the membership backends (aggregator.shard.membership), what the etcd
backend makes of a key's value (bad values are skipped, logged, never fatal), and the etcd
backend against a real etcd: members see each other come and go, a replica whose lease
expired under it registers again, a clean stop is seen at once."""

from __future__ import annotations

import asyncio

import pytest

from aggregator.datastore.spec import EtcdSpec, parse_datastore_spec
from aggregator.shard.etcd import DEFAULT_PREFIX, EtcdMembership, decode_member
from aggregator.shard.membership import ViewKeeper
from aggregator.shard.ring import Member, Ring
from tests.support.etcd_leases import revoke_lease_of
from tests.support.etcd_server import EtcdServer
from tests.support.waits import async_wait_until

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


# -- the etcd backend against a real etcd ----------------------------------------------------


def _etcd_spec(etcd: EtcdServer) -> EtcdSpec:
    spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
    assert isinstance(spec, EtcdSpec)
    return spec


def test_etcd_members_see_each_other_come_and_go_and_an_expired_lease_registers_again(
    etcd: EtcdServer,
) -> None:
    spec = _etcd_spec(etcd)

    async def scenario() -> None:
        a = EtcdMembership(spec, ME, ttl=2, interval=0.1)
        b = EtcdMembership(spec, Member("shard-1", "10.0.0.2:9010"), ttl=2, interval=0.1)
        changes: list[set[str]] = []
        a.add_listener(lambda previous, current: changes.append(set(current.members)))
        await a.start()
        await b.start()
        try:
            await async_wait_until(
                lambda: set(a.ring.members) == {"shard-0", "shard-1"}, what="a sees b", timeout=10.0
            )
            await async_wait_until(
                lambda: set(b.ring.members) == {"shard-0", "shard-1"}, what="b sees a", timeout=10.0
            )
            # b's lease expires under it (etcd revokes it, its key goes): a sees b leave, b
            # registers again at its next round, and a sees it back.
            await revoke_lease_of(spec, f"{DEFAULT_PREFIX}shard-1".encode())
            await async_wait_until(lambda: {"shard-0"} in changes, what="a sees b's key go", timeout=10.0)
            await async_wait_until(
                lambda: set(a.ring.members) == {"shard-0", "shard-1"}, what="b registered again", timeout=10.0
            )
            assert b.view.metrics.errors._value.get() == 0
        finally:
            await b.close()
        # A clean stop revokes the lease: a sees b leave at its next read, not after the TTL.
        await async_wait_until(lambda: set(a.ring.members) == {"shard-0"}, what="b's clean stop", timeout=1.5)
        await a.close()

    asyncio.run(scenario())
