"""The sample cluster as typed objects: tiers, policies, profiles and workload endpoints (pure).

The demo turns the same Calico objects the aggregator reads (``calico_accountant_cli/sample/
cluster.yaml``) into lab nodes, so what the kernel enforces, what the datastore says and
what the test expects all come from one file.  Only what the demo needs is modelled:
ingress/egress rules with an action, an optional protocol, destination ports and a
source (pod selector and namespace selector).  Anything else in a rule is refused with a
clear error rather than silently ignored, because ignoring a match would make the lab
enforce something different from the datastore.

:func:`stored_documents` gives the objects the way Calico's etcd backend stores them
(v3.30: policies under ``<tier>.<name>`` with the original name in the
``projectcalico.org/metadata`` annotation), for ``--datastore etcd://``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import yaml

from aggregator.datastore.objects import API_VERSION, resource_key
from calico_accountant.felix.naming import (
    DEFAULT_TIER,
    KNP_STORED_PREFIX,
    stored_policy_name,
    workload_endpoint_name,
)
from calico_accountant_cli.demo.selectors import parse_selector

__all__ = [
    "Cluster",
    "ClusterError",
    "Policy",
    "PolicyRule",
    "Profile",
    "Tier",
    "Workload",
    "load_cluster",
    "load_sample_cluster",
    "manifest_documents",
    "policy_document",
    "sample_cluster_text",
    "stored_documents",
    "workload_document",
]

_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp"}
_ACTIONS = {"Allow": "allow", "Deny": "deny", "Pass": "pass", "Log": "log"}
_RULE_KEYS = frozenset({"action", "protocol", "source", "destination"})
_SOURCE_KEYS = frozenset({"selector", "namespaceSelector"})
_DESTINATION_KEYS = frozenset({"ports"})


class ClusterError(ValueError):
    """The cluster file uses something the demo cannot render faithfully."""


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    order: float
    default_action: str
    """``Deny`` (an end-of-tier drop) or ``Pass`` (unmatched traffic goes on)."""


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ingress or egress rule: ``action`` (allow/deny/pass/log) for matching packets."""

    action: str
    protocol: str | None = None
    """``tcp``, ``udp``, ``icmp`` or None (any)."""
    ports: tuple[int, ...] = ()
    """Destination ports (tcp/udp only); empty: any."""
    source_selector: str | None = None
    source_namespace_selector: str | None = None

    @property
    def has_source(self) -> bool:
        return self.source_selector is not None or self.source_namespace_selector is not None


@dataclass(frozen=True, slots=True)
class Policy:
    """A NetworkPolicy (Kubernetes ones as ``knp.default.<name>``) or a GlobalNetworkPolicy."""

    kind: str
    """``NetworkPolicy`` or ``GlobalNetworkPolicy`` (the datastore kind)."""
    namespace: str
    name: str
    """As users see it (no ``default.``/``<tier>.`` prefix; ``knp.default.`` kept)."""
    tier: str
    order: float | None
    selector: str
    namespace_selector: str | None
    types: tuple[str, ...]
    """``ingress`` and/or ``egress``."""
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]

    @property
    def stored_name(self) -> str:
        """The name Calico stores (and felix hashes): ``<tier>.<name>``, KNPs unchanged."""
        return stored_policy_name(self.name, self.tier)

    @property
    def shown_kind(self) -> str:
        """The kind the aggregator reports (a ``knp.default.`` NetworkPolicy is a Kubernetes one)."""
        if self.kind == "NetworkPolicy" and self.name.startswith(KNP_STORED_PREFIX):
            return "KubernetesNetworkPolicy"
        return self.kind

    @property
    def shown_name(self) -> str:
        return (
            self.name.removeprefix(KNP_STORED_PREFIX)
            if self.name.startswith(KNP_STORED_PREFIX)
            else self.name
        )

    def rules(self, direction: str) -> tuple[PolicyRule, ...]:
        return self.ingress if direction == "ingress" else self.egress

    def sort_key(self) -> tuple[float, str]:
        """Felix's order within a tier: ``order`` (missing = last), then name."""
        return (self.order if self.order is not None else float("inf"), self.name)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    labels_to_apply: tuple[tuple[str, str], ...] = ()
    allow_ingress: bool = False
    allow_egress: bool = False


@dataclass(frozen=True, slots=True)
class Workload:
    """A pod's WorkloadEndpoint."""

    node: str
    namespace: str
    pod: str
    interface: str
    ipv4: str
    labels: tuple[tuple[str, str], ...]
    profiles: tuple[str, ...]
    service_account: str = ""

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def app(self) -> str:
        labels = self.label_map
        return labels.get("app") or labels.get("app.kubernetes.io/name", "")

    @property
    def endpoint_name(self) -> str:
        return workload_endpoint_name(self.node, self.pod)


