"""Shard membership in the datastore's etcd: one key per replica, attached to its lease.

Each replica puts ``/calico-accountant/v1/shards/<identity>`` = ``{"address": HOST:PORT}``
attached to a lease of ``ttl`` seconds, keeps the lease alive, and reads every key under
the prefix each ``interval`` seconds (a range read of a handful of small keys: cheaper to
reason about than a watch that must be re-armed, and at most ``interval`` late).  A replica
that dies stops its keep-alives and etcd deletes its key with the lease after ``ttl``; one
that stops cleanly revokes its lease, so its nodes move at the others' next read.  A lease
found expired (a long pause, etcd restored) is granted anew and the key put again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import grpc
from aetcd import rpc
from grpc.aio import EOF  # type: ignore[attr-defined]

from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.spec import EtcdSpec
from aggregator.shard.membership import MembershipMetrics, PolledMembership
from aggregator.shard.ring import Member

__all__ = ["DEFAULT_PREFIX", "EtcdMembership", "decode_member"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/calico-accountant/v1/shards/"
_ERRORS = (grpc.RpcError, asyncio.InvalidStateError, OSError, TimeoutError, EOFError)


def decode_member(key: bytes, value: bytes, prefix: str) -> Member | None:
    """A member from one key under ``prefix``; None (logged) for a value that is not ours."""
    identity = key.decode(errors="replace")[len(prefix) :]
    try:
        address = json.loads(value)["address"]
    except (ValueError, KeyError, TypeError):
        log.warning('shard membership: ignoring %s: not {"address": ...}', key.decode(errors="replace"))
        return None
    if not identity or not isinstance(address, str) or not address:
        return None
    return Member(identity, address)


class EtcdMembership(PolledMembership):
    """This replica's registration and view (see the module docstring)."""

    def __init__(
        self,
        spec: EtcdSpec,
        me: Member,
        *,
        ttl: int = 5,
        interval: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        metrics: MembershipMetrics | None = None,
    ) -> None:
        super().__init__(me, ttl, interval, metrics)
        self.channel = EtcdChannel(spec)
        self.prefix = prefix
        self.lease_id = 0
        self._keep_alive: Any = None

    TRANSIENT = _ERRORS

    def describe(self) -> str:
        return f"{self.channel.spec.describe()}{self.prefix}"

    async def refresh(self) -> None:
        if not self.lease_id or not await self._renew():
            await self._register()
        await self._read()

    async def recover(self, error: BaseException) -> None:
        self._drop_keep_alive()
        await self.channel.rotate()

    def explain(self, error: BaseException) -> str:
        if isinstance(error, grpc.aio.AioRpcError):
            return f"{error.code().name}: {error.details()}"
        return super().explain(error)

    async def _register(self) -> None:
        granted = await rpc.LeaseStub(self.channel.get()).LeaseGrant(
            rpc.LeaseGrantRequest(TTL=self.ttl), timeout=self.ttl
        )
        if granted.error:
            raise OSError(f"lease not granted: {granted.error}")
        self.lease_id = int(granted.ID)
        me = self.view.me
        await rpc.KVStub(self.channel.get()).Put(
            rpc.PutRequest(
                key=(self.prefix + me.identity).encode(),
                value=json.dumps({"address": me.address}).encode(),
                lease=self.lease_id,
            ),
            timeout=self.ttl,
        )
        log.info("shard membership %s: registered %s at %s", self.describe(), me.identity, me.address)

    async def _renew(self) -> bool:
        """One keep-alive; False when the lease is gone (expired or revoked)."""
        if self._keep_alive is None:
            self._keep_alive = rpc.LeaseStub(self.channel.get()).LeaseKeepAlive()
        async with asyncio.timeout(self.ttl):
            await self._keep_alive.write(rpc.LeaseKeepAliveRequest(ID=self.lease_id))
            answer = await self._keep_alive.read()
        if answer is EOF:
            raise EOFError("keep-alive stream ended")
        if answer.TTL <= 0:
            log.warning("shard membership %s: lease expired; registering again", self.describe())
            self.lease_id = 0
            return False
        return True

    async def _read(self) -> None:
        prefix = self.prefix.encode()
        found = await rpc.KVStub(self.channel.get()).Range(
            rpc.RangeRequest(key=prefix, range_end=_prefix_end(prefix)), timeout=self.ttl
        )
        members = [decode_member(kv.key, kv.value, self.prefix) for kv in found.kvs]
        self.view.update([member for member in members if member is not None], self.describe())

    def _drop_keep_alive(self) -> None:
        if self._keep_alive is not None:
            self._keep_alive.cancel()
            self._keep_alive = None

    async def close(self) -> None:
        await self.stop_polling()
        self._drop_keep_alive()
        if self.lease_id:
            with contextlib.suppress(*_ERRORS):
                await rpc.LeaseStub(self.channel.get()).LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=self.lease_id), timeout=2.0
                )
                log.info("shard membership %s: deregistered %s", self.describe(), self.view.me.identity)
            self.lease_id = 0
        await self.channel.close()


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``" (last byte + 1)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])
