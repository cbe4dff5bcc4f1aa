"""The Kubernetes API datastore (KDD): one list + watch per resource type, feeding a
:class:`DatastoreCache`.

Each type of :data:`~aggregator.datastore.kdd_objects.KUBE_RESOURCES` has a reflector (the
client-go pattern):

1. **List** the whole cluster's collection page by page (``limit``/``continue``: one
   consistent snapshot at the list's resourceVersion, never a 150k-pod response at once).
2. **Watch** from that resourceVersion with bookmarks, so an idle type's resourceVersion
   keeps moving and a resumed watch is not refused as too old.
3. A watch that **ends** (``timeoutSeconds``) or **breaks** resumes from the last
   resourceVersion seen: no event is lost and nothing is re-listed.
4. ``410 Gone`` (expired resourceVersion or continue token) **re-lists** that type; the
   objects it no longer has are deleted from the cache.
5. ``429`` waits ``Retry-After``; 5xx and lost connections back off exponentially (with
   jitter); ``404`` means the type is not served (a CRD not installed): none of it, asked
   again every ``not_served_retry`` seconds.

The cache is synced (:meth:`DatastoreCache.replace_all`) once every type has been listed,
so the first catalog is complete.  Objects are translated as they arrive
(:class:`~aggregator.datastore.kdd_objects.KubeTranslator`); only the translation is kept.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from aggregator.datastore.background import BackgroundSource
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.kdd_objects import KubeTranslator
from aggregator.datastore.kdd_resources import KUBE_RESOURCES, KubeResource
from aggregator.datastore.kube_client import (
    KubeApiError,
    KubeClient,
    NotServed,
    ResourceGone,
    WatchEvent,
    load_config,
)
from aggregator.datastore.objects import BadObject, CalicoObject
from aggregator.datastore.spec import KubernetesSpec

__all__ = ["KubernetesDatastore"]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 500


def _revision(resource_version: str) -> int:
    """For status only: kube-apiserver's resourceVersions are etcd revisions (opaque otherwise)."""
    return int(resource_version) if resource_version.isdigit() else 0


class _Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum, self.delay = initial, maximum, initial

    def reset(self) -> None:
        self.delay = self.initial

    async def wait(self, at_least: float | None = None) -> None:
        delay = max(at_least or 0.0, self.delay * random.uniform(0.8, 1.2))
        self.delay = min(self.maximum, self.delay * 2)
        await asyncio.sleep(delay)


