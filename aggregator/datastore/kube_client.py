"""The Kubernetes API server as the KDD datastore needs it: paged lists and watch streams.

Configuration, TLS and authentication come from lightkube (kubeconfig files with client
certificates, tokens, token files or exec plugins; the in-cluster ServiceAccount, whose
rotated token is re-read when the server answers 401).  The list/watch protocol is spoken
here, on lightkube's authenticated HTTP client, because the datastore needs what
lightkube's ``watch()`` does not do: ask for bookmarks (``allowWatchBookmarks``), report a
``410 Gone`` (so the caller re-lists instead of re-watching from "now", which would lose
the deletions in between), and tell 429/5xx apart with their ``Retry-After``.

Every failure is one of the :class:`KubeApiError` subclasses, so the caller decides per kind:
:class:`ResourceGone` -> re-list, :class:`NotServed` -> the type does not exist here,
:class:`Throttled` -> wait ``retry_after``, anything else -> back off and resume.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from aggregator.datastore.kdd_resources import KubeResource
from aggregator.datastore.spec import KubernetesSpec

__all__ = [
    "MAX_EVENT_BYTES",
    "Conflict",
    "ConnectionLost",
    "KubeApiError",
    "KubeClient",
    "ListPage",
    "NotServed",
    "ResourceGone",
    "Throttled",
    "WatchEvent",
    "load_config",
    "own_namespace",
]

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""Longest watch event line accepted (etcd keeps objects below 1.5 MiB; JSON adds little)."""
_MAX_RETRY_AFTER = 60.0


class KubeApiError(Exception):
    """A request failed; ``status`` is the HTTP status (0: no answer), ``retry_after`` seconds
    the server asked for (``Retry-After``), if any."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ResourceGone(KubeApiError):
    """``410 Gone`` / ``Expired``: the resourceVersion or continue token is too old: re-list."""


class NotServed(KubeApiError):
    """``404`` on a collection: this API (a CRD, an alpha API) is not served by the cluster."""


class Throttled(KubeApiError):
    """``429 Too Many Requests`` (API priority and fairness): retry after ``retry_after``."""


class Conflict(KubeApiError):
    """``409``: a create found the object there, or an update's resourceVersion was stale
    (another writer came first: read again)."""


class ConnectionLost(KubeApiError):
    """No answer, or the stream broke mid-way: resume from the last resourceVersion."""


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[Mapping[str, Any]]
    resource_version: str
    continue_token: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``."""
    object: Mapping[str, Any]


def own_namespace() -> str:
    """The aggregator's namespace, where its Lease and checkpoint ConfigMaps live:
    ``$POD_NAMESPACE`` (the downward API), else the ServiceAccount's namespace file,
    else ``calico-accountant``."""
    named = os.environ.get("POD_NAMESPACE", "").strip()
    if named:
        return named
    try:
        return Path(SERVICE_ACCOUNT, "namespace").read_text().strip() or "calico-accountant"
    except OSError:
        return "calico-accountant"


def load_config(spec: KubernetesSpec) -> SingleConfig:
    """The kubeconfig's current context, or the in-cluster ServiceAccount, or ``~/.kube/config``.

    Raises ``ValueError`` with what is missing (a start-up error, not a retry)."""
    try:
        if spec.kubeconfig is not None:
            config = KubeConfig.from_file(spec.kubeconfig).get()
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and Path(SERVICE_ACCOUNT, "token").is_file():
            config = KubeConfig.from_service_account().get()
        else:
            config = KubeConfig.from_file(Path("~/.kube/config").expanduser()).get()
    except (ConfigError, OSError, KeyError, ValueError) as error:
        source = spec.kubeconfig or "the in-cluster ServiceAccount or ~/.kube/config"
        raise ValueError(f"kubernetes datastore: cannot load {source}: {error}") from error
    if config is None or config.user is None:
        raise ValueError("kubernetes datastore: the kubeconfig context has no user")
    return config


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    return str(status.get("message") or status.get("reason") or "") if isinstance(status, dict) else ""


