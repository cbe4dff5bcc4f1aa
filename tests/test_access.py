"""The access rules: which identity may report for which node, and who may read."""

from __future__ import annotations

import pytest

from aggregator.trust.access import AccessRules, NodeIdentityTemplate
from aggregator.trust.identity import Credential, PeerIdentity, bearer_token, certificate_identity


def cert(*names: str) -> PeerIdentity:
    return PeerIdentity(Credential.CERTIFICATE, names[0], names)


@pytest.mark.parametrize(
    ("template", "name", "node"),
    [
        ("{node}", "node-1", "node-1"),
        ("system:node:{node}", "system:node:node-1", "node-1"),
        ("system:node:{node}", "node-1", None),
        ("system:node:{node}", "system:node:", None),
        ("{node}.nodes.example.com", "node-1.nodes.example.com", "node-1"),
        ("{node}.nodes.example.com", "node-1.nodes.example.org", None),
        ("{node}.nodes.example.com", "a/b.nodes.example.com", None),
    ],
)
def test_templates_map_names_to_nodes(template: str, name: str, node: str | None) -> None:
    assert NodeIdentityTemplate(template).node_of(name) == node


@pytest.mark.parametrize("template", ["node", "{node}{node}", "system:node:"])
def test_a_template_needs_one_placeholder(template: str) -> None:
    with pytest.raises(ValueError):
        NodeIdentityTemplate(template)


def test_without_enforcement_everyone_may_do_everything() -> None:
    rules = AccessRules()
    assert rules.ingest_problem(None, "any") is None
    assert rules.may_consume(None) and rules.shows_instance_ids(None)


def test_with_enforcement_a_node_reports_only_for_itself() -> None:
    rules = AccessRules(enforce=True, template=NodeIdentityTemplate("system:node:{node}"))
    agent = cert("system:node:n1")
    assert rules.ingest_problem(agent, "n1") is None
    assert "only for node 'n1'" in (rules.ingest_problem(agent, "n2") or "")
    consumer = cert("grafana")
    assert "not a node's identity" in (rules.ingest_problem(consumer, "grafana") or "")
    assert "no verified identity" in (rules.ingest_problem(None, "n1") or "")
    assert rules.may_consume(consumer) and rules.may_consume(agent)
    assert rules.shows_instance_ids(agent) and not rules.shows_instance_ids(consumer)


def test_a_dns_san_can_carry_the_node() -> None:
    rules = AccessRules(enforce=True, template=NodeIdentityTemplate("{node}.nodes.example.com"))
    agent = cert("calico-accountant-agent", "n7.nodes.example.com")
    assert rules.node_of(agent) == "n7" and rules.ingest_problem(agent, "n7") is None


def test_a_token_reports_for_the_node_of_its_claim() -> None:
    rules = AccessRules(enforce=True)
    token = PeerIdentity(
        Credential.TOKEN, "system:serviceaccount:ca:agent", ("system:serviceaccount:ca:agent",), "n3"
    )
    assert rules.ingest_problem(token, "n3") is None
    assert rules.ingest_problem(token, "n4") is not None
    unbound = PeerIdentity(Credential.TOKEN, "system:serviceaccount:ca:x", ("system:serviceaccount:ca:x",))
    assert rules.ingest_problem(unbound, "system:serviceaccount:ca:x") is not None


def test_api_client_identities_narrow_the_consumers() -> None:
    rules = AccessRules(enforce=True, api_clients=frozenset({"grafana"}))
    assert rules.may_consume(cert("grafana"))
    assert not rules.may_consume(cert("someone-else"))
    assert not rules.may_consume(None)


def test_identity_from_the_grpc_auth_context() -> None:
    identity = certificate_identity(
        {
            "x509_common_name": [b"node-1"],
            "x509_subject_alternative_name": [b"node-1.nodes.example.com", b"node-1"],
            "transport_security_type": [b"ssl"],
        }
    )
    assert identity == PeerIdentity(Credential.CERTIFICATE, "node-1", ("node-1", "node-1.nodes.example.com"))
    assert certificate_identity({"transport_security_type": [b"ssl"]}) is None


def test_bearer_tokens_from_metadata() -> None:
    assert bearer_token([("user-agent", "x"), ("authorization", "Bearer abc.def.ghi")]) == "abc.def.ghi"
    assert bearer_token([("Authorization", b"bearer t")]) == "t"
    assert bearer_token([("authorization", "Basic dXNlcg==")]) is None
    assert bearer_token([]) is None
