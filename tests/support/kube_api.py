"""A protocol-faithful stand-in for the Kubernetes API server's list and watch. NOT a kube-apiserver.

No kube-apiserver can be installed on the test machines, so the KDD datastore's real client
(lightkube's HTTP client and our list/watch code) talks over a real socket to this small
server instead.  It speaks the parts of the protocol the datastore depends on, the way
kube-apiserver does:

* HTTPS with a certificate the test makes (:mod:`tests.support.pki`) and a bearer token
  (anything else: ``401`` with a ``Status``);
* ``GET /api/v1/<plural>`` and ``/apis/<group>/<version>/<plural>`` for the whole cluster,
  ``404`` for a type it does not serve;
* lists with ``metadata.resourceVersion``, ``limit``/``continue`` paging from one snapshot
  (a continue token older than a compaction: ``410 Expired``), ``fieldSelector``, and items
  without ``kind``/``apiVersion`` for built-in types;
* ``watch=true`` from a ``resourceVersion``: a chunked stream of newline-delimited JSON events
  (``ADDED``/``MODIFIED``/``DELETED``, ``BOOKMARK`` with ``allowWatchBookmarks``, field
  selectors with enter/leave semantics), ended after ``timeoutSeconds``; a resourceVersion
  older than a compaction gets an ``ERROR`` event carrying a ``410 Expired`` Status;
* single objects of a namespace read, created, replaced (conditional on resourceVersion) and
  deleted, for the Lease and the checkpoint ConfigMaps (:mod:`tests.support.kube_writes`);
* faults on demand: ``429`` with ``Retry-After`` (:meth:`throttle`), ``5xx`` (:meth:`fail`),
  watches expired with a 410 ``ERROR`` event (:meth:`expire_watches`), and connections cut in
  the middle of a chunk (:meth:`drop_watches`).

Everything else (other writes, admission, RBAC, discovery, HTTP/2, protobuf) is left out.  The
objects it serves come from :mod:`tests.support.kube_objects`, shaped like real API output.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_http import handler_class
from tests.support.kube_store import Compacted, KubeStore, ServedType, StoredEvent, field_matches, status
from tests.support.pki import Authority

__all__ = ["DEFAULT_TYPES", "KubeApiServer", "Request"]

_CRD = "crd.projectcalico.org/v1"
DEFAULT_TYPES = [
    ServedType("v1", "Pod", "pods", True),
    ServedType("v1", "Namespace", "namespaces", False),
    ServedType("v1", "ServiceAccount", "serviceaccounts", True),
    ServedType("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
    ServedType(_CRD, "NetworkPolicy", "networkpolicies", True, builtin=False),
    ServedType(_CRD, "GlobalNetworkPolicy", "globalnetworkpolicies", False, builtin=False),
    ServedType(_CRD, "Tier", "tiers", False, builtin=False),
    ServedType(_CRD, "HostEndpoint", "hostendpoints", False, builtin=False),
    ServedType(_CRD, "StagedNetworkPolicy", "stagednetworkpolicies", True, builtin=False),
    ServedType(_CRD, "StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies", False, builtin=False),
    ServedType(_CRD, "StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", True, builtin=False),
    ServedType("v1", "ConfigMap", "configmaps", True),
    ServedType("coordination.k8s.io/v1", "Lease", "leases", True),
]
"""A Calico v3.30 cluster without the admin network policy CRDs (so those are ``404``), and the
ConfigMaps and Leases of two aggregator replicas' checkpoint and election (read and written
one object at a time: :mod:`tests.support.kube_writes`)."""


@dataclass(frozen=True)
class Request:
    path: str
    query: Mapping[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass
class _Faults:
    pending: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    expire: int = 0
    drop: int = 0
    expire_continue: set[str] = field(default_factory=set)


class KubeApiServer:
    """Serves :class:`KubeStore` objects; ``with KubeApiServer(tmp_path) as api: api.put(obj)``."""

    def __init__(
        self, directory: Path, types: list[ServedType] | None = None, token: str = "test-token"
    ) -> None:
        self.directory = directory
        self.token = token
        self.store = KubeStore(types or DEFAULT_TYPES)
        self.requests: list[Request] = []
        self.bookmark_interval = 1.0
        self._faults = _Faults()
        self._watches: dict[str, int] = {}
        self._stopping = False
        authority = Authority(directory / "pki", name="kube-ca")
        issued = authority.issue(
            "kube-apiserver", dns=["kubernetes.default.svc"], ips=["127.0.0.1"], server=True
        )
        self.ca = authority.cert
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(issued.cert, issued.key)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler_class(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True, name="kube-api")

    # ------------------------------------------------------------------ lifecycle

    @property
    def tls(self) -> ssl.SSLContext:
        return self._tls

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> KubeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.store.changed:
            self._stopping = True
            self.store.changed.notify_all()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path | None = None, token: str | None = None) -> Path:
        """A kubeconfig for this server (CA file, bearer token), as ``kubectl config view`` writes."""
        path = path or self.directory / "kubeconfig"
        cluster = {"server": self.url, "certificate-authority": str(self.ca)}
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "aggregator"}}],
            "users": [{"name": "aggregator", "user": {"token": token or self.token}}],
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config))
        return path

    # ------------------------------------------------------------------ state and faults

    def put(self, *objects: Mapping[str, Any]) -> None:
        for obj in objects:
            self.store.put(obj)

    def delete(self, *objects: Mapping[str, Any]) -> None:
        for obj in objects:
            self.store.delete(obj)

    def throttle(self, path: str, count: int = 1, retry_after: float = 1.0) -> None:
        """The next ``count`` requests to ``path`` (list or watch) get ``429`` + ``Retry-After``."""
        with self.store.changed:
            self._faults.pending.setdefault(path, []).extend([(429, retry_after)] * count)

    def fail(self, path: str, status: int = 500, count: int = 1) -> None:
        with self.store.changed:
            self._faults.pending.setdefault(path, []).extend([(status, None)] * count)

    def expire_watches(self) -> int:
        """Compact, and end every open watch with an ``ERROR`` event (410 Expired), as
        kube-apiserver does to a watcher whose resourceVersion fell out of its window."""
        with self.store.changed:
            self._faults.expire += 1
            self.store.changed.notify_all()
        return self.store.compact()

    def expire_next_continue(self, path: str) -> None:
        """Compact just before the next ``continue`` request to ``path``: its token is then too
        old, and the list gets ``410 Expired`` (a list that takes longer than etcd's history)."""
        with self.store.changed:
            self._faults.expire_continue.add(path)

    def drop_watches(self) -> None:
        """Cut every open watch connection in the middle of a chunk."""
        with self.store.changed:
            self._faults.drop += 1
            self.store.changed.notify_all()

    def open_watches(self, path: str) -> int:
        with self.store.changed:
            return self._watches.get(path, 0)

    def record(self, path: str, query: Mapping[str, str]) -> None:
        self.requests.append(Request(path, query))

    def watch_requests(self, path: str) -> list[Request]:
        return [r for r in list(self.requests) if r.path == path and r.watch]

    def take_fault(self, path: str) -> tuple[int, float | None] | None:
        with self.store.changed:
            queue = self._faults.pending.get(path)
            return queue.pop(0) if queue else None

    # ------------------------------------------------------------------ list and watch

    def list_body(self, served: ServedType, query: Mapping[str, str]) -> dict[str, Any]:
        """Raises :class:`Compacted` for an expired continue token."""
        token = query.get("continue", "")
        if token:
            with self.store.changed:
                if served.path in self._faults.expire_continue:
                    self._faults.expire_continue.discard(served.path)
                    self.store.put(next(o for _, o in self.store.snapshot(served.path, self.store.revision)))
                    self.store.compact()
            state = json.loads(base64.urlsafe_b64decode(token))
            revision, start = int(state["rv"]), tuple(state["start"])
        else:
            revision, start = self.store.revision, ("", "")
        selector = query.get("fieldSelector", "")
        limit = int(query.get("limit") or 0)
        objects = [(k, o) for k, o in self.store.snapshot(served.path, revision) if not token or k > start]
        matching = [(k, o) for k, o in objects if field_matches(o, selector)]
        page = matching[:limit] if limit else matching
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if limit and len(matching) > limit:
            last = list(page[-1][0])
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": revision, "start": last}).encode()
            ).decode()
            metadata["remainingItemCount"] = len(matching) - limit
        items = [self._item(served, o) for _, o in page]
        return {
            "kind": f"{served.kind}List",
            "apiVersion": served.api_version,
            "metadata": metadata,
            "items": items,
        }

    @staticmethod
    def _item(served: ServedType, obj: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(obj)
        if served.builtin:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return item

    def watch_events(self, served: ServedType, query: Mapping[str, str]) -> Iterator[bytes | None]:
        """The lines of one watch; ``None`` asks the handler to cut the connection."""
        selector = query.get("fieldSelector", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        version = query.get("resourceVersion", "")
        with self.store.changed:
            expire, drop = self._faults.expire, self._faults.drop
            self._watches[served.path] = self._watches.get(served.path, 0) + 1
        try:
            if version in ("", "0"):  # start at "now" with the current state as ADDED events
                revision = self.store.revision
                for _, obj in self.store.snapshot(served.path, revision):
                    if field_matches(obj, selector):
                        yield _line("ADDED", obj)
            else:
                revision = int(version)
            last_bookmark = time.monotonic()
            while True:
                try:
                    events, reached = self.store.events_after(served.path, revision)
                except Compacted as error:
                    yield _line("ERROR", status(410, "Expired", str(error)))
                    return
                for event in events:
                    line = _event_line(event, selector)
                    if line is not None:
                        yield line
                revision = reached
                with self.store.changed:
                    if self._stopping:
                        return
                    if self._faults.drop != drop:
                        yield None
                        return
                    if self._faults.expire != expire:
                        message = f"too old resource version: {revision} ({self.store.compacted})"
                        yield _line("ERROR", status(410, "Expired", message))
                        return
                    if self.store.revision == revision:
                        self.store.changed.wait(0.05)
                now = time.monotonic()
                if now >= deadline:
                    return
                if bookmarks and now - last_bookmark >= self.bookmark_interval:
                    last_bookmark = now
                    kind = {"kind": served.kind, "apiVersion": served.api_version}
                    yield _line("BOOKMARK", {**kind, "metadata": {"resourceVersion": str(revision)}})
        finally:
            with self.store.changed:
                self._watches[served.path] -= 1


def _line(kind: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _event_line(event: StoredEvent, selector: str) -> bytes | None:
    """An object entering the selection is ADDED, leaving it DELETED (with its new state)."""
    was = field_matches(event.before, selector) if event.before is not None else False
    now = field_matches(event.after, selector) if event.after is not None else False
    if event.after is None:
        return _line("DELETED", event.before) if was and event.before is not None else None
    if was and now:
        return _line("MODIFIED", event.after)
    if now:
        return _line("ADDED", event.after)
    if was:
        return _line("DELETED", event.after)
    return None
