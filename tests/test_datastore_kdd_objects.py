"""Kubernetes objects (KDD) into the catalog's inputs, as libcalico-go derives them (pure, no server).

The expected veth and chain names are the ones verified against real output in the reference
(§1.6, §4.4): they are literals here, not recomputed with the code under test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from aggregator.catalog.index import Catalog
from aggregator.datastore.file import decode_text
from aggregator.datastore.kdd_objects import KubeTranslator
from aggregator.datastore.kdd_resources import KUBE_RESOURCES, KubeResource
from aggregator.datastore.objects import BadObject, CalicoObject
from calico_accountant_cli.demo.cluster import load_sample_cluster, sample_cluster_text
from tests.support.kube_objects import (
    calico_policy,
    calico_tier,
    kdd_cluster,
    kubectl_list,
    namespace,
    network_policy,
    pod,
    service_account,
)

RESOURCES = {(r.group, r.kind): r for r in KUBE_RESOURCES}
PODS = RESOURCES[("", "Pod")]


def translate(body: dict[str, Any], prefix: str = "cali") -> CalicoObject | None:
    return KubeTranslator(prefix).document(body)


def catalog_of(*bodies: dict[str, Any]) -> Catalog:
    translator = KubeTranslator()
    objects = [obj for body in bodies if (obj := translator.document(body)) is not None]
    return Catalog.from_objects(objects)


# ---------------------------------------------------------------------------- pods


@pytest.mark.parametrize(
    ("namespace_name", "name", "veth"),
    [
        ("k8s-lab", "web-c747ddb74-5dnq5", "cali89c859cc852"),
        ("kube-system", "metrics-server-555d76c778-5zsr9", "calic5a1f1aa0ed"),
        ("default", "db-8d66ff5f7-bp6kf", "cali95aa86cbb2a"),
    ],
)
def test_a_pod_is_the_workload_endpoint_felix_programs(namespace_name: str, name: str, veth: str) -> None:
    body = pod(
        namespace_name, name, "worker-01", "10.244.5.58", {"app": "web", "pod-template-hash": "c747ddb74"}
    )
    obj = translate(body)
    assert obj is not None and obj.kind == "WorkloadEndpoint"
    assert obj.namespace == namespace_name
    assert obj.spec["interfaceName"] == veth
    assert obj.spec["node"] == "worker-01" and obj.spec["pod"] == name
    assert obj.spec["ipNetworks"] == ("10.244.5.58/32",)
    assert dict(obj.labels) == {
        "app": "web",
        "pod-template-hash": "c747ddb74",
        "projectcalico.org/namespace": namespace_name,
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": "default",
    }
    catalog = Catalog.from_objects([obj])
    assert {f"kns.{namespace_name}", f"ksa.{namespace_name}.default"} <= catalog.profiles()
    identity = catalog.workload("worker-01", veth)
    assert identity.resolved and (identity.namespace, identity.pod, identity.app) == (
        namespace_name,
        name,
        "web",
    )
    assert identity.service_account == "default" and identity.ips == ("10.244.5.58",)


def test_the_workload_endpoint_name_doubles_dashes() -> None:
    obj = translate(pod("k8s-lab", "web-c747ddb74-5dnq5", "worker-01", "10.244.5.58"))
    assert obj is not None and obj.name == "worker--01-k8s-web--c747ddb74--5dnq5-eth0"


def test_replicas_share_their_labels() -> None:
    translator = KubeTranslator()
    labels = {"app": "web", "pod-template-hash": "c747ddb74"}
    a = translator.document(pod("shop", "web-c747ddb74-aaaaa", "n1", "10.0.0.1", labels))
    b = translator.document(pod("shop", "web-c747ddb74-bbbbb", "n2", "10.0.0.2", dict(labels)))
    c = translator.document(pod("shop", "web-c747ddb74-ccccc", "n2", "10.0.0.3", {**labels, "canary": "yes"}))
    assert a is not None and b is not None and c is not None
    assert a.metadata is b.metadata and a.metadata is not c.metadata


def test_the_first_interface_prefix_names_the_veth() -> None:
    obj = translate(pod("k8s-lab", "web-c747ddb74-5dnq5", "worker-01", "10.244.5.58"), prefix="azv,cali")
    assert obj is not None and obj.spec["interfaceName"] == "azv89c859cc852"


def _without_status_ips(body: dict[str, Any]) -> dict[str, Any]:
    body["status"].pop("podIP", None)
    body["status"].pop("podIPs", None)
    return body


@pytest.mark.parametrize(
    ("body", "networks"),
    [
        (pod("ns", "dual-1", "n1", "10.0.0.1", ipv6="fd00::1"), ["10.0.0.1/32", "fd00::1/128"]),
        # No status yet (kubelet has not reported): Calico's annotations, plural first.
        (
            _without_status_ips(pod("ns", "p-1", "n1", "10.0.0.2", ipv6="fd00::2")),
            ["10.0.0.2/32", "fd00::2/128"],
        ),
        (
            _without_status_ips(
                pod("ns", "p-2", "n1", None, annotations={"cni.projectcalico.org/podIP": "10.0.0.3/32"})
            ),
            ["10.0.0.3/32"],
        ),
        (
            pod("ns", "aws-1", "n1", None, annotations={"vpc.amazonaws.com/pod-ips": "192.168.7.9"}),
            ["192.168.7.9/32"],
        ),
    ],
)
def test_pod_ips_come_from_status_then_the_annotations(body: dict[str, Any], networks: list[str]) -> None:
    obj = translate(body)
    assert obj is not None and list(obj.spec["ipNetworks"]) == networks


def test_pods_felix_never_programs_have_no_endpoint() -> None:
    assert translate(pod("ns", "pending-1", None, None)) is None  # not scheduled
    assert translate(pod("ns", "starting-1", "n1", None)) is None  # scheduled, no IP yet
    assert translate(pod("kube-system", "calico-node-x1", "n1", "172.18.0.3", host_network=True)) is None
    assert translate(pod("ns", "job-1", "n1", "10.0.0.4", phase="Succeeded")) is None
    assert translate(pod("ns", "job-2", "n1", "10.0.0.5", phase="Failed")) is None
    deleting = pod("ns", "going-1", "n1", "10.0.0.6", annotations={"cni.projectcalico.org/podIP": ""})
    deleting["metadata"]["deletionTimestamp"] = "2026-11-25T11:00:00Z"
    assert translate(deleting) is None  # the CNI plugin released the IP during the grace period
    del deleting["metadata"]["annotations"]["cni.projectcalico.org/podIP"]
    assert translate(deleting) is not None  # still terminating with its IP


def test_service_account_label_only_when_short_and_bad_pods_raise() -> None:
    long_account = "a" * 63
    obj = translate(pod("ns", "p-1", "n1", "10.0.0.1", service_account=long_account))
    assert obj is not None and "projectcalico.org/serviceaccount" not in obj.labels
    assert obj.spec["serviceAccountName"] == long_account
    assert f"ksa.ns.{long_account}" in Catalog.from_objects([obj]).profiles()
    with pytest.raises(BadObject) as error:
        translate(pod("ns", "p-2", "n1", "10.0.0.999"))
    assert error.value.reason == "bad_pod_ip"
    body = pod("ns", "p-3", "n1", "10.0.0.3")
    body["metadata"]["labels"] = {"app": 3}
    with pytest.raises(BadObject):
        translate(body)


def test_list_items_without_kind_are_translated_by_their_resource() -> None:
    body = pod("ns", "p-1", "n1", "10.0.0.1")
    del body["kind"], body["apiVersion"]  # how kube-apiserver lists built-in types
    translator = KubeTranslator()
    assert translator.document(body) is None
    obj = translator.translate(PODS, body)
    assert obj is not None and obj.key == "kubernetes:pods/ns/p-1" == translator.key(PODS, body)


# ---------------------------------------------------------------------------- profiles


def test_namespaces_and_service_accounts_are_profiles_with_calicos_labels() -> None:
    ns = translate(namespace("shop", {"team": "web"}))
    assert ns is not None and (ns.kind, ns.name) == ("Profile", "kns.shop")
    assert ns.spec["labelsToApply"] == {
        "pcns.kubernetes.io/metadata.name": "shop",
        "pcns.team": "web",
        "pcns.projectcalico.org/name": "shop",
    }
    assert ns.spec["ingress"] == [{"action": "Allow"}] == ns.spec["egress"]
    sa = translate(service_account("shop", "checkout", {"tier": "1"}))
    assert sa is not None and sa.name == "ksa.shop.checkout"
    assert sa.spec["labelsToApply"] == {"pcsa.tier": "1", "pcsa.projectcalico.org/name": "checkout"}
    # ksa.kube-system.metrics-server is hashed (calico#/AKS dump in the reference, §1.4).
    metrics = catalog_of(service_account("kube-system", "metrics-server"))
    assert metrics.profile("cali-pri-_CVSZITRyIpEmH8AB6H").name == "ksa.kube-system.metrics-server"


# ---------------------------------------------------------------------------- policies


def test_a_kubernetes_network_policy_resolves_under_every_scheme() -> None:
    catalog = catalog_of(network_policy("default", "allow-nginx", {"app": "nginx"}))
    for chain in (
        "cali-pi-_dMXF9XERrXSkww4mw6F",
        "cali-pi-_KZDIIDu2y0vrdgDalAi",
        "cali-pi-_JfeG2_w8PWOceh6XmuV",
    ):
        policy = catalog.policy(chain)
        assert (policy.kind, policy.namespace, policy.name) == (
            "KubernetesNetworkPolicy",
            "default",
            "allow-nginx",
        )
        assert policy.stored_name == "knp.default.allow-nginx"
    assert (
        catalog_of(network_policy("test", "default-ingress-egress-deny"))
        .policy("cali-pi-_DYtwCKMZFWyxK2RhACP")
        .name
        == "default-ingress-egress-deny"
    )  # calico#5761


def test_calico_crds_keep_their_stored_names() -> None:
    catalog = catalog_of(
        calico_policy(
            "GlobalNetworkPolicy", "default.allow-dns", {"tier": "default"}, typed_name="allow-dns"
        ),
        calico_policy("GlobalNetworkPolicy", "aaa-allow-konnectivity-agent", {"selector": "all()"}),
        calico_policy(
            "NetworkPolicy", "default.db-access", {"tier": "default"}, "prod", typed_name="db-access"
        ),
        calico_policy("GlobalNetworkPolicy", "security.block-egress", {"tier": "security"}),
        calico_tier("security", 100),
        calico_policy("StagedGlobalNetworkPolicy", "default.try-me", {"tier": "default"}),
    )
    assert catalog.policy("cali-pi-default.allow-dns").name == "allow-dns"
    aks = catalog.policy("cali-po-_j5sVgQTfF-APgMw0kN9")  # written with kubectl on AKS: literal name
    assert (aks.name, aks.stored_name) == ("aaa-allow-konnectivity-agent", "aaa-allow-konnectivity-agent")
    db = catalog.policy("cali-pi-_uinPMu5xdMIkFw9j6KO")
    assert (db.kind, db.namespace, db.name) == ("NetworkPolicy", "prod", "db-access")
    blocked = catalog.policy("cali-pi-_Mo6bUUGdsZMDxmidqKy")
    assert (blocked.name, blocked.tier) == ("block-egress", "security")
    assert "security" in catalog.tiers
    staged = [p for p in catalog.policies() if p.kind == "StagedGlobalNetworkPolicy"]
    assert [p.name for p in staged] == ["try-me"] and catalog.resolution_stats().staged_policies == 1


def _admin(kind: str, version: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"policy.networking.k8s.io/{version}", "kind": kind,
            "metadata": {"name": name, "uid": "u", "generation": 1}, "spec": spec}  # fmt: skip


def test_admin_network_policies_in_calicos_tiers() -> None:
    catalog = catalog_of(
        _admin(
            "AdminNetworkPolicy",
            "v1alpha1",
            "cluster-control",
            {"priority": 20, "subject": {"namespaces": {}}},
        ),
        _admin("BaselineAdminNetworkPolicy", "v1alpha1", "default", {"subject": {"namespaces": {}}}),
        _admin("ClusterNetworkPolicy", "v1alpha2", "base-deny", {"tier": "Baseline", "priority": 5}),
    )
    shown = {(p.kind, p.name, p.tier) for p in catalog.policies()}
    assert shown == {
        ("AdminNetworkPolicy", "cluster-control", "adminnetworkpolicy"),
        ("BaselineAdminNetworkPolicy", "default", "baselineadminnetworkpolicy"),
        ("ClusterNetworkPolicy", "base-deny", "kube-baseline"),
    }
    assert catalog.policy("cali-pi-kanp.adminnetworkpolicy.cluster-control").name == "cluster-control"
    assert catalog.policy("cali-pi-kcnp/base-deny").name == "base-deny"


def test_every_resource_has_a_path_and_its_own_key_prefix() -> None:
    paths = {r.path for r in KUBE_RESOURCES}
    assert "/api/v1/pods" in paths and "/apis/crd.projectcalico.org/v1/tiers" in paths
    assert len({r.key_prefix for r in KUBE_RESOURCES}) == len(KUBE_RESOURCES)
    assert KubeResource("", "v1", "pods", "Pod", True).name == "pods"
    assert RESOURCES[("networking.k8s.io", "NetworkPolicy")].name == "networkpolicies.networking.k8s.io"


# ---------------------------------------------------------------------------- files


@pytest.mark.parametrize("dump", [lambda d: json.dumps(d, indent=2), yaml.safe_dump])
def test_a_kubectl_listing_resolves_like_the_same_cluster_in_calicoctl_form(dump: Any) -> None:
    sample = load_sample_cluster()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
    }
    listing = kubectl_list([*kdd_cluster(sample), deployment])
    kdd = decode_text(dump(listing))
    assert kdd.bad == {} and kdd.ignored == 1  # the Deployment
    calicoctl = decode_text(sample_cluster_text())
    from_kdd, from_calicoctl = Catalog.from_objects(kdd.objects), Catalog.from_objects(calicoctl.objects)
    assert from_kdd.workloads() == from_calicoctl.workloads()
    assert {(p.kind, p.namespace, p.name, p.tier) for p in from_kdd.policies()} == {
        (p.kind, p.namespace, p.name, p.tier) for p in from_calicoctl.policies()
    }
    assert from_calicoctl.profiles() <= from_kdd.profiles()
