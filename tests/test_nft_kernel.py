"""The nftables parser against a real kernel: Debian's ``nft`` loads felix's nft layout
(:mod:`tests.support.felix_nft`) into a network namespace, and its ``nft -j`` is parsed.

* **real traffic** -- the scenario of ``test_parser_kernel`` (a node routing for client,
  server and other pods; allow, deny, unmatched and egress-denied TCP connections and
  pings, over IPv4 and IPv6, also with the server's policies in a group chain), with the
  node's policy in ``table ip calico``/``ip6 calico`` instead of iptables: every parsed
  record equals what was sent, exactly, and a steady-state re-read after more traffic
  shows exactly the increments;
* **oracle round trip** -- tables rendered with known counters (``nft -f`` sets them) are
  listed back by ``nft -j``: the records are those of the oracle's own JSON, and the
  counts those the oracle expects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.records import CounterKey
from calico_accountant_cli.lab.calico_rules import LabPolicy, Layout, policy_chain_name
from calico_accountant_cli.lab.calico_rules import render_filter_table as render_lab_table
from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools
from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
from calico_accountant_cli.lab.nftables import list_table
from calico_accountant_cli.lab.nftables import load_table as load
from calico_accountant_cli.lab.topology import build_node
from calico_accountant_cli.lab.traffic import guard_counts, prepare_pods
from tests.support.felix_nft import nft_records, to_nft
from tests.support.felix_render import NodeModel, nft_chain_names, node_models, render
from tests.support.skips import requires_kernel
from tests.test_parser_kernel import (
    ALLOW_WEB,
    CLIENT_EGRESS,
    DENY_ADMIN,
    PLANS,
    SECOND_ROUND,
    Scenario,
    _by_key,
    _endpoints,
    _expected,
    _send,
    lab,  # noqa: F401 (the fixture)
)

pytestmark = [pytest.mark.kernel, requires_kernel("ip", "nft", *missing_backend_tools((Backend.LEGACY,)))]

POD_BACKEND = Backend.LEGACY
"""The pods' one-packet send guard stays in iptables; only the node is in nftables mode."""


def _lab_renames(layout: Layout) -> dict[str, str]:
    """The lab policies' iptables chains -> their nft chains (v3.30: ``tier/ns/stored``, unhashed)."""
    names: dict[str, str] = {}
    policies: tuple[LabPolicy, ...] = (ALLOW_WEB, DENY_ADMIN, CLIENT_EGRESS)
    for policy in policies:
        for direction, prefix in (("ingress", "cali-pi-"), ("egress", "cali-po-")):
            names[policy_chain_name(policy, direction, layout)] = (
                f"{prefix}default/{policy.namespace}/{policy.stored_name}"
            )
    return names


def _renamed(
    expected: dict[CounterKey, tuple[int, int]], names: dict[str, str]
) -> dict[CounterKey, tuple[int, int]]:
    return {key._replace(chain=names.get(key.chain, key.chain)): value for key, value in expected.items()}


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True], ids=["policies", "group"])
def test_real_traffic_counts_match_what_was_sent(lab: LabNetwork, grouped: bool) -> None:  # noqa: F811
    from calico_accountant_cli.lab.topology import PodSpec
    from node_agent.parsing import SteadyStateParser, parse_node

    scenario = Scenario(Layout.V3_30, grouped=grouped)
    node = build_node(lab, [PodSpec("client", "shop"), PodSpec("server", "shop"), PodSpec("other", "shop")])
    prepare_pods(node, POD_BACKEND)
    names = _lab_renames(scenario.layout)
    for family in (4, 6):
        iptables_text = render_lab_table(_endpoints(node, grouped), scenario.layout, family=family)
        load(node.netns, family, to_nft(iptables_text, family, names).script)
    for family in (4, 6):
        _send(lab, node, family, PLANS[family], False)

    dumps = [(f"nft-ipv{family}", list_table(node.netns, family)) for family in (4, 6)]
    result = parse_node(dumps)
    assert result.diagnostics == []
    expected: dict[CounterKey, tuple[int, int]] = {}
    syn_v4 = 0
    for family in (4, 6):
        client, _, other = node.pods
        sent = [guard_counts(pod.netns, POD_BACKEND, family) for pod in (client, other)]
        plan = PLANS[family]
        attempts = plan.web + plan.refused + plan.admin + plan.unmatched + plan.egress_denied
        assert sent[0].first_syns == attempts and sent[0].echo_requests == plan.pings
        syn = sent[0].first_syn_bytes // attempts
        echo = sent[0].echo_request_bytes // plan.pings
        expected.update(_renamed(_expected(node, scenario, family, plan, syn, echo), names))
        syn_v4 = syn if family == 4 else syn_v4
    assert _by_key(result.records) == expected
    comments = {record.key.chain: record.chain_comment for record in result.records}
    assert comments["cali-pi-default/shop/default.deny-admin"] == "Policy shop/default.deny-admin ingress"
    assert all(record.rule_ids for record in result.records)

    steady = SteadyStateParser()
    assert _by_key(steady.parse(dumps).records) == expected
    _send(lab, node, 4, SECOND_ROUND, False)
    second_dumps = [(f"nft-ipv{family}", list_table(node.netns, family)) for family in (4, 6)]
    second = steady.parse(second_dumps)
    assert steady.fast_path_reads == 2, (steady.fast_path_reads, steady.full_reads)
    assert _by_key(second.records) == _by_key(parse_node(second_dumps).records)
    grown = {
        key: (packets - expected[key][0], nbytes - expected[key][1])
        for key, (packets, nbytes) in _by_key(second.records).items()
    }
    increments = _renamed(_expected(node, scenario, 4, SECOND_ROUND, syn_v4, 0), names)
    assert grown == {key: increments.get(key, (0, 0)) for key in expected}


@pytest.fixture(scope="module")
def nft_namespace() -> Iterator[str]:
    with LabNetwork() as network:
        yield network.namespace("nft-rt")
    assert not list_namespaces(network.prefix), "lab namespaces left behind"


@settings(
    max_examples=int(os.environ.get("KERNEL_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(model=st.sampled_from(("v3.30", "v3.32")).flatmap(lambda layout: node_models(layout)))
def test_rendered_tables_listed_by_debians_nft_parse_like_the_oracle(
    nft_namespace: str, model: NodeModel
) -> None:
    from node_agent.parsing import parse_node

    model = model.with_options(framing="save", counter_form="prefix")
    family = model.options.family
    rendered = render(model)
    names = nft_chain_names(model)
    nft = to_nft(rendered.text, family, names)
    load(nft_namespace, family, nft.script)
    listed = parse_node([("kernel", list_table(nft_namespace, family))])
    own = parse_node([("oracle", nft.json)])
    assert _by_key(listed.records) == _by_key(own.records)
    assert listed.diagnostic_counts() == own.diagnostic_counts() == dict(rendered.expected_diagnostics)
    counts = {r.key: (r.packets, r.bytes, r.rule_ids) for r in nft_records(rendered.expected, names)}
    assert {r.key: (r.packets, r.bytes, r.rule_ids) for r in listed.records} == counts
