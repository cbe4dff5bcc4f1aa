"""Felix's chain naming, checked against names computed here with hashlib (not the module)
and against chain names seen in real Calico output."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_accountant.felix.chains import parse_identity_comment
from calico_accountant.felix.naming import (
    NamingScheme,
    kind_short,
    length_limited_id,
    policy_chain_candidates,
    policy_id_candidates,
    profile_chain_names,
    profile_names_for_workload,
    stored_policy_name,
    veth_name,
    workload_endpoint_name,
)


def felix_name(prefix: str, suffix: str, max_len: int = 28) -> str:
    """An independent transcription of GetLengthLimitedID for the expectations."""
    if len(prefix) + len(suffix) > max_len or (len(prefix) + len(suffix) == max_len and suffix[:1] == "_"):
        digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode("utf-8")).digest()).decode()
        return prefix + "_" + digest.replace("=", "")[: max_len - 1 - len(prefix)]
    return prefix + suffix


def chains_of(kind: str, namespace: str, stored: str, tier: str = "default") -> set[str]:
    return {c.chain for c in policy_chain_candidates(kind, namespace, stored, tier)}


# §1.6 worked examples: (kind, namespace, stored name, tier, hashed input, documented ingress chain)
WORKED_EXAMPLES = [
    (
        "NetworkPolicy",
        "default",
        "knp.default.allow-nginx",
        "default",
        "default/knp.default.allow-nginx",
        "cali-pi-_dMXF9XERrXSkww4mw6F",
    ),
    (
        "NetworkPolicy",
        "default",
        "knp.default.allow-nginx",
        "default",
        "default/default/knp.default.allow-nginx",
        "cali-pi-_KZDIIDu2y0vrdgDalAi",
    ),
    (
        "KubernetesNetworkPolicy",
        "default",
        "allow-nginx",
        "default",
        "knp/default/allow-nginx",
        "cali-pi-_JfeG2_w8PWOceh6XmuV",
    ),
    (
        "NetworkPolicy",
        "default",
        "knp.default.allow-nginx",
        "default",
        "np/default/knp.default.allow-nginx",
        "cali-pi-_R7iEg1Qcw1wJY_Mt1O9",
    ),
    (
        "GlobalNetworkPolicy",
        "",
        "default.allow-dns",
        "default",
        "default.allow-dns",
        "cali-pi-default.allow-dns",
    ),
    (
        "GlobalNetworkPolicy",
        "",
        "default.allow-dns",
        "default",
        "default/default.allow-dns",
        "cali-pi-_xjUDJv9hWPJPUbpwnnP",
    ),
    ("GlobalNetworkPolicy", "", "allow-dns", "default", "gnp/allow-dns", "cali-pi-gnp/allow-dns"),
    (
        "GlobalNetworkPolicy",
        "",
        "default.allow-dns",
        "default",
        "gnp/default.allow-dns",
        "cali-pi-_qEMC4ReWHIM97SKSqv3",
    ),
    (
        "NetworkPolicy",
        "prod",
        "default.db-access",
        "default",
        "prod/default.db-access",
        "cali-pi-_uinPMu5xdMIkFw9j6KO",
    ),
    (
        "NetworkPolicy",
        "prod",
        "default.db-access",
        "default",
        "default/prod/default.db-access",
        "cali-pi-_9S8ilcqcxTLJ9vT2PlG",
    ),
    ("NetworkPolicy", "prod", "db-access", "default", "np/prod/db-access", "cali-pi-np/prod/db-access"),
    (
        "GlobalNetworkPolicy",
        "",
        "security.block-egress",
        "security",
        "security/security.block-egress",
        "cali-pi-_Mo6bUUGdsZMDxmidqKy",
    ),
]


@pytest.mark.parametrize(("kind", "namespace", "stored", "tier", "hashed", "documented"), WORKED_EXAMPLES)
def test_worked_examples(
    kind: str, namespace: str, stored: str, tier: str, hashed: str, documented: str
) -> None:
    independent = felix_name("cali-pi-", hashed)
    assert independent == documented  # the reference's arithmetic, recomputed with hashlib
    assert length_limited_id("cali-pi-", hashed) == documented
    ids = {c.policy_id for c in policy_id_candidates(kind, namespace, stored, tier)}
    assert hashed in ids
    chains = chains_of(kind, namespace, stored, tier)
    assert documented in chains
    # Ingress and egress share the hash tail.
    assert felix_name("cali-po-", hashed) in chains
    assert felix_name("cali-po-", hashed)[8:] == independent[8:]


def test_calicoctl_names_reach_the_stored_forms() -> None:
    """calicoctl shows typed names; the stored-name variants must still produce felix's chains."""
    assert felix_name("cali-pi-", "prod/default.db-access") in chains_of("NetworkPolicy", "prod", "db-access")
    assert "cali-pi-default.allow-dns" in chains_of("GlobalNetworkPolicy", "", "allow-dns")
    assert felix_name("cali-pi-", "security/security.block-egress") in chains_of(
        "GlobalNetworkPolicy", "", "block-egress", "security"
    )
    # ...and the v3.32 forms of a typed name are exact, the stored-variant ones are not.
    by_id = {c.policy_id: c for c in policy_id_candidates("NetworkPolicy", "prod", "db-access")}
    assert by_id["np/prod/db-access"].exact and by_id["np/prod/db-access"].scheme is NamingScheme.V3_32
    assert not by_id["prod/default.db-access"].exact
    assert by_id["default/prod/default.db-access"].scheme is NamingScheme.V3_29


