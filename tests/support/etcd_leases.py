"""What an expired lease looks like to its holder, made on demand in a real etcd: the
election's and the shard membership's tests revoke a holder's lease and watch it notice."""

from __future__ import annotations

from aetcd import rpc

from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.spec import EtcdSpec

__all__ = ["revoke_lease_of"]


async def revoke_lease_of(spec: EtcdSpec, key: bytes) -> None:
    """etcd revokes the lease ``key`` is attached to (and the key goes with it)."""
    channel = EtcdChannel(spec)
    try:
        found = await rpc.KVStub(channel.get()).Range(rpc.RangeRequest(key=key), timeout=5)
        await rpc.LeaseStub(channel.get()).LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=found.kvs[0].lease), timeout=5
        )
    finally:
        await channel.close()
