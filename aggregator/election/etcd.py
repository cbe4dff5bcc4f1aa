"""Leader election on etcd: a lease kept alive, and a key created only if absent.

Campaign: read the key (``/calico-accountant/v1/leader``); when nobody holds it, grant a
lease (TTL ``ttl`` seconds) and run one transaction: *if the key does not exist, put it*
with this replica's identity, attached to the lease.  The winner leads; a loser revokes
its lease and watches the key until it is deleted (the leader resigned, or its lease
expired and etcd deleted the key with it), then tries again.  The watch is re-armed every
``recheck`` seconds even without an event, so a lost watch costs at most that delay.

Holding: etcd renews a lease when a keep-alive *arrives*, which is after it was sent, so
the lease lives at least until ``sent + TTL`` of the last keep-alive etcd answered: that
is this replica's deadline.  Keep-alives go every TTL/3, each followed by a read of the key
(still there, still created by this leadership?).  Past the deadline without an answer,
an answer with TTL 0 (expired, revoked), or a key that is gone or recreated: leadership is
lost, no later than etcd could let another replica in (clocks running at the same rate).
A process paused longer than the TTL finds out when it resumes.

The key's create revision is this leadership's fencing token: the etcd checkpoint store
makes a checkpoint current only in a transaction that compares it
(:class:`aggregator.checkpoint.etcd.Fence`), so a deposed leader can never replace the
checkpoint its successor writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc
from grpc.aio import EOF  # type: ignore[attr-defined]

from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.spec import EtcdSpec
from aggregator.election.base import Tenure

__all__ = ["DEFAULT_KEY", "EtcdElection"]

log = logging.getLogger(__name__)

DEFAULT_KEY = "/calico-accountant/v1/leader"
_ERRORS = (grpc.RpcError, asyncio.InvalidStateError, OSError, TimeoutError, EOFError)
"""A request or stream that failed (etcd away, the call ended under us): retried, never fatal."""


class EtcdElection:
    """One replica's side of the election (see the module docstring)."""

    def __init__(
        self,
        spec: EtcdSpec,
        identity: str,
        *,
        key: str = DEFAULT_KEY,
        ttl: int = 5,
        recheck: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 2:
            raise ValueError(f"the leader lease TTL must be at least 2 seconds, not {ttl}")
        if not identity:
            raise ValueError("a replica needs a non-empty identity")
        self.channel = EtcdChannel(spec)
        self.identity = identity
        self.key = key.encode()
        self.ttl = ttl
        self.recheck = recheck if recheck is not None else 2.0 * ttl
        self.lease_id = 0
        self.create_revision = 0
        """The leader record's create revision while this replica leads (0 otherwise)."""
        self._holder = ""
        self._clock = clock
        self._deadline = 0.0
        self._tenure: Tenure | None = None

    def describe(self) -> str:
        return f"{self.channel.spec.describe()}{self.key.decode()}"

    @property
    def holder(self) -> str:
        return self._holder

    # -- campaigning ---------------------------------------------------------------------

    async def campaign(self) -> None:
        backoff = 0.2
        announced = None
        while True:
            try:
                revision = await self._try_acquire()
                if revision is None:
                    log.info("leader election %s: this replica (%s) leads", self.describe(), self.identity)
                    self._tenure = Tenure(self.describe(), self._keep_alive)
                    return
                if self._holder != announced:
                    announced = self._holder
                    log.info("leader election %s: standing by, %s leads", self.describe(), announced or "?")
                await self._wait_for_vacancy(revision)
                backoff = 0.2
            except _ERRORS as error:
                log.warning(
                    "leader election %s: %s; retrying in %.1f s", self.describe(), _describe(error), backoff
                )
                await self.channel.rotate()
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)

    async def _try_acquire(self) -> int | None:
        """None when this replica now leads; else the revision at which another held the key."""
        kv = rpc.KVStub(self.channel.get())
        found = await kv.Range(rpc.RangeRequest(key=self.key), timeout=self.ttl)
        if found.kvs:
            self._holder = found.kvs[0].value.decode(errors="replace")
            return int(found.header.revision)
        sent = self._clock()
        granted = await rpc.LeaseStub(self.channel.get()).LeaseGrant(
            rpc.LeaseGrantRequest(TTL=self.ttl), timeout=self.ttl
        )
        if granted.error:
            raise OSError(f"lease not granted: {granted.error}")
        won = False
        try:
            response = await kv.Txn(
                rpc.TxnRequest(
                    compare=[
                        rpc.Compare(
                            key=self.key,
                            result=rpc.Compare.EQUAL,
                            target=rpc.Compare.CREATE,
                            create_revision=0,
                        )
                    ],
                    success=[
                        rpc.RequestOp(
                            request_put=rpc.PutRequest(
                                key=self.key, value=self.identity.encode(), lease=granted.ID
                            )
                        )
                    ],
                    failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=self.key))],
                ),
                timeout=self.ttl,
            )
            if response.succeeded:
                won = True
                self.lease_id, self.create_revision = int(granted.ID), int(response.header.revision)
                self._holder = self.identity
                self._deadline = sent + granted.TTL
                return None
            kvs = response.responses[0].response_range.kvs
            self._holder = kvs[0].value.decode(errors="replace") if kvs else ""
            return int(response.header.revision)
        finally:
            if not won:
                await self._revoke(int(granted.ID))

    async def _wait_for_vacancy(self, revision: int) -> None:
        """Until the key is deleted after ``revision`` (or ``recheck`` seconds pass)."""
        stub = rpc.WatchStub(self.channel.get())
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(
                create_request=rpc.WatchCreateRequest(key=self.key, start_revision=revision + 1)
            )
            await done.wait()

        call = stub.Watch(requests())
        try:
            async with asyncio.timeout(self.recheck):
                async for response in call:
                    if response.canceled or response.compact_revision:
                        return
                    for event in response.events:
                        if event.type == rpc.Event.DELETE:
                            return
                        self._holder = event.kv.value.decode(errors="replace")
        except TimeoutError:
            return
        finally:
            done.set()
            call.cancel()

    # -- holding -------------------------------------------------------------------------

    async def lost(self) -> str:
        if self._tenure is None:
            raise RuntimeError("lost() before campaign() won")
        return await self._tenure.lost()

    async def _keep_alive(self) -> str:
        call: Any = None
        try:
            while True:
                remaining = self._deadline - self._clock()
                if remaining <= 0:
                    return f"no keep-alive was answered within the lease TTL ({self.ttl} s)"
                try:
                    if call is None:
                        call = rpc.LeaseStub(self.channel.get()).LeaseKeepAlive()
                    sent = self._clock()
                    async with asyncio.timeout(remaining):
                        await call.write(rpc.LeaseKeepAliveRequest(ID=self.lease_id))
                        answer = await call.read()
                        if answer is EOF:
                            raise EOFError("keep-alive stream ended")
                        if answer.TTL <= 0:
                            return "the lease expired or was revoked"
                        self._deadline = sent + answer.TTL
                        found = await rpc.KVStub(self.channel.get()).Range(rpc.RangeRequest(key=self.key))
                    if not found.kvs or found.kvs[0].create_revision != self.create_revision:
                        return "the leader record was deleted or replaced"
                except _ERRORS as error:
                    if call is not None:
                        call.cancel()
                        call = None
                    if self._deadline > self._clock():
                        log.warning("leader election %s: keep-alive: %s", self.describe(), _describe(error))
                        await self.channel.rotate()
                        await asyncio.sleep(min(0.2, max(0.0, self._deadline - self._clock())))
                    continue
                await asyncio.sleep(min(self.ttl / 3, max(0.0, self._deadline - self._clock())))
        finally:
            if call is not None:
                call.cancel()

    # -- letting go ----------------------------------------------------------------------

    async def resign(self) -> None:
        tenure, self._tenure = self._tenure, None
        if tenure is not None:
            await tenure.end()
        if self.lease_id:
            lease, self.lease_id, self.create_revision = self.lease_id, 0, 0
            if await self._revoke(lease):
                log.info("leader election %s: resigned", self.describe())
        await self.channel.close()

    async def _revoke(self, lease: int) -> bool:
        """Revoke ``lease`` (its keys go with it); False when etcd could not be told."""
        try:
            await rpc.LeaseStub(self.channel.get()).LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease), timeout=min(2.0, float(self.ttl))
            )
            return True
        except _ERRORS as error:
            log.debug("leader election %s: revoking lease %x: %s", self.describe(), lease, _describe(error))
            return False


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__