# Chains observed in real output (§1.6): (kind, namespace, stored name, chain prefix, observed chain)
REAL_OUTPUT = [
    (
        "NetworkPolicy",
        "test",
        "knp.default.default-ingress-egress-deny",
        "cali-pi-",
        "cali-pi-_DYtwCKMZFWyxK2RhACP",
    ),
    ("NetworkPolicy", "default", "knp.default.allow-db-access", "cali-pi-", "cali-pi-_tTE-E7yY40ogArNVgKt"),
    (
        "NetworkPolicy",
        "kube-system",
        "knp.default.konnectivity-agent",
        "cali-po-",
        "cali-po-_rWDSk9LLgWIl_lpnJE2",
    ),
    ("GlobalNetworkPolicy", "", "aaa-allow-konnectivity-agent", "cali-po-", "cali-po-_j5sVgQTfF-APgMw0kN9"),
    ("KubernetesNetworkPolicy", "team-b", "deny-from-other-ns", "cali-pi-", "cali-pi-_qA9lGysOzwIsyVf0V23"),
]


@pytest.mark.parametrize(("kind", "namespace", "stored", "prefix", "observed"), REAL_OUTPUT)
def test_real_output_chains(kind: str, namespace: str, stored: str, prefix: str, observed: str) -> None:
    assert observed in chains_of(kind, namespace, stored)


def test_enterprise_tier_namespace_name() -> None:
    hashed = "app-hipstershop/hipstershop/app-hipstershop.checkoutservice"
    assert felix_name("cali-pi-", hashed) == "cali-pi-_sQdl6e7ekf9DS2UYNem"
    chains = chains_of("NetworkPolicy", "hipstershop", "app-hipstershop.checkoutservice", "app-hipstershop")
    assert "cali-pi-_sQdl6e7ekf9DS2UYNem" in chains


@pytest.mark.parametrize(
    ("profile", "observed"),
    [
        ("ksa.kube-system.metrics-server", "cali-pri-_CVSZITRyIpEmH8AB6H"),
        ("ksa.pdns-dev.default", "cali-pri-_O7PG5EVM_0SsI30l2d"),
        ("ksa.office-test.default", "cali-pro-_DG_51VMe74aoc83nre"),
        ("ksa.cloudability-agents.cloudability-agents", "cali-pro-_SNWE5yYJqbVp3T74uu"),
    ],
)
def test_profile_chains_real_output(profile: str, observed: str) -> None:
    prefix = observed[:9]
    assert felix_name(prefix, profile) == observed
    assert observed in profile_chain_names(profile)


def test_short_profiles_are_not_hashed() -> None:
    assert profile_chain_names("kns.shop", max_lens=(28,)) == ("cali-pri-kns.shop", "cali-pro-kns.shop")
    assert profile_names_for_workload("shop", "default") == ("kns.shop", "k8s_ns.shop", "ksa.shop.default")
    assert profile_names_for_workload("", "x") == ()


