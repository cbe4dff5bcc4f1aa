"""Calico's etcd v3 datastore as list + watch, feeding a :class:`DatastoreCache`.

The algorithm is the one every reliable etcd consumer uses:

1. **List** each resource prefix page by page, all pages at *one* revision (the first
   page's header revision ``R``), so the snapshot is consistent even while Calico writes.
2. **Watch** the whole ``/calico/resources/v3/projectcalico.org/`` prefix from ``R + 1``
   (one stream, so one resume point; keys of kinds we do not read are ignored).
3. When the stream breaks (etcd restarted, network), **re-watch** from the last
   revision seen + 1 with exponential backoff, rotating through the endpoints: no event
   is lost, and nothing is re-listed.
4. When etcd says that revision was **compacted**, re-list from scratch.

The watch is opened with etcd's *require leader* metadata (``hasleader: true``, what
clientv3's ``WithRequireLeader`` sends): a member cut off from the cluster's leader
cannot tell whether it still receives every change, and without the metadata it keeps the
watch open and silent for as long as the partition lasts.  With it, etcd ends the watch
with ``etcdserver: no leader`` a few election timeouts after losing the leader (and
refuses a new one at once), so step 3 moves on to another endpoint and resumes there.

The aetcd package's generated stubs and messages are used directly (``aetcd.rpc``):
its high-level client has no paginated/pinned range and no TLS, and its watch wrapper
hides the response headers that carry progress revisions.

A value that is not JSON or has the wrong shape is counted per reason and skipped; if
it replaced a good object, that object is dropped (stale data would mislead).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from aggregator.datastore.background import BackgroundSource
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.etcd_channel import EtcdChannel
from aggregator.datastore.objects import (
    RESOURCE_PREFIX,
    RESOURCE_TYPES,
    BadObject,
    CalicoObject,
    object_from_etcd,
)
from aggregator.datastore.spec import EtcdSpec

__all__ = ["REQUIRE_LEADER", "EtcdDatastore", "ListedPage", "list_pinned", "prefix_range_end"]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 500

REQUIRE_LEADER: tuple[tuple[str, str], ...] = (("hasleader", "true"),)
"""etcd's ``rpctypes.MetadataRequireLeaderKey``/``MetadataHasLeader``: fail a watch whose
member has no leader instead of leaving it silently open."""


class _Compacted(Exception):
    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted (compact revision {revision})")
        self.revision = revision


class _StreamBroken(Exception):
    pass


def prefix_range_end(prefix: bytes) -> bytes:
    """The etcd ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


@dataclass(frozen=True, slots=True)
class ListedPage:
    """One page of a pinned listing."""

    revision: int
    """The revision every page of this listing is read at."""
    kvs: Sequence[Any]
    """``mvccpb.KeyValue`` messages (``key``, ``value``, ``mod_revision``, ...)."""
    more: bool


