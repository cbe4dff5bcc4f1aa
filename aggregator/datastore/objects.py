"""Calico datastore objects as one common type, and the pure decoding of what sources read.

Both sources (etcd and a file) end up with the same :class:`CalicoObject`: the etcd key
(synthesized for files, so both key the same object the same way), the revision, and
the parsed body.  Decoding never raises past its caller's loop: a bad value becomes a
:class:`BadObject` with a short ``reason`` that sources count and log, then skip.

Only the kinds the catalog needs are decoded (:data:`RESOURCE_TYPES`); other Calico
kinds (nodes, IP pools, ...) are recognised and ignored without being counted as bad.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "API_VERSION",
    "RESOURCE_PREFIX",
    "RESOURCE_TYPES",
    "BadObject",
    "CalicoObject",
    "DecodeResult",
    "ResourceType",
    "Translate",
    "decode_documents",
    "object_from_etcd",
    "object_from_manifest",
    "parse_resource_key",
    "resource_key",
]

API_VERSION = "projectcalico.org/v3"
RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/"
"""Where libcalico-go's etcdv3 backend keeps every v3 resource (§4.1)."""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One Calico resource kind the aggregator reads."""

    plural: str
    kind: str
    namespaced: bool

    @property
    def key_prefix(self) -> str:
        """The etcd prefix holding every object of this kind (ends with ``/``)."""
        return f"{RESOURCE_PREFIX}{self.plural}/"


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("workloadendpoints", "WorkloadEndpoint", True),
    ResourceType("networkpolicies", "NetworkPolicy", True),
    ResourceType("globalnetworkpolicies", "GlobalNetworkPolicy", False),
    ResourceType("profiles", "Profile", False),
    ResourceType("hostendpoints", "HostEndpoint", False),
    ResourceType("tiers", "Tier", False),
    ResourceType("stagednetworkpolicies", "StagedNetworkPolicy", True),
    ResourceType("stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy", False),
    ResourceType("stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy", True),
)
"""The kinds listed and watched, in listing order.  KDD-only kinds (Kubernetes policies,
admin network policies) are never in etcd but are accepted from files, see
:data:`_FILE_ONLY_TYPES`."""

_FILE_ONLY_TYPES: tuple[ResourceType, ...] = (
    ResourceType("kubernetesnetworkpolicies", "KubernetesNetworkPolicy", True),
    ResourceType("adminnetworkpolicies", "AdminNetworkPolicy", False),
    ResourceType("baselineadminnetworkpolicies", "BaselineAdminNetworkPolicy", False),
    ResourceType("clusternetworkpolicies", "ClusterNetworkPolicy", False),
)

_BY_PLURAL = {t.plural: t for t in RESOURCE_TYPES + _FILE_ONLY_TYPES}
_BY_KIND = {t.kind: t for t in RESOURCE_TYPES + _FILE_ONLY_TYPES}