def test_length_limit_edges() -> None:
    # Exactly 28 characters stays readable; 29 is hashed to exactly 28.
    assert length_limited_id("cali-pi-", "a" * 20) == "cali-pi-" + "a" * 20
    hashed = length_limited_id("cali-pi-", "a" * 21)
    assert hashed == felix_name("cali-pi-", "a" * 21) and len(hashed) == 28 and hashed[8] == "_"
    # A suffix starting with "_" that would exactly fill the limit is hashed (no forged hashes).
    forged = "_" + "x" * 19
    assert length_limited_id("cali-pi-", forged) != "cali-pi-" + forged
    assert length_limited_id("cali-pi-", forged) == felix_name("cali-pi-", forged)
    # Profile prefixes are one longer: 18 hash characters.
    assert len(length_limited_id("cali-pri-", "ksa.kube-system.metrics-server")) == 28
    # nft (v3.30+) limit: never hashed in practice.
    long_id = "default/default/knp.default.allow-nginx"
    assert length_limited_id("cali-pi-", long_id, 256) == "cali-pi-" + long_id
    assert "cali-pi-" + long_id in chains_of("NetworkPolicy", "default", "knp.default.allow-nginx")
    assert length_limited_id("cali-pi-", "") == "cali-pi-_"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./_", min_size=1, max_size=80))
def test_length_limited_id_matches_independent(suffix: str) -> None:
    for prefix in ("cali-pi-", "cali-pro-"):
        name = length_limited_id(prefix, suffix)
        assert name == felix_name(prefix, suffix)
        assert len(name) <= 28


def test_staged_policies_have_no_chains() -> None:
    for kind in ("StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy"):
        assert policy_chain_candidates(kind, "ns", "x") == ()


def test_kind_short_and_stored_names() -> None:
    assert [kind_short(k) for k in ("NetworkPolicy", "GlobalNetworkPolicy", "KubernetesNetworkPolicy")] == [
        "np",
        "gnp",
        "knp",
    ]
    assert kind_short("Nope") == ""
    assert stored_policy_name("allow-dns") == "default.allow-dns"
    assert stored_policy_name("default.allow-dns") == "default.allow-dns"
    assert stored_policy_name("knp.default.x") == "knp.default.x"
    assert stored_policy_name("block", "security") == "security.block"
    assert stored_policy_name("security.block", "security") == "security.block"


def test_admin_network_policy_candidates() -> None:
    ids = {c.policy_id for c in policy_id_candidates(
        "GlobalNetworkPolicy", "", "kanp.adminnetworkpolicy.deny-all", "adminnetworkpolicy")}  # fmt: skip
    assert "adminnetworkpolicy/kanp.adminnetworkpolicy.deny-all" in ids
    assert "kanp.adminnetworkpolicy.deny-all" in ids


@pytest.mark.parametrize(
    ("namespace", "pod", "expected"),
    [
        ("k8s-lab", "web-c747ddb74-5dnq5", "cali89c859cc852"),
        ("kube-system", "metrics-server-555d76c778-5zsr9", "calic5a1f1aa0ed"),
        ("default", "db-8d66ff5f7-bp6kf", "cali95aa86cbb2a"),
    ],
)
def test_veth_names_real_output(namespace: str, pod: str, expected: str) -> None:
    assert veth_name(namespace, pod) == expected
    assert "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11] == expected


def test_workload_endpoint_name() -> None:
    assert (
        workload_endpoint_name("worker-01", "web-c747ddb74-5dnq5")
        == "worker--01-k8s-web--c747ddb74--5dnq5-eth0"
    )


@pytest.mark.parametrize(
    ("comment", "kind", "namespace", "name", "direction"),
    [
        ("Policy prod/default.db-access ingress", "Policy", "prod", "default.db-access", "ingress"),
        ("Policy default.allow-dns egress", "Policy", "", "default.allow-dns", "egress"),
        ("NetworkPolicy fv/policy-1 ingress", "NetworkPolicy", "fv", "policy-1", "ingress"),
        ("KubernetesNetworkPolicy team-b/deny-from-other-ns ingress", "KubernetesNetworkPolicy", "team-b",
         "deny-from-other-ns", "ingress"),
        ("GlobalNetworkPolicy foo egress", "GlobalNetworkPolicy", "", "foo", "egress"),
        ("Profile ksa.shop.default ingress", "Profile", "", "ksa.shop.default", "ingress"),
    ],
)  # fmt: skip
def test_parse_identity_comment(comment: str, kind: str, namespace: str, name: str, direction: str) -> None:
    parsed = parse_identity_comment(comment)
    assert parsed is not None
    assert (parsed.kind, parsed.namespace, parsed.name, parsed.direction) == (
        kind,
        namespace,
        name,
        direction,
    )


@pytest.mark.parametrize(
    "comment", ["", "Return if policy accepted", "cali:abc", "Policy", "Start of tier default"]
)
def test_parse_identity_comment_rejects(comment: str) -> None:
    assert parse_identity_comment(comment) is None
