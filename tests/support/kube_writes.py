"""Object reads and writes in one namespace, for the stand-in API server (NOT a kube-apiserver).

What leader election on a Lease and a checkpoint in ConfigMaps depend on, the way
kube-apiserver does it:

* ``GET .../namespaces/NS/PLURAL/NAME`` (``404 NotFound`` when absent) and
  ``GET .../namespaces/NS/PLURAL?labelSelector=`` (equality, inequality and existence terms);
* ``POST .../namespaces/NS/PLURAL`` creates (``409 AlreadyExists`` when the name is taken);
* ``PUT .../NAME`` replaces, conditional on the body's ``metadata.resourceVersion`` (``409
  Conflict`` when the object changed since; ``404`` when it is gone); an ``immutable``
  ConfigMap cannot be replaced (``422 Invalid``);
* ``DELETE .../NAME``.

Every write takes the store's next resourceVersion, as etcd's revision does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.kube_store import KubeStore, ServedType, status

__all__ = ["ObjectRoute", "label_matches", "route_object", "serve_write"]


@dataclass(frozen=True)
class ObjectRoute:
    served: ServedType
    namespace: str
    name: str
    """Empty for the namespace's collection."""


def route_object(store: KubeStore, path: str) -> ObjectRoute | None:
    """``/api/v1/namespaces/NS/PLURAL[/NAME]`` (or ``/apis/G/V/...``) of a served namespaced type."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        prefix, rest = "/api/v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    else:
        return None
    if len(rest) not in (3, 4) or rest[0] != "namespaces":
        return None
    served = store.types.get(f"{prefix}/{rest[2]}")
    if served is None or not served.namespaced:
        return None
    return ObjectRoute(served, rest[1], rest[3] if len(rest) == 4 else "")


def label_matches(obj: Mapping[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            name, value = term.split("!=", 1)
            if labels.get(name.strip()) == value.strip():
                return False
        elif "=" in term:
            name, _, value = term.replace("==", "=").partition("=")
            if labels.get(name.strip()) != value.strip():
                return False
        elif term not in labels:
            return False
    return True


def serve_write(
    store: KubeStore,
    method: str,
    route: ObjectRoute,
    body: Mapping[str, Any] | None,
    query: Mapping[str, str],
) -> tuple[int, Mapping[str, Any]]:
    """The response (status code, body) to ``method`` on ``route``."""
    key = (route.namespace, route.name)
    kind = f"{route.served.plural} {route.name!r}"
    with store.changed:
        if method == "GET" and not route.name:
            items = [
                dict(obj)
                for (namespace, _), obj in store.snapshot(route.served.path, store.revision)
                if namespace == route.namespace and label_matches(obj, query.get("labelSelector", ""))
            ]
            list_kind = {"kind": f"{route.served.kind}List", "apiVersion": route.served.api_version}
            return 200, {**list_kind, "metadata": {"resourceVersion": str(store.revision)}, "items": items}
        current = store.current(route.served.path, key) if route.name else None
        if method == "GET":
            return (
                (200, current) if current is not None else (404, status(404, "NotFound", f"{kind} not found"))
            )
        if method == "DELETE":
            if current is None:
                return 404, status(404, "NotFound", f"{kind} not found")
            store.delete(current)
            return 200, status(200, "", "deleted") | {"status": "Success"}
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata"), Mapping):
            return 400, status(400, "BadRequest", "the body is not an object with metadata")
        name = str(body["metadata"].get("name") or "")
        obj = copy.deepcopy(dict(body))
        obj["metadata"] = {**obj["metadata"], "namespace": route.namespace}
        obj.setdefault("kind", route.served.kind)
        obj.setdefault("apiVersion", route.served.api_version)
        if method == "POST":
            if route.name or not name:
                return 400, status(400, "BadRequest", "POST to the collection, with metadata.name")
            if store.current(route.served.path, (route.namespace, name)) is not None:
                return 409, status(409, "AlreadyExists", f"{route.served.plural} {name!r} already exists")
            obj["metadata"].pop("resourceVersion", None)
            return 201, store.put(obj)
        if method == "PUT":
            if name != route.name:
                return 400, status(400, "BadRequest", "the name in the body does not match the URL")
            if current is None:
                return 404, status(404, "NotFound", f"{kind} not found")
            if current.get("immutable"):
                return 422, status(422, "Invalid", f"{kind}: field is immutable when `immutable` is set")
            wanted = str(obj["metadata"].get("resourceVersion") or "")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                message = (
                    f"Operation cannot be fulfilled on {kind}: the object has been modified; "
                    "please apply your changes to the latest version and try again"
                )
                return 409, status(409, "Conflict", message)
            return 200, store.put(obj)
    return 405, status(405, "MethodNotAllowed", f"{method} is not supported")