class BadObject(ValueError):
    """A stored value or document that cannot be used; ``reason`` is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CalicoObject:
    """One projectcalico.org/v3 object.

    ``key`` is the etcd key (``/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>``),
    also for objects read from a file, so both sources identify objects alike; objects derived
    from Kubernetes resources (KDD) are keyed by the resource they come from
    (``kubernetes:<resource>/[<ns>/]<name>``, see :mod:`.kdd_objects`).
    ``revision`` is the etcd ModRevision (0 for files).  ``body`` is the parsed JSON
    (``kind``, ``apiVersion``, ``metadata``, ``spec``); treat it as read-only.
    Objects are compared by value (body included) and are not hashable.
    """

    kind: str
    namespace: str
    name: str
    key: str
    revision: int
    body: Mapping[str, Any] = field(repr=False)

    __hash__ = None  # type: ignore[assignment]

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.body.get("metadata")
        return value if isinstance(value, Mapping) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        value = self.body.get("spec")
        return value if isinstance(value, Mapping) else {}

    @property
    def labels(self) -> Mapping[str, str]:
        value = self.metadata.get("labels")
        return value if isinstance(value, Mapping) else {}


def resource_key(kind: str, namespace: str, name: str) -> str:
    """The etcd key libcalico-go stores an object under (§4.1)."""
    resource = _BY_KIND.get(kind)
    if resource is None:
        raise KeyError(f"not a kind the aggregator reads: {kind}")
    if resource.namespaced:
        return f"{resource.key_prefix}{namespace}/{name}"
    return f"{resource.key_prefix}{name}"


def parse_resource_key(key: str) -> tuple[ResourceType, str, str] | None:
    """``(type, namespace, name)`` of an etcd key; None for kinds the aggregator ignores.

    Raises :class:`BadObject` (``bad_key``) for a key of a read kind with the wrong shape.
    """
    if not key.startswith(RESOURCE_PREFIX):
        return None
    plural, _, rest = key[len(RESOURCE_PREFIX) :].partition("/")
    resource = _BY_PLURAL.get(plural)
    if resource is None:
        return None
    parts = rest.split("/")
    if resource.namespaced and len(parts) == 2 and all(parts):
        return resource, parts[0], parts[1]
    if not resource.namespaced and len(parts) == 1 and parts[0]:
        return resource, "", parts[0]
    shape = f"{resource.plural}/<ns>/<name>" if resource.namespaced else f"{resource.plural}/<name>"
    raise BadObject("bad_key", f"{key!r} is not {shape}")


def object_from_etcd(
    key: str | bytes, value: str | bytes | Mapping[str, Any], revision: int = 0
) -> CalicoObject | None:
    """Decode one etcd key/value as libcalico-go stores it; None if the kind is not read.

    The key decides kind, namespace and name (it is what felix and libcalico-go use);
    the value must be a JSON object whose ``kind``, when present, agrees with the key.
    """
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError as error:
            raise BadObject("not_utf8", f"key {key!r}") from error
    parsed = parse_resource_key(key)
    if parsed is None:
        return None
    resource, namespace, name = parsed
    body = _decode_value(key, value)
    kind = body.get("kind")
    if kind is not None and kind != resource.kind:
        raise BadObject("kind_mismatch", f"{key}: value kind {kind!r}, key says {resource.kind}")
    _check_shape(resource.kind, key, body)
    return CalicoObject(resource.kind, namespace, name, key, revision, body)


def object_from_manifest(document: Mapping[str, Any], revision: int = 0) -> CalicoObject | None:
    """Decode one object as ``calicoctl get -o yaml|json`` prints it; None if the kind is not read."""
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadObject("missing_kind", f"document without kind: {_preview(document)}")
    if nesting_depth(document) > MAX_NESTING:
        raise BadObject("too_deep", f"{kind}: nested more than {MAX_NESTING} levels")
    resource = _BY_KIND.get(kind)
    if resource is None:
        return None
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        raise BadObject("bad_metadata", f"{kind} without a metadata mapping")
    name = metadata.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise BadObject("missing_name", f"{kind} without a valid metadata.name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(namespace, str) or "/" in namespace:
        raise BadObject("bad_metadata", f"{kind} {name}: bad metadata.namespace")
    if resource.namespaced and not namespace:
        raise BadObject("missing_namespace", f"{kind} {name} has no metadata.namespace")
    if not resource.namespaced:
        namespace = ""
    key = resource_key(kind, namespace, name)
    _check_shape(kind, key, document)
    return CalicoObject(kind, namespace, name, key, revision, document)


@dataclass(slots=True)
class DecodeResult:
    """What decoding a batch of documents gave: objects, bad ones per reason, ignored kinds."""

    objects: list[CalicoObject] = field(default_factory=list)
    bad: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    """Well-formed objects of kinds the aggregator does not read (nodes, IP pools, ...)."""
    errors: list[str] = field(default_factory=list)
    """The first few bad-object messages, for logs."""

    def count_bad(self, error: BadObject) -> None:
        self.bad[error.reason] = self.bad.get(error.reason, 0) + 1
        if len(self.errors) < 20:
            self.errors.append(str(error))


Translate = Callable[[Mapping[str, Any]], CalicoObject | None]
"""Turns a document of another API (a Kubernetes Pod, Namespace...) into the object it derives,
or None; raises :class:`BadObject`.  Called for documents whose ``apiVersion`` is set and is not
``projectcalico.org/v3``."""


def decode_documents(documents: Iterable[Any], translate: Translate | None = None) -> DecodeResult:
    """Decode parsed file documents in any of the accepted shapes.

    Accepted: a list (of objects or of ``{"key", "value"}`` pairs), ``kind: List`` or
    ``kind: <X>List`` with ``items`` (calicoctl, kubectl), single objects (multi-document YAML),
    and ``etcdctl get -w json`` output (``{"kvs": [...]}`` with base64 keys and values).
    With ``translate``, objects of other APIs (``kubectl get -o json`` of a KDD cluster) are
    translated by it; without, they are decoded as Calico objects of the same kind.
    """
    result = DecodeResult()
    for document in documents:
        _decode_document(document, result, depth=0, translate=translate)
    return result


def _decode_document(document: Any, result: DecodeResult, depth: int, translate: Translate | None) -> None:
    if document is None:
        return
    if depth > 3:
        result.count_bad(BadObject("too_nested", "lists nested more than 3 deep"))
        return
    if isinstance(document, list):
        for item in document:
            _decode_document(item, result, depth + 1, translate)
        return
    if not isinstance(document, Mapping):
        result.count_bad(BadObject("not_an_object", f"document is {type(document).__name__}"))
        return
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document.get("items")
        if isinstance(items, list):
            _decode_document(items, result, depth + 1, translate)
        elif items is not None:
            result.count_bad(BadObject("bad_list", f"{kind}.items is not a list"))
        return
    if "kvs" in document and "kind" not in document:
        _decode_etcdctl_json(document, result)
        return
    try:
        if "key" in document and "value" in document and "kind" not in document:
            key = document["key"]
            if not isinstance(key, str):
                raise BadObject("bad_key", f"key is {type(key).__name__}")
            revision = document.get("mod_revision", 0)
            obj = object_from_etcd(key, document["value"], revision if isinstance(revision, int) else 0)
        elif translate is not None and document.get("apiVersion") not in (None, API_VERSION):
            if nesting_depth(document) > MAX_NESTING:
                raise BadObject("too_deep", f"{kind}: nested more than {MAX_NESTING} levels")
            obj = translate(document)
        else:
            obj = object_from_manifest(document)
    except BadObject as error:
        result.count_bad(error)
        return
    if obj is None:
        result.ignored += 1
    else:
        result.objects.append(obj)


def _decode_etcdctl_json(document: Mapping[str, Any], result: DecodeResult) -> None:
    import base64
    import binascii

    kvs = document.get("kvs")
    if not isinstance(kvs, list):
        result.count_bad(BadObject("bad_list", "kvs is not a list"))
        return
    for kv in kvs:
        try:
            if not isinstance(kv, Mapping):
                raise BadObject("not_an_object", "kvs item is not an object")
            try:
                key = base64.b64decode(str(kv.get("key", "")), validate=True)
                value = base64.b64decode(str(kv.get("value", "")), validate=True)
            except (binascii.Error, ValueError) as error:
                raise BadObject("bad_base64", f"kvs item: {error}") from error
            revision = kv.get("mod_revision", 0)
            obj = object_from_etcd(key, value, revision if isinstance(revision, int) else 0)
        except BadObject as error:
            result.count_bad(error)
            continue
        if obj is None:
            result.ignored += 1
        else:
            result.objects.append(obj)


MAX_VALUE_BYTES = 1024 * 1024
"""Largest value decoded.  Calico objects are a few KiB (a big policy tens of KiB);
etcd accepts up to 1.5 MiB, so a larger one is poison, not a policy."""
MAX_NESTING = 64
"""Deepest JSON nesting accepted: the catalog compares and walks bodies, and a value
nested thousands deep would exhaust the interpreter's recursion limit there."""


