"""Datastore sources: one backend per module behind one small interface.

A source lists the datastore once, then follows its changes, feeding a
:class:`~aggregator.datastore.cache.DatastoreCache` that builds catalogs.  Each backend
(:mod:`.file`, :mod:`.etcd`, :mod:`.kubernetes`) implements :class:`DatastoreSource`; :func:`open_datastore`
picks one for a parsed ``--datastore`` spec.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.etcd import EtcdDatastore
from aggregator.datastore.file import FileDatastore
from aggregator.datastore.kubernetes import KubernetesDatastore
from aggregator.datastore.spec import DatastoreSpec, FileSpec, KubernetesSpec

__all__ = ["DatastoreSource", "open_datastore"]


class DatastoreSource(Protocol):
    """What :func:`open_datastore` returns: a task-like source feeding a cache."""

    async def run(self) -> None:
        """Read and follow the datastore until cancelled; never returns on bad data."""

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task of the current event loop."""

    async def stop(self) -> None:
        """Cancel the task started by :meth:`start` and release connections."""

    def describe(self) -> str:
        """``file:PATH``, ``etcd://...`` or ``kubernetes``, for logs and status."""


def open_datastore(spec: DatastoreSpec, cache: DatastoreCache) -> DatastoreSource:
    """A source that feeds ``cache`` from ``spec``; call ``start()`` inside the event loop."""
    if isinstance(spec, FileSpec):
        return FileDatastore(
            spec.path, cache, poll_interval=spec.poll_interval, interface_prefix=spec.interface_prefix
        )
    if isinstance(spec, KubernetesSpec):
        return KubernetesDatastore(spec, cache)
    return EtcdDatastore(spec, cache)
