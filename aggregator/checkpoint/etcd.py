"""A checkpoint in the datastore's etcd, under its own prefix.

etcd refuses values over 1.5 MiB (its default request limit), and a big cluster's
checkpoint is several MiB, so a checkpoint is written as numbered chunks under a new
*generation* prefix, and only then made current by one put of a small manifest
(``<prefix>current``: generation, chunk count, size).  A reader follows the manifest,
so it sees a whole previous or a whole new checkpoint, never a mix; older generations
(and the chunks of a write that died halfway) are deleted after the switch.  The
checkpoint's own header carries its SHA-256, so chunks that do not add up are refused
when decoded.

The switch (the manifest's put and the deletion of older generations) is one transaction.
With a :class:`Fence` (two replicas: the leadership that writes) that transaction also
compares the leader record's create revision, so a replica that is no longer the leader
cannot make its checkpoint current: its save fails with :class:`FencedOut` and the new
leader's checkpoint stays.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

from aetcd import rpc

from aggregator.checkpoint.stores import FencedOut
from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.spec import EtcdSpec

__all__ = ["DEFAULT_PREFIX", "EtcdCheckpointStore", "Fence"]

DEFAULT_PREFIX = "/calico-accountant/v1/checkpoint/"
CHUNK_BYTES = 1024 * 1024
"""Below etcd's default 1.5 MiB request limit with room for the key and the framing."""


def _range_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass(frozen=True, slots=True)
class Fence:
    """A save takes effect only while ``key`` exists and was created at ``create_revision``:
    the leader record of the leadership that writes (:mod:`aggregator.election.etcd`)."""

    key: bytes
    create_revision: int


class EtcdCheckpointStore:
    def __init__(self, spec: EtcdSpec, *, prefix: str = DEFAULT_PREFIX, timeout: float = 30.0) -> None:
        self.channel = EtcdChannel(spec)
        self.prefix = prefix
        self.timeout = timeout
        self.fence: Fence | None = None

    def describe(self) -> str:
        return f"{self.channel.spec.describe()}{self.prefix}"

    def _key(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    async def load(self) -> bytes | None:
        kv = rpc.KVStub(self.channel.get())
        try:
            found = await kv.Range(rpc.RangeRequest(key=self._key("current")), timeout=self.timeout)
            if not found.kvs:
                return None
            manifest = json.loads(found.kvs[0].value)
            generation, chunks = str(manifest["generation"]), int(manifest["chunks"])
            prefix = self._key("data", generation, "")
            got = await kv.Range(
                rpc.RangeRequest(
                    key=prefix,
                    range_end=_range_end(prefix),
                    sort_order=rpc.RangeRequest.ASCEND,
                    sort_target=rpc.RangeRequest.KEY,
                ),
                timeout=self.timeout,
            )
        except Exception:
            await self.channel.rotate()
            raise
        if len(got.kvs) != chunks:
            raise ValueError(f"checkpoint generation {generation}: {len(got.kvs)} of {chunks} chunks in etcd")
        return b"".join(item.value for item in got.kvs)

    async def save(self, data: bytes) -> None:
        kv = rpc.KVStub(self.channel.get())
        generation = f"{time.time_ns():020d}"
        chunks = [data[start : start + CHUNK_BYTES] for start in range(0, len(data), CHUNK_BYTES)] or [b""]
        try:
            for index, chunk in enumerate(chunks):
                await kv.Put(
                    rpc.PutRequest(key=self._key("data", generation, f"{index:06d}"), value=chunk),
                    timeout=self.timeout,
                )
            manifest = {"generation": generation, "chunks": len(chunks), "bytes": len(data)}
            switch = [
                rpc.RequestOp(
                    request_put=rpc.PutRequest(key=self._key("current"), value=json.dumps(manifest).encode())
                ),
                # every older generation, and any left by a write that died before its switch
                rpc.RequestOp(
                    request_delete_range=rpc.DeleteRangeRequest(
                        key=self._key("data", ""), range_end=self._key("data", generation)
                    )
                ),
            ]
            fence = self.fence
            compare = (
                []
                if fence is None
                else [
                    rpc.Compare(
                        key=fence.key,
                        result=rpc.Compare.EQUAL,
                        target=rpc.Compare.CREATE,
                        create_revision=fence.create_revision,
                    )
                ]
            )
            switched = await kv.Txn(rpc.TxnRequest(compare=compare, success=switch), timeout=self.timeout)
        except Exception:
            await self.channel.rotate()
            raise
        if not switched.succeeded:
            prefix = self._key("data", generation, "")
            with contextlib.suppress(Exception):
                await kv.DeleteRange(
                    rpc.DeleteRangeRequest(key=prefix, range_end=_range_end(prefix)), timeout=self.timeout
                )
            raise FencedOut("this replica no longer leads: its checkpoint was not made current")

    async def close(self) -> None:
        await self.channel.close()