def _decode_value(key: str, value: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if len(value) > MAX_VALUE_BYTES:
        raise BadObject("too_large", f"{key}: value of {len(value)} bytes (at most {MAX_VALUE_BYTES})")
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError as error:
            raise BadObject("not_utf8", f"{key}: value is not UTF-8") from error
    if not isinstance(value, str):
        raise BadObject("not_an_object", f"{key}: value is {type(value).__name__}")
    try:
        body = json.loads(value)
    except ValueError as error:
        raise BadObject("not_json", f"{key}: {error}") from error
    except RecursionError:
        raise BadObject("too_deep", f"{key}: JSON nested too deep") from None
    if not isinstance(body, dict):
        raise BadObject("not_an_object", f"{key}: value is JSON {type(body).__name__}, not an object")
    if nesting_depth(body) > MAX_NESTING:
        raise BadObject("too_deep", f"{key}: JSON nested more than {MAX_NESTING} levels")
    return body


def nesting_depth(value: object) -> int:
    """How deep lists and objects nest in ``value`` (iterative: safe on any input)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_shape(kind: str, key: str, body: Mapping[str, Any]) -> None:
    """Reject bodies whose fields the catalog reads have the wrong JSON types."""
    metadata = body.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise BadObject("bad_metadata", f"{key}: metadata is not an object")
    labels = metadata.get("labels")
    if labels is not None and not (
        isinstance(labels, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise BadObject("bad_labels", f"{key}: metadata.labels is not a string map")
    spec = body.get("spec", {})
    if not isinstance(spec, Mapping):
        raise BadObject("bad_spec", f"{key}: spec is not an object")
    if kind == "WorkloadEndpoint":
        for field_name in ("node", "interfaceName"):
            if not isinstance(spec.get(field_name), str) or not spec.get(field_name):
                raise BadObject("bad_spec", f"{key}: spec.{field_name} missing or not a string")
        for field_name in ("pod", "workload", "serviceAccountName", "endpoint"):
            if spec.get(field_name) is not None and not isinstance(spec.get(field_name), str):
                raise BadObject("bad_spec", f"{key}: spec.{field_name} is not a string")
        _check_string_lists(spec, key, ("ipNetworks", "profiles"))
    elif kind == "HostEndpoint":
        if not isinstance(spec.get("node"), str) or not spec.get("node"):
            raise BadObject("bad_spec", f"{key}: spec.node missing or not a string")
        if spec.get("interfaceName") is not None and not isinstance(spec.get("interfaceName"), str):
            raise BadObject("bad_spec", f"{key}: spec.interfaceName is not a string")
        _check_string_lists(spec, key, ("expectedIPs", "profiles"))
    elif kind != "Profile":
        tier = spec.get("tier")
        if tier is not None and not isinstance(tier, str):
            raise BadObject("bad_spec", f"{key}: spec.tier is not a string")


def _preview(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_string_lists(spec: Mapping[str, Any], key: str, names: tuple[str, ...]) -> None:
    """Each of ``names`` in ``spec`` absent or a list of strings, else :class:`BadObject`."""
    for field_name in names:
        items = spec.get(field_name)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(item, str) for item in items)
        ):
            raise BadObject("bad_spec", f"{key}: spec.{field_name} is not a list of strings")