def _raise_for(response: httpx2.Response, body: bytes, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    message = f"{what}: HTTP {code} {_status_message(body)}".rstrip()
    retry_after = _retry_after(response)
    if code == 410:
        raise ResourceGone(message, code)
    if code == 404:
        raise NotServed(message, code)
    if code == 409:
        raise Conflict(message, code)
    if code == 429:
        raise Throttled(message, code, retry_after if retry_after is not None else 1.0)
    raise KubeApiError(message, code, retry_after)


def status_error(status: Mapping[str, Any], what: str) -> KubeApiError:
    """The exception a watch ``ERROR`` event's Status stands for (410/Expired -> re-list)."""
    code = status.get("code")
    message = f"{what}: {status.get('reason', '')} {status.get('message', '')}".rstrip()
    if code == 410 or status.get("reason") in ("Expired", "Gone"):
        return ResourceGone(message, 410)
    if code == 429:
        return Throttled(message, 429, 1.0)
    return KubeApiError(message, code if isinstance(code, int) else 0)


class KubeClient:
    """Lists and watches over one authenticated HTTP client (HTTP/1.1 keep-alive)."""

    def __init__(self, config: SingleConfig, *, request_timeout: float = 30.0) -> None:
        self.server = config.cluster.server
        self.request_timeout = request_timeout
        params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(request_timeout))
        self._http = client_adapter.AsyncClient(config, params)
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per request

    async def close(self) -> None:
        await self._http.aclose()

    async def list_page(self, resource: KubeResource, *, limit: int, continue_token: str = "") -> ListPage:
        """One page of the cluster-wide collection; pages after the first pass ``continue_token``
        (all pages are one consistent snapshot, at the first page's resourceVersion)."""
        params: dict[str, str] = {"limit": str(limit)}
        if continue_token:
            params["continue"] = continue_token
        if resource.field_selector:
            params["fieldSelector"] = resource.field_selector
        what = f"list {resource.name}"
        body = await self._request("GET", resource.path, params=params, what=what)
        assert body is not None
        metadata = body.get("metadata") or {}
        items = body.get("items") or []
        if not isinstance(items, list) or not isinstance(metadata, dict):
            raise KubeApiError(f"{what}: not a list response", 200)
        return ListPage(
            items, str(metadata.get("resourceVersion") or ""), str(metadata.get("continue") or "")
        )

    async def get_object(self, path: str) -> dict[str, Any] | None:
        """The object at ``path`` (``/api/v1/namespaces/NS/configmaps/NAME``), None when absent."""
        return await self._request("GET", path, missing_ok=True)

    async def create_object(self, collection: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` into ``collection``; :class:`Conflict` when the name is taken."""
        created = await self._request("POST", collection, body=body)
        assert created is not None
        return created

    async def replace_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``body`` (its ``metadata.resourceVersion`` is the precondition: :class:`Conflict`
        when the object changed since it was read)."""
        replaced = await self._request("PUT", path, body=body)
        assert replaced is not None
        return replaced

    async def delete_object(self, path: str) -> None:
        """DELETE ``path``; an object already gone is fine."""
        await self._request("DELETE", path, missing_ok=True)

    async def list_objects(self, collection: str, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object of ``collection`` (one namespace's, small: no paging) matching the labels."""
        params = {"labelSelector": label_selector} if label_selector else {}
        found = await self._request("GET", collection, params=params)
        items = (found or {}).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        what: str = "",
    ) -> dict[str, Any] | None:
        """One request whose answer is a JSON object (None: absent, with ``missing_ok``); HTTP
        errors raised as :func:`_raise_for` maps them, ``what`` naming the request in them."""
        what = what or f"{method} {path}"
        try:
            response = await self._http.request(method, path, json=body, params=params)
        except httpx2.HTTPError as error:
            raise ConnectionLost(f"{what}: {type(error).__name__}: {error}") from error
        if response.status_code == 404 and missing_ok:
            return None
        _raise_for(response, response.content, what)
        try:
            decoded = json.loads(response.content) if response.content else {}
        except ValueError as error:
            raise KubeApiError(f"{what}: not JSON: {error}", response.status_code) from error
        if not isinstance(decoded, dict):
            raise KubeApiError(f"{what}: not an object", response.status_code)
        return decoded

    async def watch(
        self, resource: KubeResource, resource_version: str, *, timeout_seconds: int
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the watch (after about
        ``timeout_seconds``).  ``ERROR`` events are raised (:func:`status_error`); a stream
        that breaks raises :class:`ConnectionLost`."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource.field_selector:
            params["fieldSelector"] = resource.field_selector
        # A silent connection (no event, not even a bookmark) longer than the watch itself is dead.
        timeout = httpx2.Timeout(self.request_timeout, read=timeout_seconds + self.request_timeout)
        what = f"watch {resource.name}"
        try:
            async with self._http.stream("GET", resource.path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    _raise_for(response, await response.aread(), what)
                async for line in response.aiter_lines():
                    if len(line) > MAX_EVENT_BYTES:
                        raise KubeApiError(f"{what}: event of {len(line)} bytes", 200)
                    if not line.strip():
                        continue
                    event = _decode_event(line, what)
                    if event.type == "ERROR":
                        raise status_error(event.object, what)
                    yield event
        except httpx2.HTTPError as error:
            raise ConnectionLost(f"{what}: {type(error).__name__}: {error}") from error


def _decode_event(line: str, what: str) -> WatchEvent:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ConnectionLost(f"{what}: undecodable event: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConnectionLost(f"{what}: an event without a type")
    obj = data.get("object")
    return WatchEvent(data["type"], obj if isinstance(obj, dict) else {})
