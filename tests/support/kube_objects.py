"""Kubernetes objects shaped like real API output, and the demo's sample cluster as a KDD cluster.

The builders return what ``kubectl get <kind> -o json`` prints for one object of a current
cluster running Calico with its own CNI (Pods with ``cni.projectcalico.org/*`` annotations,
owner references, the projected ServiceAccount token volume, status conditions; Calico's
CRDs with stored names and the ``projectcalico.org/metadata`` annotation), so the translation
meets the fields it must skip as well as those it reads.  List responses of the stand-in API
server drop ``kind``/``apiVersion`` from the items of built-in types, as kube-apiserver does.

:func:`kdd_cluster` renders :mod:`calico_accountant_cli.demo.cluster`'s :class:`Cluster` (the
objects the demo writes into etcd) as the Kubernetes objects a KDD cluster would hold instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from calico_accountant.felix.naming import KNP_STORED_PREFIX, stored_policy_name
from calico_accountant_cli.demo.cluster import Cluster, Policy

__all__ = [
    "KubeClusterStore",
    "calico_host_endpoint",
    "calico_policy",
    "calico_tier",
    "kdd_cluster",
    "kubectl_list",
    "namespace",
    "network_policy",
    "pod",
    "service_account",
]

CREATED = "2026-11-25T10:00:00Z"


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "kube-objects/" + "/".join(parts)))


def _container_id(namespace: str, name: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()


def pod(
    namespace: str,
    name: str,
    node: str | None,
    ip: str | None,
    labels: Mapping[str, str] | None = None,
    *,
    service_account: str = "default",
    phase: str = "Running",
    host_network: bool = False,
    ipv6: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment's pod as the API returns it (``kubectl get pod NAME -o json``).

    ``node=None``: not scheduled yet (Pending, no IP).  ``ip=None``: scheduled, no IP yet.
    """
    owner = name.rsplit("-", 1)[0]
    ips = [address for address in (ip, ipv6) if address]
    meta_annotations: dict[str, str] = {}
    if ips and not host_network:
        cidrs = [f"{a}/128" if ":" in a else f"{a}/32" for a in ips]
        meta_annotations = {
            "cni.projectcalico.org/containerID": _container_id(namespace, name),
            "cni.projectcalico.org/podIP": cidrs[0],
            "cni.projectcalico.org/podIPs": ",".join(cidrs),
        }
    meta_annotations.update(annotations or {})
    metadata: dict[str, Any] = {
        "annotations": meta_annotations,
        "creationTimestamp": CREATED,
        "generateName": owner + "-",
        "labels": dict(labels or {}),
        "name": name,
        "namespace": namespace,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "blockOwnerDeletion": True,
                "controller": True,
                "kind": "ReplicaSet",
                "name": owner,
                "uid": _uid("rs", namespace, owner),
            }
        ],
        "uid": _uid("pod", namespace, name),
    }
    if not meta_annotations:
        del metadata["annotations"]
    spec: dict[str, Any] = {
        "containers": [
            {
                "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                "imagePullPolicy": "IfNotPresent",
                "name": "app",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [
                    {
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "name": "kube-api-access-7xk2p",
                        "readOnly": True,
                    }
                ],
            }
        ],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccount": service_account,
        "serviceAccountName": service_account,
        "terminationGracePeriodSeconds": 30,
        "tolerations": [
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
        ],
        "volumes": [
            {
                "name": "kube-api-access-7xk2p",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                "name": "kube-root-ca.crt",
                            }
                        },
                    ],
                },
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    status: dict[str, Any] = {"phase": phase if node else "Pending", "qosClass": "BestEffort"}
    if node:
        status.update(
            {
                "conditions": [
                    {"lastProbeTime": None, "lastTransitionTime": CREATED, "status": "True", "type": kind}
                    for kind in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                        "PodScheduled",
                    )
                ],
                "hostIP": "172.18.0.3",
                "hostIPs": [{"ip": "172.18.0.3"}],
                "startTime": CREATED,
            }
        )
        if ips:
            status["podIP"] = ips[0]
            status["podIPs"] = [{"ip": address} for address in ips]
    else:
        status["conditions"] = [
            {
                "lastProbeTime": None,
                "lastTransitionTime": CREATED,
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
                "reason": "Unschedulable",
                "status": "False",
                "type": "PodScheduled",
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "creationTimestamp": CREATED,
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
            "name": name,
            "uid": _uid("ns", name),
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def service_account(
    namespace_name: str, name: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "creationTimestamp": CREATED,
        "name": name,
        "namespace": namespace_name,
        "uid": _uid("sa", namespace_name, name),
    }
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def network_policy(
    namespace_name: str,
    name: str,
    pod_selector: Mapping[str, str] | None = None,
    *,
    from_pods: Mapping[str, str] | None = None,
    ports: Sequence[int] = (),
    policy_types: Sequence[str] = ("Ingress",),
) -> dict[str, Any]:
    """A ``networking.k8s.io/v1`` NetworkPolicy (one ingress rule)."""
    rule: dict[str, Any] = {}
    if from_pods is not None:
        rule["from"] = [{"podSelector": {"matchLabels": dict(from_pods)}}]
    if ports:
        rule["ports"] = [{"port": port, "protocol": "TCP"} for port in ports]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "creationTimestamp": CREATED,
            "generation": 1,
            "name": name,
            "namespace": namespace_name,
            "uid": _uid("knp", namespace_name, name),
        },
        "spec": {
            "ingress": [rule] if "Ingress" in policy_types else [],
            "podSelector": {"matchLabels": dict(pod_selector)} if pod_selector else {},
            "policyTypes": list(policy_types),
        },
    }


