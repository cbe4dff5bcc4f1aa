"""deploy/ renders with the real ``kubectl kustomize`` (base and every overlay), and every
object it renders is valid against the Kubernetes API's schemas (``kubernetes-validate``,
strict: an unknown or misplaced field fails).

kubernetes-validate carries the schemas of the built-in API only.  The custom resources
(cert-manager's Certificate and Issuer, the Prometheus operator's ServiceMonitor, PodMonitor
and PrometheusRule) are checked here for what the manifests rely on -- their group and
version, and that each reference points at an object or port that exists -- and in
tests/test_monitoring_rules.py (the PrometheusRule's content).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.support.kustomize import DEPLOY, PACKAGES, find, kustomize
from tests.support.processes import REPO

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest version the manifests target (projected tokens name the node from 1.30) and
the newest kubernetes-validate knows."""

CUSTOM_RESOURCES = {
    "Certificate": "cert-manager.io/v1",
    "Issuer": "cert-manager.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
NAMESPACE = "calico-accountant"


@pytest.fixture(scope="module", params=PACKAGES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    package: str = request.param
    return package, kustomize(DEPLOY / package)


def test_every_package_renders_its_objects_once_in_one_namespace(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    package, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "DaemonSet", "Deployment", "Service", "NetworkPolicy", "ServiceAccount"} <= kinds
    identities = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(identities) == len(set(identities)), package
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for o in objects:
        if o["kind"] not in cluster_scoped:
            assert o["metadata"].get("namespace") == NAMESPACE, (package, o["kind"], o["metadata"]["name"])
    assert find(objects, "Namespace")["metadata"]["name"] == NAMESPACE


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_is_valid_against_the_kubernetes_schema(
    rendered: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    package, objects = rendered
    validated = 0
    for o in objects:
        if o["kind"] in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{package}: {o['kind']} {o['metadata']['name']}: {error}") from error
        validated += 1
    assert validated >= 7, package


def test_the_validator_refuses_what_the_api_server_would() -> None:
    """Strict validation is not a no-op: a misplaced field and a wrong type fail."""
    deployment = find(kustomize(DEPLOY / "base"), "Deployment")
    kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    misplaced = copy.deepcopy(deployment)
    misplaced["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misplaced, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_custom_resources_have_their_versions_and_point_at_what_exists(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    package, objects = rendered
    issuers = {o["metadata"]["name"] for o in objects if o["kind"] == "Issuer"}
    services = [o for o in objects if o["kind"] == "Service"]
    for o in objects:
        kind = o["kind"]
        if kind not in CUSTOM_RESOURCES:
            continue
        assert o["apiVersion"] == CUSTOM_RESOURCES[kind], (package, kind)
        spec = o["spec"]
        if kind == "Certificate":
            assert spec["issuerRef"]["kind"] == "Issuer" and spec["issuerRef"]["name"] in issuers
            assert spec["secretName"] and (spec.get("commonName") or spec.get("dnsNames"))
        elif kind == "Issuer":
            assert ("selfSigned" in spec) != ("ca" in spec)
        elif kind == "ServiceMonitor":
            labels = spec["selector"]["matchLabels"]
            selected = [s for s in services if labels.items() <= s["metadata"].get("labels", {}).items()]
            assert len(selected) == 1, package
            ports = {p["name"] for p in selected[0]["spec"]["ports"]}
            assert all(e["port"] in ports for e in spec["endpoints"])
        elif kind == "PodMonitor":
            labels = spec["selector"]["matchLabels"]
            selected = [
                w
                for w in objects
                if w["kind"] in ("DaemonSet", "Deployment")
                and labels.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert [w["kind"] for w in selected] == ["DaemonSet"], package
            ports = {
                p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            assert all(e["port"] in ports for e in spec["podMetricsEndpoints"])
        elif kind == "PrometheusRule":
            assert spec["groups"] and all(g["rules"] for g in spec["groups"])


def test_the_tls_overlay_mounts_the_secret_its_certificate_fills() -> None:
    objects = kustomize(DEPLOY / "overlays" / "tls")
    certificate = find(objects, "Certificate", "calico-accountant-aggregator")
    deployment = find(objects, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    service = find(objects, "Service")
    name = f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert name in certificate["spec"]["dnsNames"]
    agent = find(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    aggregator_address = next(e["value"] for e in agent["env"] if e["name"] == "CALICO_ACCOUNTANT_AGGREGATOR")
    assert aggregator_address.split(":")[0] == name  # the name the agent checks is on the certificate


def test_the_monitoring_overlay_carries_the_dashboard_unchanged() -> None:
    objects = kustomize(DEPLOY / "overlays" / "monitoring")
    config_map = find(objects, "ConfigMap", "calico-accountant-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = (DEPLOY / "grafana" / "calico-accountant.json").read_text()
    assert config_map["data"] == {"calico-accountant.json": source}


def test_the_readmes_install_example_builds(tmp_path: Path) -> None:
    """README, "Install": the example overlay (a datastore overlay, TLS, monitoring, the
    NetworkPolicy patched to the nodes' subnet) renders, and the patch hits the node rules."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("# my-cluster/kustomization.yaml")
    example = readme[start : readme.index("```", start)]
    (tmp_path / "kustomization.yaml").write_text(
        example.replace("../calico-accountant/deploy", os.path.relpath(DEPLOY, tmp_path))
    )
    objects = kustomize(tmp_path)
    kinds = {o["kind"] for o in objects}
    assert {"ClusterRole", "Certificate", "Issuer", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    policy = find(objects, "NetworkPolicy")
    node_rules = [rule for rule in policy["spec"]["ingress"] if "ipBlock" in rule["from"][0]]
    assert {rule["from"][0]["ipBlock"]["cidr"] for rule in node_rules} == {"192.168.0.0/16"}
    for o in objects:
        if o["kind"] not in CUSTOM_RESOURCES:
            kubernetes_validate.validate(o, KUBERNETES_VERSIONS[-1], strict=True)