@dataclass(frozen=True, slots=True)
class Cluster:
    """Everything the demo renders from; immutable, changed by building a new one."""

    tiers: tuple[Tier, ...]
    policies: tuple[Policy, ...]
    profiles: tuple[Profile, ...]
    workloads: tuple[Workload, ...]
    other_documents: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    """Documents of kinds the demo does not model, kept for writing the datastore."""

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({w.node for w in self.workloads}))

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        if name == DEFAULT_TIER:
            return Tier(DEFAULT_TIER, 1_000_000.0, "Deny")
        raise KeyError(name)

    def profile(self, name: str) -> Profile | None:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        return None

    def workload(self, pod: str) -> Workload:
        for workload in self.workloads:
            if workload.pod == pod:
                return workload
        raise KeyError(pod)

    def policy(self, name: str, namespace: str = "") -> Policy:
        for policy in self.policies:
            if policy.name == name and policy.namespace == namespace:
                return policy
        raise KeyError(f"{namespace}/{name}" if namespace else name)

    def on_node(self, node: str) -> tuple[Workload, ...]:
        return tuple(w for w in self.workloads if w.node == node)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels a namespaceSelector sees: ``projectcalico.org/name`` plus the
        ``pcns.``-prefixed labels of the ``kns.<namespace>`` profile, unprefixed."""
        labels = {"projectcalico.org/name": namespace}
        profile = self.profile(f"kns.{namespace}")
        if profile is not None:
            for key, value in profile.labels_to_apply:
                labels[key.removeprefix("pcns.")] = value
        return labels

    def with_workload(self, workload: Workload) -> Cluster:
        kept = tuple(w for w in self.workloads if w.pod != workload.pod)
        return replace(self, workloads=(*kept, workload))

    def without_workload(self, pod: str) -> Cluster:
        return replace(self, workloads=tuple(w for w in self.workloads if w.pod != pod))

    def with_policy(self, policy: Policy) -> Cluster:
        kept = tuple(
            p
            for p in self.policies
            if (p.kind, p.namespace, p.name) != (policy.kind, policy.namespace, policy.name)
        )
        return replace(self, policies=(*kept, policy))


# ------------------------------------------------------------------------ loading


def sample_cluster_text() -> str:
    """The bundled sample cluster (``calico_accountant_cli/sample/cluster.yaml``)."""
    return resources.files("calico_accountant_cli").joinpath("sample/cluster.yaml").read_text()


def load_sample_cluster() -> Cluster:
    return load_cluster(sample_cluster_text())


def load_cluster(text: str) -> Cluster:
    """Parse multi-document YAML (``calicoctl get -o yaml`` shape, or ``kind: List``)."""
    documents: list[Mapping[str, Any]] = []
    for document in yaml.safe_load_all(text):
        documents.extend(_flatten(document))
    tiers: list[Tier] = []
    policies: list[Policy] = []
    profiles: list[Profile] = []
    workloads: list[Workload] = []
    others: list[Mapping[str, Any]] = []
    for document in documents:
        kind = document.get("kind")
        try:
            if kind == "Tier":
                tiers.append(_tier(document))
            elif kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
                policies.append(_policy(document))
            elif kind == "Profile":
                profiles.append(_profile(document))
            elif kind == "WorkloadEndpoint":
                workloads.append(_workload(document))
            else:
                others.append(document)
        except (KeyError, TypeError, ValueError) as error:
            name = _metadata(document).get("name", "?")
            raise ClusterError(f"{kind} {name}: {error}") from error
    interfaces = [(w.node, w.interface) for w in workloads]
    if len(set(interfaces)) != len(interfaces):
        raise ClusterError("two workload endpoints share a node and interface")
    return Cluster(tuple(tiers), tuple(policies), tuple(profiles), tuple(workloads), tuple(others))


def _flatten(document: Any) -> Iterable[Mapping[str, Any]]:
    if document is None:
        return []
    if isinstance(document, list):
        return [d for item in document for d in _flatten(item)]
    if isinstance(document, Mapping):
        if str(document.get("kind", "")).endswith("List") and isinstance(document.get("items"), list):
            return _flatten(document["items"])
        return [document]
    raise ClusterError(f"not a Calico object: {document!r}")


def _metadata(document: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = document.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _spec(document: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = document.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _tier(document: Mapping[str, Any]) -> Tier:
    spec = _spec(document)
    action = str(spec.get("defaultAction", "Deny"))
    if action not in ("Deny", "Pass"):
        raise ValueError(f"defaultAction {action!r} is not Deny or Pass")
    return Tier(str(_metadata(document)["name"]), float(spec.get("order", 1_000_000)), action)


def _rule(raw: Mapping[str, Any]) -> PolicyRule:
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"rule fields {sorted(unknown)} are not supported by the demo")
    action = _ACTIONS.get(str(raw.get("action")))
    if action is None:
        raise ValueError(f"rule action {raw.get('action')!r}")
    protocol = raw.get("protocol")
    if protocol is not None and str(protocol).upper() not in _PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}")
    source = raw.get("source") or {}
    destination = raw.get("destination") or {}
    if set(source) - _SOURCE_KEYS or set(destination) - _DESTINATION_KEYS:
        raise ValueError("only source.selector/namespaceSelector and destination.ports are supported")
    ports = tuple(int(port) for port in destination.get("ports") or ())
    proto = _PROTOCOLS[str(protocol).upper()] if protocol is not None else None
    if ports and proto not in ("tcp", "udp"):
        raise ValueError("destination ports need protocol TCP or UDP")
    for text in (source.get("selector"), source.get("namespaceSelector")):
        parse_selector(text)  # fail early on a selector outside the subset
    return PolicyRule(
        action=action,
        protocol=proto,
        ports=ports,
        source_selector=source.get("selector"),
        source_namespace_selector=source.get("namespaceSelector"),
    )


def _policy(document: Mapping[str, Any]) -> Policy:
    metadata, spec = _metadata(document), _spec(document)
    kind = str(document["kind"])
    namespace = str(metadata.get("namespace") or "") if kind == "NetworkPolicy" else ""
    if kind == "NetworkPolicy" and not namespace:
        raise ValueError("a NetworkPolicy needs metadata.namespace")
    tier = str(spec.get("tier") or DEFAULT_TIER)
    name = str(metadata["name"])
    for prefix in (f"{tier}.",):  # a stored name given back: keep the name users see
        if name.startswith(prefix) and not name.startswith(KNP_STORED_PREFIX):
            name = name[len(prefix) :]
    ingress = tuple(_rule(rule) for rule in spec.get("ingress") or ())
    egress = tuple(_rule(rule) for rule in spec.get("egress") or ())
    if any(rule.has_source for rule in egress):
        raise ValueError("egress rules with a source are not supported by the demo")
    raw_types = spec.get("types")
    if raw_types:
        types = tuple(str(t).lower() for t in raw_types)
    else:  # Calico's default: Ingress, plus Egress when there are egress rules
        types = ("ingress", "egress") if egress else ("ingress",)
    order = spec.get("order")
    selector = str(spec.get("selector") or "")
    parse_selector(selector)
    namespace_selector = spec.get("namespaceSelector")
    parse_selector(namespace_selector)
    return Policy(
        kind=kind,
        namespace=namespace,
        name=name,
        tier=tier,
        order=float(order) if order is not None else None,
        selector=selector,
        namespace_selector=namespace_selector,
        types=types,
        ingress=ingress,
        egress=egress,
    )


def _profile(document: Mapping[str, Any]) -> Profile:
    spec = _spec(document)
    labels = spec.get("labelsToApply") or {}

    def allows(rules: Sequence[Mapping[str, Any]] | None) -> bool:
        # Profiles in the sample are allow-all or empty; anything finer is not modelled.
        rules = list(rules or ())
        if any(set(rule) != {"action"} for rule in rules):
            raise ValueError("only match-everything profile rules are supported by the demo")
        return bool(rules) and _ACTIONS.get(str(rules[0].get("action"))) == "allow"

    return Profile(
        name=str(_metadata(document)["name"]),
        labels_to_apply=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        allow_ingress=allows(spec.get("ingress")),
        allow_egress=allows(spec.get("egress")),
    )


def _workload(document: Mapping[str, Any]) -> Workload:
    metadata, spec = _metadata(document), _spec(document)
    networks = [str(n) for n in spec.get("ipNetworks") or ()]
    ipv4 = next((n.split("/")[0] for n in networks if ":" not in n), "")
    if not ipv4:
        raise ValueError("the demo needs an IPv4 address in ipNetworks")
    labels = metadata.get("labels") or {}
    return Workload(
        node=str(spec["node"]),
        namespace=str(metadata["namespace"]),
        pod=str(spec.get("pod") or spec.get("workload")),
        interface=str(spec["interfaceName"]),
        ipv4=ipv4,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        profiles=tuple(str(p) for p in spec.get("profiles") or ()),
        service_account=str(spec.get("serviceAccountName") or ""),
    )


# ------------------------------------------------------------------------ writing


def workload_document(workload: Workload) -> dict[str, Any]:
    """The WorkloadEndpoint as ``calicoctl get -o yaml`` prints it (and etcd stores it)."""
    spec: dict[str, Any] = {
        "orchestrator": "k8s",
        "node": workload.node,
        "pod": workload.pod,
        "endpoint": "eth0",
        "ipNetworks": [f"{workload.ipv4}/32"],
        "profiles": list(workload.profiles),
        "interfaceName": workload.interface,
    }
    if workload.service_account:
        spec["serviceAccountName"] = workload.service_account
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": workload.endpoint_name,
            "namespace": workload.namespace,
            "labels": dict(workload.labels),
        },
        "spec": spec,
    }


def _rule_document(rule: PolicyRule) -> dict[str, Any]:
    out: dict[str, Any] = {"action": {v: k for k, v in _ACTIONS.items()}[rule.action]}
    if rule.protocol is not None:
        out["protocol"] = rule.protocol.upper()
    source: dict[str, Any] = {}
    if rule.source_selector is not None:
        source["selector"] = rule.source_selector
    if rule.source_namespace_selector is not None:
        source["namespaceSelector"] = rule.source_namespace_selector
    if source:
        out["source"] = source
    if rule.ports:
        out["destination"] = {"ports": list(rule.ports)}
    return out


def policy_document(policy: Policy) -> dict[str, Any]:
    """The policy as ``calicoctl get -o yaml`` prints it (the name users typed)."""
    metadata: dict[str, Any] = {"name": policy.name}
    if policy.namespace:
        metadata["namespace"] = policy.namespace
    spec: dict[str, Any] = {"tier": policy.tier, "selector": policy.selector}
    if policy.order is not None:
        spec["order"] = int(policy.order) if policy.order.is_integer() else policy.order
    if policy.namespace_selector is not None:
        spec["namespaceSelector"] = policy.namespace_selector
    spec["types"] = [t.capitalize() for t in policy.types]
    if policy.ingress:
        spec["ingress"] = [_rule_document(rule) for rule in policy.ingress]
    if policy.egress:
        spec["egress"] = [_rule_document(rule) for rule in policy.egress]
    return {"apiVersion": API_VERSION, "kind": policy.kind, "metadata": metadata, "spec": spec}


def _tier_document(tier: Tier) -> dict[str, Any]:
    order = int(tier.order) if tier.order.is_integer() else tier.order
    return {
        "apiVersion": API_VERSION,
        "kind": "Tier",
        "metadata": {"name": tier.name},
        "spec": {"order": order, "defaultAction": tier.default_action},
    }


def _profile_document(profile: Profile) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if profile.allow_ingress:
        spec["ingress"] = [{"action": "Allow"}]
    if profile.allow_egress:
        spec["egress"] = [{"action": "Allow"}]
    if profile.labels_to_apply:
        spec["labelsToApply"] = dict(profile.labels_to_apply)
    return {"apiVersion": API_VERSION, "kind": "Profile", "metadata": {"name": profile.name}, "spec": spec}


def manifest_documents(cluster: Cluster) -> list[dict[str, Any]]:
    """Every modelled object as ``calicoctl get -o yaml`` prints it."""
    return [
        *(_tier_document(t) for t in cluster.tiers),
        *(policy_document(p) for p in cluster.policies),
        *(_profile_document(p) for p in cluster.profiles),
        *(workload_document(w) for w in cluster.workloads),
    ]


def stored_document(document: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(etcd key, value) of one object as Calico v3.30's etcd backend stores it.

    Policies are stored under ``<tier>.<name>`` (Kubernetes ones as ``knp.default.<name>``)
    with the name users typed in the ``projectcalico.org/metadata`` annotation; every
    object gets ``uid`` and ``creationTimestamp`` like clientv3 sets them.
    """
    body = copy.deepcopy(dict(document))
    kind = str(body["kind"])
    metadata = dict(body.get("metadata") or {})
    name = str(metadata["name"])
    namespace = str(metadata.get("namespace") or "")
    if kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
        tier = str((body.get("spec") or {}).get("tier") or DEFAULT_TIER)
        stored = stored_policy_name(name, tier)
        if stored != name:
            annotations = dict(metadata.get("annotations") or {})
            annotations["projectcalico.org/metadata"] = json.dumps({"name": name}, separators=(",", ":"))
            metadata["annotations"] = annotations
        name = stored
        metadata["name"] = name
    metadata.setdefault("uid", _uid(kind, namespace, name))
    metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
    body["metadata"] = metadata
    return resource_key(kind, namespace, name), body


def stored_documents(cluster: Cluster) -> list[tuple[str, str]]:
    """(etcd key, JSON value) of every modelled object, as Calico stores them."""
    out = []
    for document in manifest_documents(cluster):
        key, body = stored_document(document)
        out.append((key, json.dumps(body, separators=(",", ":"), sort_keys=True)))
    return out


def _uid(kind: str, namespace: str, name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"calico-accountant-demo/{kind}/{namespace}/{name}"))
