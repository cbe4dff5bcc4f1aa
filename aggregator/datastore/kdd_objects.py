"""Kubernetes objects (KDD mode) translated into the catalog's inputs, the way Calico derives them (pure).

In the Kubernetes API datastore Calico stores no WorkloadEndpoints or Profiles: libcalico-go
derives them on the fly (``libcalico-go/lib/backend/k8s/conversion``), and that derivation is
reproduced here so that one catalog serves both datastores:

* a **Pod** is a WorkloadEndpoint ``<node>-k8s-<pod>-eth0`` on interface
  ``prefix + sha1("<ns>.<pod>")[:11]`` (``VethNameForWorkload``), its IPs from ``status.podIPs``,
  ``status.podIP``, then the ``cni.projectcalico.org/podIPs``/``podIP`` and AWS annotations
  (``getPodIPs``), its labels the pod's plus ``projectcalico.org/namespace``, ``/orchestrator``
  and ``/serviceaccount`` (when shorter than 63 characters).  Host-network and unscheduled
  pods have no endpoint; neither has a pod without IPs, nor a finished one (``IsFinished``:
  felix never sees them, so no chain can name them);
* a **Namespace** is the Profile ``kns.<ns>``, a **ServiceAccount** ``ksa.<ns>.<sa>``, with the
  ``pcns.``/``pcsa.`` labels Calico puts on them;
* a ``networking.k8s.io`` **NetworkPolicy** is the NetworkPolicy ``knp.default.<name>``
  (``K8sNetworkPolicyToCalico``; the catalog also derives the v3.32 ``knp/<ns>/<name>`` ids);
* Calico's CRDs (``crd.projectcalico.org/v1``) keep their **stored** ``metadata.name``;
* ``policy.networking.k8s.io`` AdminNetworkPolicy, BaselineAdminNetworkPolicy and
  ClusterNetworkPolicy keep their names, in the tiers Calico puts them in.

Only what the catalog reads is kept: per pod its node, pod, interface, IPs, service account
and labels (its profiles ``kns.<ns>``/``ksa.<ns>.<sa>`` are not stored: the catalog derives
them from the namespace and service account, as libcalico-go does).  Repeated strings are
interned and pods with the same labels (a Deployment's replicas) share one read-only
``metadata`` mapping, so 150k pods fit in a small heap (``bench/kdd_catalog_bench.py``).
Policy rules are not converted: the catalog names chains, it does not evaluate rules.

Objects are keyed ``kubernetes:<resource>/[<ns>/]<name>`` by the Kubernetes object they come
from, so a watch event finds what it replaces (a pod that loses its endpoint deletes it) and
a re-listed resource type finds what it held (:attr:`KubeResource.key_prefix`).
"""

from __future__ import annotations

import ipaddress
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from aggregator.datastore.kdd_resources import POLICY_API_GROUP, KubeResource, resource_of
from aggregator.datastore.objects import BadObject, CalicoObject
from calico_accountant.contract import CANARY_KEY
from calico_accountant.felix.naming import DEFAULT_TIER, KNP_STORED_PREFIX, veth_name, workload_endpoint_name

__all__ = ["DEFAULT_INTERFACE_PREFIX", "KubeTranslator", "first_interface_prefix", "pod_ips"]

DEFAULT_INTERFACE_PREFIX = "cali"
_POD_IPS = "cni.projectcalico.org/podIPs"
_POD_IP = "cni.projectcalico.org/podIP"
_AWS_POD_IPS = "vpc.amazonaws.com/pod-ips"
_FINISHED_PHASES = frozenset({"Failed", "Succeeded", "Completed"})
_POLICY_SPEC_FIELDS = ("tier", "order", "selector", "namespaceSelector", "serviceAccountSelector", "types")
_CNP_TIERS = {"Admin": "kube-admin", "Baseline": "kube-baseline"}