async def list_pinned(
    kv_stub: Any,
    prefix: bytes,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    revision: int = 0,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> AsyncIterator[ListedPage]:
    """Yield the keys under ``prefix`` page by page, all at one revision.

    ``revision=0`` pins to the revision of the first page's response header.  A
    compacted pinned revision surfaces as ``grpc.aio.AioRpcError`` (``OUT_OF_RANGE``).
    """
    range_end = prefix_range_end(prefix)
    start = prefix
    while True:
        request = rpc.RangeRequest(key=start, range_end=range_end, limit=page_size, revision=revision)
        response = await kv_stub.Range(request, timeout=timeout, metadata=metadata)
        if revision == 0:
            revision = response.header.revision
        kvs = list(response.kvs)
        yield ListedPage(revision, kvs, bool(response.more))
        if not response.more or not kvs:
            return
        start = kvs[-1].key + b"\x00"


class EtcdDatastore(BackgroundSource):
    """List + watch Calico's resources in etcd into a :class:`DatastoreCache`.

    Run it with ``task = source.start()`` (or ``await source.run()``) inside the event
    loop that also serves gRPC; cancel the task or ``await source.stop()`` to end it.
    It can be started again after a stop and resumes from the last revision it saw.
    """

    def __init__(
        self,
        spec: EtcdSpec,
        cache: DatastoreCache,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.channel = EtcdChannel(spec)
        self.spec = spec
        self.cache = cache
        self.page_size = page_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._revision = 0
        """The last revision whose events have all been applied (0: list needed)."""
        self._need_list = True
        self._listed_once = False
        self._backoff = backoff_initial
        self.watching = asyncio.Event()
        """Set while a watch stream is established (tests and readiness use it)."""

    # ------------------------------------------------------------------ public

    def describe(self) -> str:
        return self.spec.describe()

    @property
    def revision(self) -> int:
        """The revision up to which every change has been applied to the cache."""
        return self._revision

    async def stop(self) -> None:
        await super().stop()
        await self.channel.close()

    async def run(self) -> None:
        """List, then watch, forever; reconnects with backoff, re-lists on compaction."""
        self._backoff = self.backoff_initial
        try:
            while True:
                try:
                    channel = self.channel.get()
                    if self._need_list:
                        await self._list(channel)
                    await self._watch(channel)
                except _Compacted as error:
                    log.warning("etcd %s: %s; re-listing", self.describe(), error)
                    self._need_list = True
                    continue
                except (grpc.aio.AioRpcError, _StreamBroken, OSError) as error:
                    message = _describe_error(error)
                    if _is_compaction(error):
                        log.warning(
                            "etcd %s: pinned revision compacted while listing; re-listing", self.describe()
                        )
                        self._need_list = True
                        continue
                    self.cache.note_error(f"{self.channel.target}: {message}")
                    log.warning(
                        "etcd %s: %s; retrying in %.1fs from revision %d",
                        self.channel.target,
                        message,
                        self._backoff,
                        self._revision + 1,
                    )
                    await self._back_off(rotate=True)
                    continue
                except Exception as error:  # a bug must not end the datastore: log, back off, retry
                    log.exception("etcd %s: unexpected error; retrying", self.channel.target)
                    self.cache.note_error(f"{self.channel.target}: {_describe_error(error)}")
                    await self._back_off(rotate=False)
                    continue
                # The watch loop only returns by raising; a clean return is a broken stream.
                raise _StreamBroken("watch ended")  # pragma: no cover
        finally:
            self.watching.clear()

    # ------------------------------------------------------------------ internals

    async def _back_off(self, *, rotate: bool) -> None:
        """Drop the connection, wait (exponential, jittered), and try the next endpoint."""
        self.watching.clear()
        if rotate:
            await self.channel.rotate()
        else:
            await self.channel.close()
        await asyncio.sleep(self._backoff * random.uniform(0.8, 1.2))
        self._backoff = min(self.backoff_max, self._backoff * 2)

    async def _list(self, channel: grpc.aio.Channel) -> None:
        kv_stub = rpc.KVStub(channel)
        revision = 0
        objects: list[CalicoObject] = []
        bad = 0
        for resource in RESOURCE_TYPES:
            async for page in list_pinned(
                kv_stub,
                resource.key_prefix.encode(),
                page_size=self.page_size,
                revision=revision,
                timeout=self.request_timeout,
            ):
                revision = page.revision
                for kv in page.kvs:
                    try:
                        obj = object_from_etcd(kv.key, kv.value, kv.mod_revision)
                    except BadObject as error:
                        bad += 1
                        self.cache.note_bad(error)
                        log.warning("etcd: skipped %s", error)
                        continue
                    if obj is not None:
                        objects.append(obj)
        if self._listed_once:
            self.cache.note_relist()
        self._listed_once = True
        self.cache.replace_all(objects, revision)
        self._revision = revision
        self._need_list = False
        log.info(
            "etcd %s: listed %d objects at revision %d (%d bad values skipped)",
            self.channel.target,
            len(objects),
            revision,
            bad,
        )

    async def _watch(self, channel: grpc.aio.Channel) -> None:
        stub = rpc.WatchStub(channel)
        prefix = RESOURCE_PREFIX.encode()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=prefix,
                range_end=prefix_range_end(prefix),
                start_revision=self._revision + 1,
                progress_notify=True,
            )
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield create
            await done.wait()

        call = stub.Watch(requests(), metadata=REQUIRE_LEADER)
        try:
            async for response in call:
                if response.compact_revision:
                    raise _Compacted(response.compact_revision)
                if response.canceled:
                    raise _StreamBroken(f"watch canceled by etcd: {response.cancel_reason or 'no reason'}")
                if response.created:
                    self.watching.set()
                    self._backoff = self.backoff_initial
                    log.info("etcd %s: watching from revision %d", self.channel.target, self._revision + 1)
                    continue
                if response.events:
                    self._apply_events(response.events)
                elif response.header.revision > self._revision:
                    # A progress notification: every event up to this revision was sent.
                    self._revision = response.header.revision
        finally:
            done.set()
            call.cancel()
        raise _StreamBroken("watch stream ended")

    def _apply_events(self, events: Sequence[Any]) -> None:
        """Apply one watch response's events (in revision order) as one cache batch."""
        final: dict[str, CalicoObject | None] = {}
        revision = self._revision
        for event in events:
            kv = event.kv
            revision = max(revision, kv.mod_revision)
            key = kv.key.decode(errors="replace")
            if event.type == rpc.Event.DELETE:
                final[key] = None
                continue
            try:
                obj = object_from_etcd(kv.key, kv.value, kv.mod_revision)
            except BadObject as error:
                self.cache.note_bad(error)
                log.warning("etcd: skipped %s", error)
                final[key] = None
                continue
            if obj is not None:
                final[key] = obj
        upserts = [obj for obj in final.values() if obj is not None]
        deletes = [key for key, obj in final.items() if obj is None]
        self.cache.apply(upserts, deletes, revision)
        self._revision = revision


def _is_compaction(error: BaseException) -> bool:
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.OUT_OF_RANGE
        and "compacted" in (error.details() or "")
    )


def _describe_error(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__
