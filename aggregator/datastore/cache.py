"""The datastore's objects in memory, the current :class:`Catalog`, and change notification.

Sources (etcd, file) write here; the aggregator reads :attr:`DatastoreCache.catalog`
and re-resolves when told the catalog changed.  A new catalog is built after each
batch of changes and swapped in as one reference assignment, so a reader holding the
old catalog keeps a consistent (if slightly stale) view.

Rebuilds are throttled inside an event loop: a burst of changes (a deployment rolling
1,000 pods) produces a few catalogs, not a thousand.  The interval adapts to how long
a build takes (twice the last build time, within [min, max]), and throttled builds run in a
worker thread (building is pure), so the loop keeps serving gRPC meanwhile.  Listeners
are always called on the loop.  The first listing, :meth:`DatastoreCache.flush`, and
every change made outside an event loop (offline analysis, tests) build at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aggregator.catalog.index import Catalog
from aggregator.datastore.objects import BadObject, CalicoObject

__all__ = ["CatalogListener", "DatastoreCache", "DatastoreStatus"]

log = logging.getLogger(__name__)

CatalogListener = Callable[[Catalog], None]
"""Called (in the cache's thread/loop) with every new catalog; must not block."""


@dataclass(frozen=True, slots=True)
class DatastoreStatus:
    """A point-in-time summary of the datastore connection, for metrics and ServerStatus."""

    source: str
    synced: bool
    """True once the first complete listing (or file read) was applied."""
    revision: int
    generation: int
    """How many catalogs have been built; increases by one per swap."""
    objects: Mapping[str, int]
    """Objects the current catalog was built from, per kind."""
    bad_values: Mapping[str, int]
    """Values skipped since start, per reason (``not_json``, ``bad_spec``, ...)."""
    relists: int
    """Full listings after the first (compaction, or a broken listing)."""
    reconnects: int
    """Times the source lost its connection or stream and started again."""
    last_error: str
    catalog_build_seconds: float
    changes_applied: int = 0


@dataclass(slots=True)
class _Counters:
    bad_values: dict[str, int] = field(default_factory=dict)
    relists: int = 0
    reconnects: int = 0
    changes_applied: int = 0
    last_error: str = ""


class DatastoreCache:
    """Objects by etcd key plus the catalog built from them.

    Write side (sources): :meth:`replace_all`, :meth:`apply`, :meth:`note_bad`,
    :meth:`note_error`, :meth:`note_relist`.  Read side: :attr:`catalog`,
    :meth:`add_listener`, :meth:`wait_for_change`, :meth:`wait_synced`, :meth:`status`.
    """

    def __init__(
        self, *, source: str = "", min_rebuild_interval: float = 0.05, max_rebuild_interval: float = 1.0
    ) -> None:
        self._source = source
        self._min_rebuild_interval = min_rebuild_interval
        self._max_rebuild_interval = max(min_rebuild_interval, max_rebuild_interval)
        self._objects: dict[str, CalicoObject] = {}
        self._catalog = Catalog.empty()
        self._revision = 0
        self._generation = 0
        self._synced = False
        self._dirty = False
        self._scheduled: asyncio.TimerHandle | None = None
        self._building = False
        self._build_task: asyncio.Task[None] | None = None
        self._last_rebuild = float("-inf")
        self._listeners: list[CatalogListener] = []
        self._changed = asyncio.Event()
        self._synced_event = asyncio.Event()
        self._counters = _Counters()

    # ------------------------------------------------------------------ read side

    @property
    def catalog(self) -> Catalog:
        """The current catalog (replaced, never mutated, when the datastore changes)."""
        return self._catalog

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def revision(self) -> int:
        """The datastore revision the held objects reflect (etcd revision; 0 for files)."""
        return self._revision

    @property
    def synced(self) -> bool:
        return self._synced

    def objects(self) -> list[CalicoObject]:
        """The held objects (a copy of the list; the objects themselves are shared)."""
        return list(self._objects.values())

    def add_listener(self, listener: CatalogListener) -> Callable[[], None]:
        """Call ``listener(new_catalog)`` after every swap; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def wait_for_change(self, generation: int, timeout: float | None = None) -> Catalog:
        """Wait until a catalog newer than ``generation`` is in place and return it.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._generation <= generation:
                await self._changed.wait()
        return self._catalog

    async def wait_synced(self, timeout: float | None = None) -> Catalog:
        """Wait for the first complete listing to be applied (and its catalog built)."""
        async with asyncio.timeout(timeout):
            await self._synced_event.wait()
        self.flush()
        return self._catalog

    def status(self) -> DatastoreStatus:
        """Safe to call from another thread (a scrape): it reads counters and the
        current catalog's per-kind counts, never iterates the objects."""
        counters = self._counters
        return DatastoreStatus(
            source=self._source,
            synced=self._synced,
            revision=self._revision,
            generation=self._generation,
            objects=dict(sorted(self._catalog.object_counts.items())),
            bad_values=dict(sorted(counters.bad_values.items())),
            relists=counters.relists,
            reconnects=counters.reconnects,
            last_error=counters.last_error,
            catalog_build_seconds=self._catalog.build_seconds,
            changes_applied=counters.changes_applied,
        )

    # ----------------------------------------------------------------- write side

    def replace_all(self, objects: Iterable[CalicoObject], revision: int = 0) -> bool:
        """Replace every object (after a full listing or file read); True if anything changed.

        Marks the cache synced.  Unchanged objects keep their identity, so the catalog
        reuses their derived data.
        """
        new: dict[str, CalicoObject] = {}
        for obj in objects:
            held = self._objects.get(obj.key)
            new[obj.key] = held if held is not None and held == obj else obj
        changed = new.keys() != self._objects.keys() or any(new[key] is not self._objects[key] for key in new)
        self._objects = new
        if revision:
            self._revision = revision
        first_sync = not self._synced
        self._synced = True
        if changed or first_sync:
            self._counters.changes_applied += 1
            self._mark_dirty(immediate=first_sync)
        if first_sync:
            self._synced_event.set()
        return changed

    def apply(
        self, upserts: Iterable[CalicoObject] = (), deletes: Iterable[str] = (), revision: int = 0
    ) -> bool:
        """Apply one batch of watch events; True if anything changed.

        ``deletes`` are etcd keys.  Upserts of an equal object are no-ops.
        """
        changed = False
        for key in deletes:
            if self._objects.pop(key, None) is not None:
                changed = True
        for obj in upserts:
            held = self._objects.get(obj.key)
            if held is None or held != obj:
                self._objects[obj.key] = obj
                changed = True
        if revision:
            self._revision = max(self._revision, revision)
        if changed:
            self._counters.changes_applied += 1
            self._mark_dirty()
        return changed

    def note_bad(self, error: BadObject | str, count: int = 1) -> None:
        """Count ``count`` skipped values of one reason (a :class:`BadObject` or its reason)."""
        reason = error.reason if isinstance(error, BadObject) else error
        counters = self._counters.bad_values
        counters[reason] = counters.get(reason, 0) + count
        if isinstance(error, BadObject):
            log.debug("skipped bad datastore value: %s", error)

    def note_error(self, message: str, *, reconnect: bool = True) -> None:
        """Record a connection or read problem (the source keeps trying)."""
        self._counters.last_error = message
        if reconnect:
            self._counters.reconnects += 1

    def note_relist(self) -> None:
        self._counters.relists += 1

    def flush(self) -> Catalog:
        """Build the catalog now if changes are pending (instead of at the throttled time)."""
        if self._dirty or self._building:
            self._rebuild()
        return self._catalog

    # ------------------------------------------------------------------ internals

    def _mark_dirty(self, *, immediate: bool = False) -> None:
        self._dirty = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._rebuild()
            return
        if immediate:
            self._rebuild()
            return
        self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled is not None or self._building:
            return  # a build is pending or running; it reschedules when it finishes
        interval = min(
            self._max_rebuild_interval, max(self._min_rebuild_interval, 2 * self._catalog.build_seconds)
        )
        delay = max(0.0, self._last_rebuild + interval - time.monotonic())
        self._scheduled = loop.call_later(delay, self._start_background_build, loop)

    def _start_background_build(self, loop: asyncio.AbstractEventLoop) -> None:
        """Build off the event loop (the build is pure), so gRPC keeps being served meanwhile."""
        self._scheduled = None
        if not self._dirty or self._building:
            return
        self._dirty = False
        self._building = True
        previous = self._catalog
        objects = list(self._objects.values())
        self._build_task = loop.create_task(self._build_in_thread(loop, objects, self._revision, previous))

    async def _build_in_thread(
        self,
        loop: asyncio.AbstractEventLoop,
        objects: list[CalicoObject],
        revision: int,
        previous: Catalog,
    ) -> None:
        try:
            catalog = await asyncio.to_thread(
                Catalog.from_objects, objects, revision=revision, previous=previous
            )
        except Exception:
            log.exception("building the catalog failed; keeping the previous one")
            return
        finally:
            self._building = False
            self._build_task = None
        if self._catalog is previous:  # else flush() swapped in a newer one meanwhile
            self._swap(catalog)
        if self._dirty:
            self._schedule(loop)

    def _rebuild(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._dirty = False
        self._swap(
            Catalog.from_objects(self._objects.values(), revision=self._revision, previous=self._catalog)
        )

    def _swap(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._generation += 1
        self._last_rebuild = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self._listeners):
            try:
                listener(catalog)
            except Exception:
                log.exception("catalog listener %r failed", listener)