def calico_policy(
    kind: str, stored_name: str, spec: Mapping[str, Any], namespace_name: str = "", typed_name: str = ""
) -> dict[str, Any]:
    """A Calico policy as its CRD holds it (``crd.projectcalico.org/v1``): the stored name, and
    the name users typed in ``projectcalico.org/metadata`` when they differ (v3.29.4-v3.31)."""
    metadata: dict[str, Any] = {
        "creationTimestamp": CREATED,
        "generation": 1,
        "name": stored_name,
        "uid": _uid(kind, namespace_name, stored_name),
    }
    if namespace_name:
        metadata["namespace"] = namespace_name
    if typed_name and typed_name != stored_name:
        metadata["annotations"] = {
            "projectcalico.org/metadata": json.dumps({"name": typed_name}, separators=(",", ":"))
        }
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": kind, "metadata": metadata, "spec": dict(spec)}


def calico_tier(name: str, order: float, default_action: str = "Deny") -> dict[str, Any]:
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "Tier",
        "metadata": {"creationTimestamp": CREATED, "generation": 1, "name": name, "uid": _uid("tier", name)},
        "spec": {
            "defaultAction": default_action,
            "order": int(order) if float(order) == int(order) else order,
        },
    }


def calico_host_endpoint(
    name: str,
    node: str,
    interface: str | None,
    *,
    profiles: Sequence[str] = (),
    expected_ips: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A HostEndpoint as its CRD holds it (global; ``interfaceName`` None: left out)."""
    spec: dict[str, Any] = {"node": node}
    if interface is not None:
        spec["interfaceName"] = interface
    if profiles:
        spec["profiles"] = list(profiles)
    if expected_ips:
        spec["expectedIPs"] = list(expected_ips)
    metadata: dict[str, Any] = {
        "creationTimestamp": CREATED,
        "generation": 1,
        "name": name,
        "uid": _uid("hostendpoint", name),
    }
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "HostEndpoint",
        "metadata": metadata,
        "spec": spec,
    }


def kubectl_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``kubectl get a,b,c -A -o json`` prints: one ``kind: List`` of every object."""
    items = [copy.deepcopy(dict(i)) for i in items]
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _policy_object(policy: Policy) -> dict[str, Any]:
    if policy.kind == "NetworkPolicy" and policy.name.startswith(KNP_STORED_PREFIX):
        return network_policy(policy.namespace, policy.name.removeprefix(KNP_STORED_PREFIX))
    types = [t.capitalize() for t in policy.types]
    spec: dict[str, Any] = {"tier": policy.tier, "selector": policy.selector, "types": types}
    if policy.order is not None:
        spec["order"] = policy.order
    stored = stored_policy_name(policy.name, policy.tier)  # v3.30's CRD backend stores <tier>.<name>
    return calico_policy(policy.kind, stored, spec, policy.namespace, typed_name=policy.name)


def kdd_cluster(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster as a KDD cluster holds it: Namespaces and ServiceAccounts (for the ``kns.``/
    ``ksa.`` profiles), Pods (for the workload endpoints), Kubernetes NetworkPolicies (the
    ``knp.default.`` ones) and Calico CRDs (tiers and the other policies, stored names)."""
    profiles = [p.name for p in cluster.profiles]
    namespaces = sorted(
        {w.namespace for w in cluster.workloads}
        | {p.removeprefix("kns.") for p in profiles if p[:4] == "kns."}
    )
    accounts = sorted({tuple(p.removeprefix("ksa.").split(".", 1)) for p in profiles if p[:4] == "ksa."})
    objects: list[dict[str, Any]] = [namespace(name) for name in namespaces]
    objects += [service_account(ns, sa) for ns, sa in accounts]
    objects += [calico_tier(t.name, t.order, t.default_action) for t in cluster.tiers]
    objects += [_policy_object(p) for p in cluster.policies]
    for workload in cluster.workloads:
        labels = {k: v for k, v in workload.labels if not k.startswith("projectcalico.org/")}
        objects.append(
            pod(
                workload.namespace,
                workload.pod,
                workload.node,
                workload.ipv4,
                labels,
                service_account=workload.service_account or "default",
            )
        )
    return objects


class KubeClusterStore:
    """The demo's :class:`ClusterStore` interface (``spec``, ``write``) over the stand-in API
    server: ``write`` makes it hold exactly the cluster's KDD objects, creating, replacing
    and deleting like the controllers of a real cluster would.  ``args`` are the aggregator's
    datastore flags."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.spec = "kubernetes"
        self.args = ["--datastore", "kubernetes", "--kubeconfig", str(api.write_kubeconfig())]
        self._held: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
        metadata = obj["metadata"]
        return obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"]

    def write(self, cluster: Cluster) -> None:
        wanted = {self._key(obj): obj for obj in kdd_cluster(cluster)}
        for key, obj in wanted.items():
            if self._held.get(key) != obj:
                self.api.put(obj)
        for key in set(self._held) - set(wanted):
            self.api.delete(self._held[key])
        self._held = wanted