class _Reflector:
    """List + watch of one resource type for the whole cluster."""

    def __init__(self, source: KubernetesDatastore, resource: KubeResource) -> None:
        self.source = source
        self.resource = resource
        self.resource_version = ""
        self.served = True
        self.listed = False
        self.backoff = _Backoff(source.backoff_initial, source.backoff_max)

    @property
    def cache(self) -> DatastoreCache:
        return self.source.cache

    async def list_all(self) -> list[CalicoObject]:
        """Every object of the type at one resourceVersion; retries until it has them."""
        client = self.source.client
        while True:
            objects: list[CalicoObject] = []
            token, version = "", ""
            try:
                while True:
                    page = await client.list_page(
                        self.resource, limit=self.source.page_size, continue_token=token
                    )
                    version = version or page.resource_version
                    objects.extend(obj for obj in map(self._translate, page.items) if obj is not None)
                    token = page.continue_token
                    if not token:
                        break
            except NotServed:
                if not self.resource.optional:
                    log.warning("kubernetes: %s is not served; retrying", self.resource.name)
                self.served = False
                return []
            except ResourceGone as error:  # the continue token expired mid-list: start again
                log.warning("kubernetes: %s; listing %s again", error, self.resource.name)
                continue
            except KubeApiError as error:
                await self._failed(error)
                continue
            except Exception as error:  # a bug must not end the datastore: log, back off, retry
                log.exception("kubernetes: listing %s failed unexpectedly", self.resource.name)
                await self._failed(KubeApiError(f"list {self.resource.name}: {error!r}"))
                continue
            self.served = True
            self.resource_version = version
            self.backoff.reset()
            return objects

    async def follow(self) -> None:
        """Watch (re-listing when told to) until cancelled."""
        while True:
            if not self.listed:
                self._replace(await self.list_all())
            if not self.served:
                await asyncio.sleep(self.source.not_served_retry)
                self.listed = False
                continue
            try:
                await self._watch()
            except ResourceGone as error:
                log.info("kubernetes: %s; re-listing %s", error, self.resource.name)
                self.listed = False
                self.cache.note_relist()
            except NotServed as error:
                log.warning("kubernetes: %s", error)
                self.listed = False
            except KubeApiError as error:
                await self._failed(error)
            except Exception as error:
                log.exception("kubernetes: watching %s failed unexpectedly", self.resource.name)
                await self._failed(KubeApiError(f"watch {self.resource.name}: {error!r}"))

    async def _failed(self, error: KubeApiError) -> None:
        """Record the error and wait: ``Retry-After`` when the server gave one, else back off."""
        self.cache.note_error(str(error))
        log.warning("kubernetes: %s; retrying %s", error, self.resource.name)
        await self.backoff.wait(at_least=error.retry_after)

    async def _watch(self) -> None:
        low, high = self.source.watch_timeout
        events = self.source.client.watch(
            self.resource, self.resource_version, timeout_seconds=random.randint(low, high)
        )
        started, seen = time.monotonic(), 0
        async for event in events:
            seen += 1
            self.backoff.reset()
            self._apply(event)
        # The server ended the watch (timeoutSeconds): resume from where it ended, at once
        # unless it ended at once (a server that keeps doing that is not hammered).
        if not seen and time.monotonic() - started < 1.0:
            await self.backoff.wait()

    def _apply(self, event: WatchEvent) -> None:
        metadata = event.object.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        if isinstance(version, str) and version:
            self.resource_version = version
        if event.type == "BOOKMARK":
            return
        try:
            key = self.source.translator.key(self.resource, event.object)
        except BadObject as error:
            self.cache.note_bad(error)
            return
        obj = None if event.type == "DELETED" else self._translate(event.object)
        if obj is None:
            self.cache.apply(deletes=(key,), revision=_revision(self.resource_version))
        else:
            self.cache.apply(upserts=(obj,), revision=_revision(self.resource_version))

    def _translate(self, body: Mapping[str, Any]) -> CalicoObject | None:
        try:
            return self.source.translator.translate(self.resource, body)
        except BadObject as error:
            self.cache.note_bad(error)
            log.warning("kubernetes: skipped %s", error)
            return None

    def _replace(self, objects: list[CalicoObject]) -> None:
        """Make the cache hold exactly ``objects`` of this type (after a re-list)."""
        prefix = self.resource.key_prefix
        keys = {obj.key for obj in objects}
        stale = [
            obj.key for obj in self.cache.objects() if obj.key.startswith(prefix) and obj.key not in keys
        ]
        self.cache.apply(objects, stale, revision=_revision(self.resource_version))
        self.listed = True


class KubernetesDatastore(BackgroundSource):
    """List + watch the Kubernetes API (Calico's KDD) into a :class:`DatastoreCache`."""

    def __init__(
        self,
        spec: KubernetesSpec,
        cache: DatastoreCache,
        *,
        client_factory: Callable[[], KubeClient] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        watch_timeout: tuple[int, int] = (300, 600),
        not_served_retry: float = 300.0,
        resources: tuple[KubeResource, ...] = KUBE_RESOURCES,
    ) -> None:
        self.spec = spec
        self.cache = cache
        self.translator = KubeTranslator(spec.interface_prefix)
        self.page_size = page_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.watch_timeout = watch_timeout
        self.not_served_retry = not_served_retry
        self.resources = resources
        if client_factory is None:
            config = load_config(spec)  # a bad kubeconfig is a start-up error

            def client_factory() -> KubeClient:
                return KubeClient(config)

        self._client_factory: Callable[[], KubeClient] = client_factory
        self._client: KubeClient | None = None
        self.reflectors: tuple[_Reflector, ...] = ()

    def describe(self) -> str:
        return self.spec.describe()

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "used only while running"
        return self._client

    def resource_versions(self) -> dict[str, str]:
        """The resourceVersion each type has reached (tests, status)."""
        return {r.resource.name: r.resource_version for r in self.reflectors}

    async def run(self) -> None:
        self._client = self._client_factory()
        self.reflectors = tuple(_Reflector(self, resource) for resource in self.resources)
        try:
            listings = await asyncio.gather(*(r.list_all() for r in self.reflectors))
            objects = [obj for listing in listings for obj in listing]
            revision = max((_revision(r.resource_version) for r in self.reflectors), default=0)
            self.cache.replace_all(objects, revision)
            for reflector in self.reflectors:
                reflector.listed = True
            log.info(
                "kubernetes %s: listed %d objects from %d resource types (not served: %s)",
                self._client.server,
                len(objects),
                len(self.reflectors),
                ", ".join(r.resource.name for r in self.reflectors if not r.served) or "none",
            )
            async with asyncio.TaskGroup() as group:
                for reflector in self.reflectors:
                    group.create_task(reflector.follow(), name=f"watch {reflector.resource.name}")
        finally:
            client, self._client = self._client, None
            await client.close()