def _canary_mark(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``calico-accountant.io/canary`` label and annotation of a policy, the only ones kept
    (for the policy-info metrics; other labels would only cost memory)."""
    out: dict[str, Any] = {}
    for field_name in ("labels", "annotations"):
        value = _mapping(metadata.get(field_name)).get(CANARY_KEY)
        if isinstance(value, str):
            out[field_name] = {CANARY_KEY: value}
    return out


def first_interface_prefix(value: str) -> str:
    """The prefix libcalico-go names veths with: the first of ``FELIX_INTERFACEPREFIX``'s list."""
    first = value.split(",", 1)[0].strip()
    return first or DEFAULT_INTERFACE_PREFIX


def _text(value: Any, what: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or "/" in value:
        raise BadObject("bad_metadata", f"{what} is not a valid name: {value!r}")
    return value


def _string_map(value: Any, what: str) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadObject("bad_labels", f"{what} is not a string map")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ip_networks(texts: list[str], what: str) -> list[str]:
    """``cnet.ParseCIDROrIP`` then ``String()``: a bare IP is a /32 or /128, a CIDR its network."""
    out = []
    for text in texts:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise BadObject("bad_pod_ip", f"{what}: {text!r} is not an IP address") from None
        out.append(str(network))
    return out


def pod_ips(metadata: Mapping[str, Any], status: Mapping[str, Any], what: str) -> list[str]:
    """``getPodIPs`` then ``IsFinished``: the pod's IP networks, none once it is finished."""
    annotations = _mapping(metadata.get("annotations"))
    texts: list[str] = []
    pod_ips_field = status.get("podIPs")
    if isinstance(pod_ips_field, list) and pod_ips_field:
        texts = [str(_mapping(entry).get("ip") or "") for entry in pod_ips_field]
    elif status.get("podIP"):
        texts = [str(status["podIP"])]
    elif annotations.get(_POD_IPS):
        texts = str(annotations[_POD_IPS]).split(",")
    elif annotations.get(_POD_IP):
        texts = [str(annotations[_POD_IP])]
    elif annotations.get(_AWS_POD_IPS):
        texts = str(annotations[_AWS_POD_IPS]).split(",")
    networks = _ip_networks(texts, what)
    if metadata.get("deletionTimestamp") and (
        annotations.get(_POD_IP) == "" or annotations.get(_AWS_POD_IPS) == ""
    ):
        return []  # being deleted, and the CNI plugin has already released its IPs
    if status.get("phase") in _FINISHED_PHASES:
        return []
    return networks


class _SharedMetadata(dict[str, Any]):
    """A pod's ``{"labels": ...}``, shared by every pod with the same labels while one lives."""

    __slots__ = ("__weakref__",)


class KubeTranslator:
    """Kubernetes objects -> :class:`CalicoObject` (WorkloadEndpoints, Profiles, policies, tiers).

    ``interface_prefix`` is felix's ``FELIX_INTERFACEPREFIX`` (its first entry names veths).
    The objects it returns share read-only parts: treat their bodies as immutable.
    """

    def __init__(self, interface_prefix: str = DEFAULT_INTERFACE_PREFIX) -> None:
        self.interface_prefix = first_interface_prefix(interface_prefix)
        self._metadata: weakref.WeakValueDictionary[int, _SharedMetadata] = weakref.WeakValueDictionary()
        self._by_kind: dict[str, Callable[[KubeResource, Mapping[str, Any]], CalicoObject | None]] = {
            "Pod": self._pod,
            "Namespace": self._namespace,
            "ServiceAccount": self._service_account,
            "Tier": self._tier,
            "HostEndpoint": self._host_endpoint,
        }

    def document(self, document: Mapping[str, Any]) -> CalicoObject | None:
        """Translate a document that says what it is (``kubectl get -o json`` items, watch
        events); None when it is no Kubernetes type the catalog reads, or derives nothing."""
        resource = resource_of(document)
        return None if resource is None else self.translate(resource, document)

    def translate(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject | None:
        """One object of ``resource`` (list items carry no ``kind``); None when it derives
        nothing (a host-network pod, one without IPs...).  Raises :class:`BadObject`."""
        special = self._by_kind.get(resource.kind)
        if special is not None:
            return special(resource, body)
        if resource.group == "networking.k8s.io":
            return self._kubernetes_network_policy(resource, body)
        return self._policy(resource, body)

    def key(self, resource: KubeResource, body: Mapping[str, Any]) -> str:
        """The cache key of whatever ``body`` derives (also when it derives nothing now)."""
        namespace, name = self._identity(resource, _mapping(body.get("metadata")))
        return resource.key(namespace, name)

    # ------------------------------------------------------------------ per kind

    @staticmethod
    def _identity(resource: KubeResource, metadata: Mapping[str, Any]) -> tuple[str, str]:
        name = _text(metadata.get("name"), f"{resource.kind} metadata.name")
        if not resource.namespaced:
            return "", name
        return sys.intern(
            _text(metadata.get("namespace"), f"{resource.kind} {name} metadata.namespace")
        ), name

    def _pod(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject | None:
        metadata, spec = _mapping(body.get("metadata")), _mapping(body.get("spec"))
        namespace, pod = self._identity(resource, metadata)
        node = spec.get("nodeName")
        if spec.get("hostNetwork") is True or not isinstance(node, str) or not node:
            return None
        networks = pod_ips(metadata, _mapping(body.get("status")), f"pod {namespace}/{pod}")
        if not networks:
            return None
        node = sys.intern(node)
        account = spec.get("serviceAccountName") or ""
        account = sys.intern(account) if isinstance(account, str) else ""
        labels = {
            sys.intern(k): sys.intern(v)
            for k, v in _string_map(metadata.get("labels"), f"pod {namespace}/{pod} labels").items()
        }
        labels["projectcalico.org/namespace"] = namespace
        labels["projectcalico.org/orchestrator"] = "k8s"
        if account and len(account) < 63:
            labels["projectcalico.org/serviceaccount"] = account
        endpoint_spec: dict[str, Any] = {
            "node": node,
            "pod": pod,
            "interfaceName": veth_name(namespace, pod, self.interface_prefix),
            "ipNetworks": tuple(networks),
        }
        if account:
            endpoint_spec["serviceAccountName"] = account
        return CalicoObject(
            "WorkloadEndpoint",
            namespace,
            workload_endpoint_name(node, pod),
            resource.key(namespace, pod),
            0,
            {"metadata": self._shared_metadata(labels), "spec": endpoint_spec},
        )

    def _shared_metadata(self, labels: dict[str, str]) -> Mapping[str, Any]:
        """Keyed by the labels' hash (a tuple of them per label set would cost more than it
        saves); a colliding label set simply is not shared."""
        identity = hash(frozenset(labels.items()))
        shared = self._metadata.get(identity)
        if shared is not None and shared["labels"] == labels:
            return shared
        fresh = _SharedMetadata(labels=labels)
        if shared is None:
            self._metadata[identity] = fresh
        return fresh

    def _namespace(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        metadata = _mapping(body.get("metadata"))
        _, name = self._identity(resource, metadata)
        labels = {f"pcns.{k}": v for k, v in _string_map(metadata.get("labels"), f"namespace {name}").items()}
        labels["pcns.projectcalico.org/name"] = name
        spec = {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}], "labelsToApply": labels}
        return self._profile(resource.key("", name), f"kns.{name}", spec)

    def _service_account(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        metadata = _mapping(body.get("metadata"))
        namespace, name = self._identity(resource, metadata)
        labels = {
            f"pcsa.{k}": v
            for k, v in _string_map(metadata.get("labels"), f"serviceaccount {namespace}/{name}").items()
        }
        labels["pcsa.projectcalico.org/name"] = name
        profile = f"ksa.{namespace or 'default'}.{name}"
        return self._profile(resource.key(namespace, name), profile, {"labelsToApply": labels})

    @staticmethod
    def _profile(key: str, name: str, spec: Mapping[str, Any]) -> CalicoObject:
        return CalicoObject("Profile", "", name, key, 0, {"metadata": {"name": name}, "spec": spec})

    def _kubernetes_network_policy(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        metadata, spec = _mapping(body.get("metadata")), _mapping(body.get("spec"))
        namespace, name = self._identity(resource, metadata)
        types = [t for t in ("Ingress", "Egress") if t in (spec.get("policyTypes") or ())] or ["Ingress"]
        stored = KNP_STORED_PREFIX + name
        policy_spec = {"tier": DEFAULT_TIER, "order": 1000.0, "types": types}
        return CalicoObject(
            "NetworkPolicy",
            namespace,
            stored,
            resource.key(namespace, name),
            0,
            {
                "metadata": {"name": stored, "namespace": namespace, **_canary_mark(metadata)},
                "spec": policy_spec,
            },
        )

    def _tier(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        metadata, spec = _mapping(body.get("metadata")), _mapping(body.get("spec"))
        _, name = self._identity(resource, metadata)
        kept = {k: spec[k] for k in ("order", "defaultAction") if isinstance(spec.get(k), str | int | float)}
        return CalicoObject(
            "Tier", "", name, resource.key("", name), 0, {"metadata": {"name": name}, "spec": kept}
        )

    def _host_endpoint(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        """A HostEndpoint CRD: the fields that say which node interface it owns."""
        metadata, spec = _mapping(body.get("metadata")), _mapping(body.get("spec"))
        _, name = self._identity(resource, metadata)
        kept: dict[str, Any] = {"node": _text(spec.get("node"), f"HostEndpoint {name} spec.node")}
        interface = spec.get("interfaceName")
        if interface is not None:
            kept["interfaceName"] = _text(
                interface, f"HostEndpoint {name} spec.interfaceName", required=False
            )
        for field_name in ("expectedIPs", "profiles"):
            items = spec.get(field_name)
            if isinstance(items, list) and all(isinstance(item, str) for item in items):
                kept[field_name] = list(items)
        out_metadata: dict[str, Any] = {"name": name}
        labels = _string_map(metadata.get("labels"), f"HostEndpoint {name} metadata.labels")
        if labels:
            out_metadata["labels"] = dict(labels)
        return CalicoObject(
            "HostEndpoint", "", name, resource.key("", name), 0, {"metadata": out_metadata, "spec": kept}
        )

    def _policy(self, resource: KubeResource, body: Mapping[str, Any]) -> CalicoObject:
        """A Calico policy CRD (stored name kept) or an admin network policy, in Calico's tier."""
        metadata, spec = _mapping(body.get("metadata")), _mapping(body.get("spec"))
        namespace, name = self._identity(resource, metadata)
        kept: dict[str, Any] = {}
        for field_name in _POLICY_SPEC_FIELDS:
            value = spec.get(field_name)
            if isinstance(value, str | int | float) or (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                kept[field_name] = value
        if resource.group == POLICY_API_GROUP:
            kept = {}
            if isinstance(spec.get("priority"), int):
                kept["order"] = spec["priority"]
            tier = {
                "AdminNetworkPolicy": "adminnetworkpolicy",
                "BaselineAdminNetworkPolicy": "baselineadminnetworkpolicy",
            }.get(resource.kind) or _CNP_TIERS.get(str(spec.get("tier")), "")
            if tier:
                kept["tier"] = tier
        elif "tier" in kept and not isinstance(kept["tier"], str):
            raise BadObject("bad_spec", f"{resource.kind} {name}: spec.tier is not a string")
        else:
            # The rules, for the rule-info metrics (what each rule says); kept as read.
            for field_name in ("ingress", "egress"):
                rules = spec.get(field_name)
                if isinstance(rules, list) and all(isinstance(rule, Mapping) for rule in rules):
                    kept[field_name] = rules
        out_metadata: dict[str, Any] = {"name": name}
        if namespace:
            out_metadata["namespace"] = namespace
        out_metadata.update(_canary_mark(metadata))
        annotation = _mapping(metadata.get("annotations")).get("projectcalico.org/metadata")
        if isinstance(annotation, str):
            out_metadata.setdefault("annotations", {})["projectcalico.org/metadata"] = annotation
        return CalicoObject(
            resource.kind,
            namespace,
            name,
            resource.key(namespace, name),
            0,
            {"metadata": out_metadata, "spec": kept},
        )
