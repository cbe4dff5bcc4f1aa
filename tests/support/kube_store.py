"""The object store behind the stand-in Kubernetes API server (:mod:`tests.support.kube_api`).

It keeps what kube-apiserver's etcd3 storage gives list and watch: one resourceVersion
counter for every write (etcd's revision), every version of every object (so a paged list
is served from one snapshot, and a watch replays what happened after its resourceVersion),
compaction (older snapshots and histories are gone: ``410 Expired``), and field selectors
with watch semantics (an object that stops matching is sent as ``DELETED``, one that starts
as ``ADDED``).  Thread-safe: the server's handler threads read while the test writes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Compacted", "KubeStore", "ServedType", "StoredEvent", "field_matches", "status"]


@dataclass(frozen=True)
class ServedType:
    """One collection the server serves: ``/api/v1/pods``, ``/apis/<group>/<version>/<plural>``."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    builtin: bool = True
    """List items of built-in types carry no kind/apiVersion; those of CRDs do."""

    @property
    def path(self) -> str:
        group, _, version = self.api_version.rpartition("/")
        return f"/apis/{group}/{version}/{self.plural}" if group else f"/api/{version}/{self.plural}"


@dataclass(frozen=True)
class StoredEvent:
    revision: int
    path: str
    key: tuple[str, str]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    """None: deleted (then ``before`` is the last state, with the deletion's resourceVersion)."""


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``metav1.Status`` as kube-apiserver sends it with an error."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


class Compacted(Exception):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"too old resource version: {requested} ({compacted})")


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_matches(obj: Mapping[str, Any] | None, selector: str) -> bool:
    """kube-apiserver's field selector terms: ``a=b``, ``a==b``, ``a!=b`` joined by commas."""
    if obj is None:
        return False
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            name, value = term.split("!=", 1)
            if _field(obj, name) == value:
                return False
        else:
            name, _, value = term.replace("==", "=").partition("=")
            if _field(obj, name) != value:
                return False
    return True


class KubeStore:
    def __init__(self, types: list[ServedType], first_revision: int = 1000) -> None:
        self.types = {t.path: t for t in types}
        self._by_kind = {(t.api_version.rpartition("/")[0], t.kind): t for t in types}
        self.revision = first_revision
        self.compacted = 0
        self._versions: dict[str, dict[tuple[str, str], list[tuple[int, Mapping[str, Any] | None]]]] = {
            t.path: {} for t in types
        }
        self.history: list[StoredEvent] = []
        self.changed = threading.Condition()

    def type_of(self, obj: Mapping[str, Any]) -> ServedType:
        group = str(obj["apiVersion"]).rpartition("/")[0]
        return self._by_kind[(group, str(obj["kind"]))]

    def current(self, path: str, key: tuple[str, str]) -> Mapping[str, Any] | None:
        versions = self._versions[path].get(key)
        return versions[-1][1] if versions else None

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj`` (a full object with kind/apiVersion); returns it as stored."""
        served = self.type_of(obj)
        stored = copy.deepcopy(dict(obj))
        metadata = stored.setdefault("metadata", {})
        key = (metadata.get("namespace", "") if served.namespaced else "", metadata["name"])
        with self.changed:
            before = self.current(served.path, key)
            self.revision += 1
            metadata["resourceVersion"] = str(self.revision)
            self._record(served.path, key, before, stored)
        return stored

    def delete(self, obj: Mapping[str, Any]) -> None:
        served = self.type_of(obj)
        metadata = obj["metadata"]
        key = (metadata.get("namespace", "") if served.namespaced else "", metadata["name"])
        with self.changed:
            before = self.current(served.path, key)
            if before is None:
                raise KeyError(f"{served.kind} {key} does not exist")
            self.revision += 1
            last = copy.deepcopy(dict(before))
            last["metadata"]["resourceVersion"] = str(self.revision)
            self._record(served.path, key, last, None)

    def _record(
        self,
        path: str,
        key: tuple[str, str],
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        self._versions[path].setdefault(key, []).append((self.revision, after))
        self.history.append(StoredEvent(self.revision, path, key, before, after))
        self.changed.notify_all()

    def compact(self) -> int:
        """Forget every snapshot and event before the current revision (etcd compaction)."""
        with self.changed:
            self.compacted = self.revision
            self.history = [e for e in self.history if e.revision > self.compacted]
            for versions in self._versions.values():
                for key, entries in list(versions.items()):
                    older = [entry for entry in entries if entry[0] < self.compacted][-1:]
                    versions[key] = older + [entry for entry in entries if entry[0] >= self.compacted]
            self.changed.notify_all()
        return self.compacted

    def snapshot(self, path: str, revision: int) -> list[tuple[tuple[str, str], Mapping[str, Any]]]:
        """The collection at ``revision``, sorted by (namespace, name); raises :class:`Compacted`."""
        with self.changed:
            if revision < self.compacted:
                raise Compacted(revision, self.compacted)
            out = []
            for key, entries in self._versions[path].items():
                state = None
                for entry_revision, obj in entries:
                    if entry_revision <= revision:
                        state = obj
                if state is not None:
                    out.append((key, state))
        return sorted(out, key=lambda item: item[0])

    def events_after(self, path: str, revision: int) -> tuple[list[StoredEvent], int]:
        """Changes to ``path`` after ``revision``, and the revision they bring a watcher to (every
        change up to it was returned); raises :class:`Compacted` when forgotten."""
        with self.changed:
            if revision < self.compacted:
                raise Compacted(revision, self.compacted)
            return [e for e in self.history if e.path == path and e.revision > revision], self.revision
