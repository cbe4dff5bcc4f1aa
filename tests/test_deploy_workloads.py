"""What the rendered agent and aggregator run with: the security the issue asks for, probes on
the ports the processes really serve, and args + environment that the processes' own parsers
accept (the flags read their defaults from the container's environment, as in the pod)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from aggregator.cli import add_arguments as add_aggregator_arguments
from aggregator.cli import config_from_args as aggregator_config
from aggregator.datastore.spec import EtcdSpec, KubernetesSpec, parse_datastore_spec
from aggregator.election.open import LeaderElection, open_election
from aggregator.server import AggregatorConfig
from aggregator.shard.open import ShardBackend, advertised_address, open_membership
from aggregator.shard.ring import Member
from calico_accountant.contract import AGENT_HEALTH_PORT, AGGREGATOR_HEALTH_PORT
from node_agent.agent import add_arguments as add_agent_arguments
from node_agent.agent import config_from_args as agent_config
from tests.support.kustomize import (
    DEPLOY,
    PACKAGES,
    container,
    container_environment,
    find,
    kustomize,
    process_environment,
)

FIELDS = {
    "spec.nodeName": "node-a",
    "status.podIP": "169.254.10.2",
    "metadata.name": "calico-accountant-aggregator-0",
    "metadata.namespace": "calico-accountant",
}


def _ports(spec: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in spec["ports"]}


def _probe_port(spec: dict[str, Any], probe: str) -> int:
    port = spec[probe]["httpGet"]["port"]
    return _ports(spec)[port] if isinstance(port, str) else int(port)


def _aggregator(
    package: str, mounts: Path | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], AggregatorConfig]:
    """The rendered aggregator and the config its parser makes of its args and environment;
    with ``mounts``, paths under /etc/calico-accountant/ point there instead."""
    objects = kustomize(DEPLOY / package)
    spec = container(find(objects, "Deployment"), "aggregator")
    environment = container_environment(spec, FIELDS)
    if mounts is not None:
        environment = {k: v.replace("/etc/calico-accountant", str(mounts)) for k, v in environment.items()}
    with process_environment(environment):
        parser = argparse.ArgumentParser()
        add_aggregator_arguments(parser)
        config = aggregator_config(parser.parse_args(spec["args"]))
    return objects, spec, config


def test_the_agent_is_capable_but_not_privileged() -> None:
    objects = kustomize(DEPLOY / "base")
    daemonset = find(objects, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    spec = container(daemonset, "agent")
    security = spec["securityContext"]
    assert pod["hostNetwork"] is True
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert security["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"operator": "Exists"} in pod["tolerations"]  # every taint, every node
    assert {"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in spec["env"]
    assert spec["resources"]["requests"]["memory"] and spec["resources"]["limits"]["memory"]
    namespace = find(objects, "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged"  # baseline refuses hostNetwork


def test_the_agent_probes_the_port_it_serves_health_on() -> None:
    spec = container(find(kustomize(DEPLOY / "base"), "DaemonSet"), "agent")
    with process_environment(container_environment(spec, FIELDS)):
        parser = argparse.ArgumentParser()
        add_agent_arguments(parser)
        config = agent_config(parser.parse_args(spec["args"]))
    assert config.node == "node-a"  # from spec.nodeName
    assert config.listen_port == AGENT_HEALTH_PORT == _probe_port(spec, "livenessProbe")
    assert _probe_port(spec, "readinessProbe") == config.listen_port
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert config.aggregator.startswith("calico-accountant-aggregator.calico-accountant.svc:")


@pytest.mark.parametrize("package", PACKAGES)
def test_the_aggregator_runs_unprivileged_with_probes_on_its_health_port(package: str) -> None:
    objects, spec, config = _aggregator(package)
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert config.health_port == AGGREGATOR_HEALTH_PORT == _probe_port(spec, "readinessProbe")
    assert _probe_port(spec, "livenessProbe") == config.health_port
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"  # waits for the datastore sync
    liveness = spec["livenessProbe"]
    assert liveness["httpGet"]["path"] == "/healthz"
    # Not restarted under load: a GC pause or a checkpoint restore is well within this.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60 and liveness["timeoutSeconds"] >= 5
    ports = _ports(spec)
    assert (ports["grpc"], ports["metrics"]) == (config.grpc_port, config.metrics_port)
    service = find(objects, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_the_network_policy_guards_every_port_the_aggregator_serves() -> None:
    objects, spec, _ = _aggregator("base")
    policy = find(objects, "NetworkPolicy")
    labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            allowed.setdefault(port["port"], []).extend(rule["from"])
    assert set(allowed) == set(_ports(spec).values()) == {9009, 9010, 9011}
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in allowed[
        9009
    ]
    assert any("ipBlock" in peer for peer in allowed[9010])  # the agents, on the node network
    assert any(
        peer.get("podSelector", {}).get("matchLabels") == {"calico-accountant.io/api-client": "true"}
        for peer in allowed[9010]
    )
    assert all(set(peer) == {"ipBlock"} for peer in allowed[9011])  # the kubelet's probes


def test_the_datastore_overlays_set_the_datastore_their_name_says() -> None:
    _, _, base = _aggregator("base")
    assert base.datastore == ""
    _, _, etcd = _aggregator("overlays/etcd")
    spec = parse_datastore_spec(etcd.datastore, ca=etcd.etcd_ca, cert=etcd.etcd_cert, key=etcd.etcd_key)
    assert isinstance(spec, EtcdSpec)
    objects, _, kubernetes = _aggregator("overlays/kubernetes")
    assert isinstance(parse_datastore_spec(kubernetes.datastore), KubernetesSpec)
    account = find(objects, "ServiceAccount", "calico-accountant-aggregator")
    assert account["automountServiceAccountToken"] is True  # its token is the credential


def test_the_ha_overlay_runs_two_replicas_the_aggregator_accepts(tmp_path: Path) -> None:
    objects, container_spec, config = _aggregator("overlays/ha", mounts=tmp_path)
    for mount in container_spec["volumeMounts"]:  # the Secret's files, where the pod has them
        directory = tmp_path / Path(mount["mountPath"]).relative_to("/etc/calico-accountant")
        directory.mkdir(parents=True)
        for name in ("ca.crt", "tls.crt", "tls.key"):
            (directory / name).write_text("")
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert config.leader_election is LeaderElection.ETCD and config.checkpoint == "etcd"
    spec = parse_datastore_spec(
        config.datastore, ca=config.etcd_ca, cert=config.etcd_cert, key=config.etcd_key
    )
    # What the aggregator checks at start: the lease and the checkpoint both in the datastore's etcd.
    assert open_election(config.leader_election, spec, config.checkpoint, identity=FIELDS["metadata.name"])


def test_the_kubernetes_ha_overlay_runs_two_replicas_on_a_lease(tmp_path: Path) -> None:
    objects, container_spec, config = _aggregator("overlays/kubernetes-ha")
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert config.leader_election is LeaderElection.KUBERNETES and config.checkpoint == "kubernetes"
    env = {item["name"]: item for item in container_spec["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    role = find(objects, "Role", "calico-accountant-aggregator-ha")
    assert {rule["resources"][0] for rule in role["rules"]} == {"leases", "configmaps"}
    binding = find(objects, "RoleBinding", "calico-accountant-aggregator-ha")
    assert (
        binding["subjects"][0]["name"]
        == find(objects, "ServiceAccount", "calico-accountant-aggregator")["metadata"]["name"]
    )
    spec = parse_datastore_spec(config.datastore, kubeconfig=str(tmp_path / "kubeconfig"))
    # What the aggregator checks at start: the Lease and the checkpoint both in the API.
    assert open_election(config.leader_election, spec, config.checkpoint, identity=FIELDS["metadata.name"])


def test_the_sharded_overlay_runs_two_shards_that_advertise_their_pod_ip(tmp_path: Path) -> None:
    objects, container_spec, config = _aggregator("overlays/sharded", mounts=tmp_path)
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert config.shards.backend is ShardBackend.ETCD
    assert config.leader_election is LeaderElection.NONE
    with process_environment(container_environment(container_spec, FIELDS)):
        assert advertised_address(config.shards.advertise_address, config.grpc_port) == "169.254.10.2:9010"
    spec = parse_datastore_spec(config.datastore)
    # What the aggregator checks at start: the member set in the datastore's etcd.
    me = Member(FIELDS["metadata.name"], "169.254.10.2:9010")
    assert open_membership(config.shards, spec, me, leader_election=False, checkpoint=config.checkpoint)
    # Prometheus tells the shards apart: `instance` is the pod's name.
    relabelings = find(objects, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"]
    instance = next(r for r in relabelings if r.get("targetLabel") == "instance")
    assert instance == {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"}


def test_the_kubernetes_sharded_overlay_keeps_its_members_in_leases_it_may_write(tmp_path: Path) -> None:
    objects, container_spec, config = _aggregator("overlays/kubernetes-sharded")
    assert find(objects, "Deployment")["spec"]["replicas"] == 2
    assert config.shards.backend is ShardBackend.KUBERNETES and config.checkpoint == ""
    env = {item["name"]: item for item in container_spec["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    role = find(objects, "Role", "calico-accountant-aggregator-shards")
    (rule,) = role["rules"]
    assert rule["resources"] == ["leases"]
    # What KubernetesLeaseMembership does: create, update (renew), list (the others), get, delete.
    assert set(rule["verbs"]) == {"get", "list", "create", "update", "delete"}
    binding = find(objects, "RoleBinding", "calico-accountant-aggregator-shards")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    spec = parse_datastore_spec(config.datastore, kubeconfig=str(tmp_path / "kubeconfig"))
    me = Member(FIELDS["metadata.name"], "169.254.10.2:9010")
    with process_environment(container_environment(container_spec, FIELDS)):
        assert open_membership(config.shards, spec, me, leader_election=False, checkpoint=config.checkpoint)
    relabelings = find(objects, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in relabelings


def test_the_tls_overlay_turns_on_mutual_tls_with_node_identities() -> None:
    _, _, config = _aggregator("overlays/tls")
    assert config.tls is not None and config.tls.client_ca
    assert config.access.template.node_of("system:node:node-a") == "node-a"
    assert config.access.template.node_of("grafana") is None
    assert config.access.api_clients == frozenset({"grafana"})
