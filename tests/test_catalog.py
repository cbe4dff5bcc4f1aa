"""Catalog resolution: interfaces to pods, chains to policies under every felix naming
scheme, profiles, groups, ambiguity, comments.  Expected chain names are computed here
with hashlib (``felix_name``), not with calico_accountant.felix.naming."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from importlib import resources
from typing import Any

import pytest

from aggregator.catalog.index import Catalog
from aggregator.catalog.outcomes import PolicyOutcome
from aggregator.datastore.file import decode_text
from aggregator.datastore.objects import CalicoObject, object_from_etcd, object_from_manifest
from aggregator.model import PolicyIdentity, PolicyKind


def felix_name(prefix: str, suffix: str, max_len: int = 28) -> str:
    if len(prefix) + len(suffix) > max_len or (len(prefix) + len(suffix) == max_len and suffix[:1] == "_"):
        digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode().rstrip("=")
        return prefix + "_" + digest[: max_len - 1 - len(prefix)]
    return prefix + suffix


def veth(namespace: str, pod: str) -> str:
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def wep(
    node: str,
    namespace: str,
    pod: str,
    *,
    labels: dict[str, str] | None = None,
    ips: tuple[str, ...] = ("169.254.1.1/32",),
    sa: str = "default",
    interface: str | None = None,
    revision: int = 0,
) -> CalicoObject:
    name = "-".join(p.replace("-", "--") for p in (node, "k8s", pod, "eth0"))
    body: dict[str, Any] = {
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "node": node,
            "pod": pod,
            "endpoint": "eth0",
            "orchestrator": "k8s",
            "interfaceName": interface or veth(namespace, pod),
            "ipNetworks": list(ips),
            "profiles": [f"kns.{namespace}", f"ksa.{namespace}.{sa}"],
            "serviceAccountName": sa,
        },
    }
    key = f"/calico/resources/v3/projectcalico.org/workloadendpoints/{namespace}/{name}"
    obj = object_from_etcd(key, json.dumps(body), revision)
    assert obj is not None
    return obj


def policy(kind: str, namespace: str, name: str, tier: str | None = None, revision: int = 0) -> CalicoObject:
    """A policy as stored in etcd (name = stored name)."""
    plural = {
        "NetworkPolicy": "networkpolicies",
        "GlobalNetworkPolicy": "globalnetworkpolicies",
        "StagedNetworkPolicy": "stagednetworkpolicies",
        "StagedGlobalNetworkPolicy": "stagedglobalnetworkpolicies",
    }[kind]
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"selector": "all()", "types": ["Ingress"]}
    if tier:
        spec["tier"] = tier
    key = f"/calico/resources/v3/projectcalico.org/{plural}/" + (f"{namespace}/{name}" if namespace else name)
    obj = object_from_etcd(key, {"kind": kind, "metadata": metadata, "spec": spec}, revision)
    assert obj is not None
    return obj


def tier(name: str) -> CalicoObject:
    obj = object_from_manifest({"kind": "Tier", "metadata": {"name": name}, "spec": {"order": 100}})
    assert obj is not None
    return obj


# ---------------------------------------------------------------------------- workloads


def test_workload_resolution() -> None:
    catalog = Catalog.from_objects(
        [
            wep("node-a", "shop", "web-1", labels={"app": "web", "app.kubernetes.io/name": "ignored"},
                ips=("169.254.3.4/32", "2001:db8::4/128"), sa="web-sa"),
            wep("node-b", "monitoring", "prom-0", labels={"app.kubernetes.io/name": "prometheus"}),
        ]
    )  # fmt: skip
    web = catalog.workload("node-a", veth("shop", "web-1"))
    assert web.resolved
    assert (web.node, web.namespace, web.pod, web.app) == ("node-a", "shop", "web-1", "web")
    assert web.ips == ("169.254.3.4", "2001:db8::4")
    assert web.service_account == "web-sa"
    assert ("app", "web") in web.labels
    prom = catalog.workload("node-b", veth("monitoring", "prom-0"))
    assert prom.app == "prometheus"

    missing = catalog.workload("node-a", "calideadbeef00")
    assert not missing.resolved
    assert (missing.namespace, missing.pod, missing.app, missing.interface) == (
        "",
        "calideadbeef00",
        "",
        "calideadbeef00",
    )


def test_workload_interface_only_fallback_when_unique() -> None:
    catalog = Catalog.from_objects(
        [
            wep("node-a", "shop", "web-1"),
            wep("node-a", "shop", "x", interface="eth7"),
            wep("node-b", "shop", "y", interface="eth7"),
        ]
    )
    # The agent calls its node "ip-169-254-0-1" but Calico calls it node-a: the veth is unique.
    found = catalog.workload("ip-169-254-0-1", veth("shop", "web-1"))
    assert found.resolved and found.pod == "web-1" and found.node == "ip-169-254-0-1"
    # eth7 exists on two nodes: no guessing.
    assert not catalog.workload("node-c", "eth7").resolved
    assert catalog.workload("node-b", "eth7").pod == "y"


def test_duplicate_interface_newest_wins() -> None:
    old = wep("node-a", "shop", "old-pod", interface="cali1234", revision=5)
    new = wep("node-a", "shop", "new-pod", interface="cali1234", revision=9)
    for order in ([old, new], [new, old]):
        catalog = Catalog.from_objects(order)
        assert catalog.workload("node-a", "cali1234").pod == "new-pod"
        assert catalog.resolution_stats().duplicate_interfaces == 1


# ---------------------------------------------------------------------------- policies


def test_every_scheme_resolves_the_same_policy() -> None:
    """A Calico NP stored as default.db-access, seen by felix of every version."""
    catalog = Catalog.from_objects([policy("NetworkPolicy", "prod", "default.db-access")])
    expected = PolicyIdentity(PolicyKind.NETWORK_POLICY, "prod", "db-access", "default", "default.db-access")
    for hashed, scheme in (
        ("prod/default.db-access", "v3.0-v3.28"),
        ("default/prod/default.db-access", "v3.29-v3.31"),
        ("np/prod/default.db-access", "v3.32+"),
    ):
        for prefix in ("cali-pi-", "cali-po-"):
            resolution = catalog.resolve_policy(felix_name(prefix, hashed))
            assert resolution.identity == expected, hashed
            assert resolution.outcome is PolicyOutcome.RESOLVED
            assert resolution.scheme is not None and resolution.scheme.value == scheme
    stats = catalog.resolution_stats()
    assert stats.policies_resolved == 6 and stats.policies_unresolved == 0
    assert dict(stats.schemes) == {"v3.0-v3.28": 2, "v3.29-v3.31": 2, "v3.32+": 2}


def test_kubernetes_network_policy_all_schemes() -> None:
    catalog = Catalog.from_objects([policy("NetworkPolicy", "default", "knp.default.allow-nginx")])
    expected = PolicyIdentity(
        PolicyKind.KUBERNETES_NETWORK_POLICY, "default", "allow-nginx", "default", "knp.default.allow-nginx"
    )
    for hashed in (
        "default/knp.default.allow-nginx",
        "default/default/knp.default.allow-nginx",
        "knp/default/allow-nginx",
        "np/default/knp.default.allow-nginx",
    ):
        assert catalog.policy(felix_name("cali-pi-", hashed)) == expected, hashed
    # The documented chain of §1.6, literally.
    assert catalog.policy("cali-pi-_dMXF9XERrXSkww4mw6F") == expected
    # nft (v3.30+) chain, with and without the filter- layer prefix.
    assert catalog.policy("cali-pi-default/default/knp.default.allow-nginx") == expected
    assert catalog.policy("filter-cali-pi-default/default/knp.default.allow-nginx") == expected


def test_global_and_tiered_policies_and_prefix_stripping() -> None:
    catalog = Catalog.from_objects(
        [
            tier("security"),
            policy("GlobalNetworkPolicy", "", "default.allow-dns"),
            policy("GlobalNetworkPolicy", "", "security.block-egress"),  # tier from the name prefix
            policy("GlobalNetworkPolicy", "", "platform.x", tier=None),  # "platform" is not a tier
        ]
    )
    dns = catalog.policy("cali-pi-default.allow-dns")
    assert dns == PolicyIdentity(
        PolicyKind.GLOBAL_NETWORK_POLICY, "", "allow-dns", "default", "default.allow-dns"
    )
    assert catalog.policy(felix_name("cali-po-", "default/default.allow-dns")) == dns
    assert catalog.policy(felix_name("cali-pi-", "gnp/default.allow-dns")) == dns
    block = catalog.policy(felix_name("cali-pi-", "security/security.block-egress"))
    assert block == PolicyIdentity(
        PolicyKind.GLOBAL_NETWORK_POLICY, "", "block-egress", "security", "security.block-egress"
    )
    other = catalog.policy("cali-pi-platform.x")
    assert (other.tier, other.name) == ("default", "platform.x")


def test_typed_names_from_calicoctl_resolve_stored_chains() -> None:
    """calicoctl shows `db-access`, felix hashed `default.db-access`: still resolved."""
    obj = object_from_manifest(
        {"kind": "NetworkPolicy", "metadata": {"name": "db-access", "namespace": "prod"},
         "spec": {"tier": "default"}}
    )  # fmt: skip
    assert obj is not None
    catalog = Catalog.from_objects([obj])
    identity = catalog.policy(felix_name("cali-pi-", "prod/default.db-access"))
    assert (identity.kind, identity.namespace, identity.name) == ("NetworkPolicy", "prod", "db-access")
    assert catalog.policy("cali-pi-np/prod/db-access") == identity


def test_unresolved_policy() -> None:
    catalog = Catalog.from_objects([policy("NetworkPolicy", "prod", "default.db-access")])
    resolution = catalog.resolve_policy("cali-pi-_AAAAAAAAAAAAAAAAAAA")
    assert resolution.outcome is PolicyOutcome.UNRESOLVED
    assert resolution.identity == PolicyIdentity(
        PolicyKind.UNRESOLVED, "", "cali-pi-_AAAAAAAAAAAAAAAAAAA", ""
    )
    assert catalog.resolution_stats().policies_unresolved == 1
    # Asking again does not count twice.
    catalog.policy("cali-pi-_AAAAAAAAAAAAAAAAAAA")
    stats = catalog.resolution_stats()
    assert stats.policies_unresolved == 1
    assert stats.as_dict()["policies_unresolved"] == 1 and stats.as_dict()["policies"] == 1
    assert "schemes" not in stats.as_dict()


def test_exact_stored_name_beats_guessed_variant() -> None:
    typed = policy("NetworkPolicy", "ns", "x")
    stored = policy("NetworkPolicy", "ns", "default.x")
    catalog = Catalog.from_objects([typed, stored])
    assert catalog.policy(felix_name("cali-pi-", "ns/default.x")).stored_name == "default.x"
    assert catalog.policy("cali-pi-ns/x").stored_name == "x"


def test_ambiguous_chain_and_comment_disambiguation() -> None:
    # NP default/default.allow under v3.0-v3.28 and GNP default.allow under v3.29-v3.31
    # both hash "default/default.allow".
    np_ = policy("NetworkPolicy", "default", "default.allow")
    gnp = policy("GlobalNetworkPolicy", "", "default.allow")
    catalog = Catalog.from_objects([np_, gnp])
    chain = felix_name("cali-pi-", "default/default.allow")
    resolution = catalog.resolve_policy(chain)
    assert resolution.outcome is PolicyOutcome.AMBIGUOUS
    assert resolution.identity == PolicyIdentity(PolicyKind.UNRESOLVED, "", chain, "")
    assert {c.kind for c in resolution.candidates} == {"NetworkPolicy", "GlobalNetworkPolicy"}

    # Felix's comment (v3.22+) names the GNP: it settles the question.
    by_comment = catalog.resolve_policy(chain, "Policy default.allow ingress")
    assert by_comment.outcome is PolicyOutcome.BY_COMMENT
    assert by_comment.identity.kind == "GlobalNetworkPolicy"
    by_comment = catalog.resolve_policy(chain, "Policy default/default.allow ingress")
    assert by_comment.identity.kind == "NetworkPolicy"
    stats = catalog.resolution_stats()
    assert (stats.policies_ambiguous, stats.policies_by_comment) == (1, 2)


def test_comment_mismatch_is_counted_and_comment_wins_only_when_known() -> None:
    a = policy("NetworkPolicy", "prod", "default.a")
    b = policy("NetworkPolicy", "prod", "default.b")
    catalog = Catalog.from_objects([a, b])
    chain_a = felix_name("cali-pi-", "prod/default.a")
    agree = catalog.resolve_policy(chain_a, "Policy prod/default.a ingress")
    assert agree.outcome is PolicyOutcome.RESOLVED and agree.identity.name == "a"
    clash = catalog.resolve_policy(chain_a, "Policy prod/default.b ingress")
    assert clash.outcome is PolicyOutcome.COMMENT_MISMATCH and clash.identity.name == "b"
    unknown = catalog.resolve_policy(chain_a, "Policy prod/default.zzz ingress")
    assert unknown.outcome is PolicyOutcome.RESOLVED and unknown.identity.name == "a"
    v332 = catalog.resolve_policy("cali-pi-np/prod/default.a", "NetworkPolicy prod/default.a ingress")
    assert v332.outcome is PolicyOutcome.RESOLVED and v332.identity.name == "a"
    # An unknown chain with a comment naming a known policy resolves by the comment.
    rescued = catalog.resolve_policy("cali-pi-_unknownunknownunkno", "Policy prod/default.b egress")
    assert rescued.outcome is PolicyOutcome.BY_COMMENT and rescued.identity.name == "b"
    stats = catalog.resolution_stats()
    assert stats.comment_mismatches == 1
    assert stats.policies_by_comment == 1


def test_kubernetes_comment_v332() -> None:
    catalog = Catalog.from_objects([policy("NetworkPolicy", "team-b", "knp.default.deny-from-other-ns")])
    resolution = catalog.resolve_policy(
        "cali-pi-_qA9lGysOzwIsyVf0V23", "KubernetesNetworkPolicy team-b/deny-from-other-ns ingress"
    )
    assert resolution.outcome is PolicyOutcome.RESOLVED
    assert resolution.identity.kind == "KubernetesNetworkPolicy"
    assert resolution.identity.name == "deny-from-other-ns"


def test_staged_policies_are_known_but_have_no_chains() -> None:
    staged = policy("StagedNetworkPolicy", "prod", "default.try-me")
    catalog = Catalog.from_objects([staged, policy("StagedGlobalNetworkPolicy", "", "default.g")])
    stats = catalog.resolution_stats()
    assert (stats.policies, stats.staged_policies) == (2, 2)
    assert catalog.policy(felix_name("cali-pi-", "prod/default.try-me")).kind is PolicyKind.UNRESOLVED


def test_admin_network_policies() -> None:
    catalog = Catalog.from_objects(
        [policy("GlobalNetworkPolicy", "", "kanp.adminnetworkpolicy.deny-all", tier="adminnetworkpolicy")]
    )
    identity = catalog.policy(felix_name("cali-pi-", "adminnetworkpolicy/kanp.adminnetworkpolicy.deny-all"))
    assert (identity.kind, identity.name, identity.tier) == (
        "AdminNetworkPolicy",
        "deny-all",
        "adminnetworkpolicy",
    )


def test_group_resolves_members_in_order() -> None:
    catalog = Catalog.from_objects(
        [policy("NetworkPolicy", "prod", "default.a"), policy("NetworkPolicy", "prod", "default.b")]
    )
    chain_a = felix_name("cali-pi-", "default/prod/default.a")
    chain_b = felix_name("cali-pi-", "default/prod/default.b")
    group = catalog.group("cali-gi-AbCdEfGhIjKlMnOpQrSt", [chain_a, chain_b, "cali-pi-_nope"], ["", "x"])
    assert group.chain == "cali-gi-AbCdEfGhIjKlMnOpQrSt"
    assert [p.name for p in group.policies] == ["a", "b", "cali-pi-_nope"]
    exported = group.as_identity("default")
    assert (exported.kind, exported.name, exported.namespace) == ("PolicyGroup", "a+b+cali-pi-_nope", "")


# ---------------------------------------------------------------------------- profiles


def test_profiles() -> None:
    profile_obj = object_from_manifest(
        {"kind": "Profile", "metadata": {"name": "projectcalico-default-allow"}}
    )
    assert profile_obj is not None
    catalog = Catalog.from_objects([wep("node-a", "kube-system", "metrics-server-1", sa="metrics-server"),
                                    profile_obj])  # fmt: skip
    # ksa.kube-system.metrics-server is implied by the workload, hashed in real output.
    assert catalog.profile("cali-pri-_CVSZITRyIpEmH8AB6H").name == "ksa.kube-system.metrics-server"
    assert catalog.profile("cali-pro-kns.kube-system").name == "kns.kube-system"
    assert catalog.profile(felix_name("cali-pri-", "projectcalico-default-allow")).name == (
        "projectcalico-default-allow"
    )
    # Unhashed chains carry their name even if unknown; hashed unknown ones stay unresolved.
    assert catalog.profile("cali-pri-kns.elsewhere").name == "kns.elsewhere"
    unknown = catalog.profile("cali-pri-_zzzzzzzzzzzzzzzzzz")
    assert not unknown.resolved and unknown.name == "cali-pri-_zzzzzzzzzzzzzzzzzz"
    assert catalog.resolution_stats().profiles_unresolved == 1


# ---------------------------------------------------------------------------- immutability and cost


def test_rebuild_with_previous_equals_fresh_build_and_leaves_old_intact() -> None:
    objects = [wep("node-a", "shop", f"p{i}") for i in range(20)] + [
        policy("NetworkPolicy", "shop", f"default.pol-{i}", revision=i + 1) for i in range(10)
    ]
    first = Catalog.from_objects(objects)
    chain0 = felix_name("cali-pi-", "shop/default.pol-0")
    assert first.policy(chain0).name == "pol-0"
    changed = [o for o in objects if o.name != "default.pol-0"] + [
        policy("NetworkPolicy", "shop", "default.renamed", revision=99)
    ]
    changed = [o for o in changed if o.spec.get("pod") != "p3"]
    second = Catalog.from_objects(changed, previous=first)
    fresh = Catalog.from_objects(changed)
    assert second.policies() == fresh.policies()
    assert second.workloads() == fresh.workloads()
    assert second.policy(chain0).kind is PolicyKind.UNRESOLVED
    assert second.policy(felix_name("cali-pi-", "shop/default.renamed")).name == "renamed"
    assert not second.workload("node-a", veth("shop", "p3")).resolved
    # The old catalog still answers from its own snapshot.
    assert first.policy(chain0).name == "pol-0"
    assert first.workload("node-a", veth("shop", "p3")).resolved


@pytest.mark.slow
def test_build_cost_10k_workloads_2k_policies(capsys: pytest.CaptureFixture[str]) -> None:
    objects: list[CalicoObject] = [
        wep(
            f"node-{i % 100}",
            f"ns{i % 200}",
            f"pod-{i}",
            labels={"app": f"a{i % 50}"},
            ips=(f"169.254.{i // 250}.{i % 250}/32",),
            revision=i + 1,
        )
        for i in range(10_000)
    ]
    for i in range(2_000):
        kind = "GlobalNetworkPolicy" if i % 3 == 2 else "NetworkPolicy"
        ns = "" if kind == "GlobalNetworkPolicy" else f"ns{i % 200}"
        name = f"knp.default.p{i}" if i % 3 == 0 else f"default.policy-number-{i}"
        objects.append(policy(kind, ns, name, revision=20_000 + i))
    started = time.perf_counter()
    full = Catalog.from_objects(objects)
    full_seconds = time.perf_counter() - started

    moved = objects[:]
    moved[7] = wep("node-x", "ns7", "pod-7", revision=50_000)
    started = time.perf_counter()
    after_pod = Catalog.from_objects(moved, previous=full)
    pod_seconds = time.perf_counter() - started

    moved[10_005] = policy("NetworkPolicy", "ns5", "default.changed", revision=50_001)
    started = time.perf_counter()
    after_policy = Catalog.from_objects(moved, previous=after_pod)
    policy_seconds = time.perf_counter() - started

    with capsys.disabled():
        print(
            f"\ncatalog build, 10k WEPs + 2k policies: full {full_seconds * 1000:.0f} ms, "
            f"one pod changed {pod_seconds * 1000:.0f} ms, one policy changed {policy_seconds * 1000:.0f} ms"
        )
    assert after_pod.workload("node-x", veth("ns7", "pod-7")).resolved
    assert after_policy.policy("cali-pi-ns5/default.changed").name == "changed"
    assert len(after_policy.policies()) == 2_000
    assert full_seconds < 10 and pod_seconds < full_seconds


# ---------------------------------------------------------------------------- the bundled sample


def test_sample_cluster_resolves_v330_chains() -> None:
    text = resources.files("calico_accountant_cli").joinpath("sample/cluster.yaml").read_text()
    result = decode_text(text)
    assert result.bad == {} and len(result.objects) == 26
    catalog = Catalog.from_objects(result.objects)
    assert len(catalog.workloads()) == 8
    for node, ns, pod, app in (
        ("node-a", "shop", "frontend-6c9f8d7b5-x2x4k", "frontend"),
        ("node-b", "payments", "ledger-db-0", "ledger-db"),
        ("node-a", "monitoring", "prometheus-0", "prometheus"),
    ):
        identity = catalog.workload(node, veth(ns, pod))
        assert identity.resolved and identity.app == app and identity.ips[0].startswith("169.254.")
    # v3.30 iptables names: <tier>/<ns>/<stored>, stored with the tier prefix.
    for hashed, kind, name, tier_name in (
        (
            "security/security.deny-shop-to-ledger-db",
            "GlobalNetworkPolicy",
            "deny-shop-to-ledger-db",
            "security",
        ),
        (
            "default/payments/default.deny-frontend-to-payments-api",
            "NetworkPolicy",
            "deny-frontend-to-payments-api",
            "default",
        ),
        (
            "default/shop/knp.default.allow-frontend-to-cart",
            "KubernetesNetworkPolicy",
            "allow-frontend-to-cart",
            "default",
        ),
        ("default/default.default-deny", "GlobalNetworkPolicy", "default-deny", "default"),
    ):
        found = catalog.policy(felix_name("cali-pi-", hashed))
        assert (found.kind, found.name, found.tier) == (kind, name, tier_name), hashed
    assert (
        catalog.profile(felix_name("cali-pri-", "ksa.payments.payments-api")).name
        == "ksa.payments.payments-api"
    )
