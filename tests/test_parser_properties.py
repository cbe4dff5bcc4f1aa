"""Property tests: the parser recovers exactly what the felix-faithful generator put in.

``felix_render`` renders a node's filter table for every Calico layout and option and
computes the records from the simulated flows' fates (which policy accepted or denied
what), independently of the counters.  The parser must give back exactly those records
(as a multiset of key, packets, bytes), the rule ids the values come from, and the
diagnostics the table deserves (``deny_not_exact`` where a deny cannot be made exact).
"""

from __future__ import annotations

import os
import random
import subprocess
from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.records import CounterKey, CounterRecord, Kind, ParseResult
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import (
    LAYOUTS,
    Action,
    CounterForm,
    Endpoint,
    Framing,
    Match,
    NodeModel,
    Policy,
    PolicyRule,
    Profile,
    RenderedTable,
    RenderOptions,
    Tier,
    build_model,
    node_models,
    render,
    render_restore,
)
from tests.support.skips import skip_unless_kernel

EXAMPLES_PER_LAYOUT = 800
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES_PER_LAYOUT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ValueKey = tuple[CounterKey, int, int]


def values(records: Iterable[CounterRecord]) -> Counter[ValueKey]:
    return Counter((r.key, r.packets, r.bytes) for r in records)


def parse_rendered(rendered: RenderedTable, model: NodeModel) -> ParseResult:
    """Parse one rendered table; tables without a header get their family from the caller,
    as the agent does for the ``iptables -S`` forms (they carry no ``ip6tables-save`` line)."""
    family = rendered.family if model.options.framing == "list" else None
    return parse_node([("node", rendered.text)], family=family)


def describe_difference(expected: Counter[ValueKey], got: Counter[ValueKey]) -> str:
    missing = "\n".join(f"  missing {k!r} x{n}" for k, n in (expected - got).items())
    extra = "\n".join(f"  unexpected {k!r} x{n}" for k, n in (got - expected).items())
    return f"records differ:\n{missing}\n{extra}"


def assert_exact(rendered: RenderedTable, result: ParseResult) -> None:
    expected, got = values(rendered.expected), values(result.records)
    assert got == expected, describe_difference(expected, got) + "\n--- table ---\n" + rendered.text
    assert Counter(result.diagnostic_counts()) == rendered.expected_diagnostics, (
        f"diagnostics {result.diagnostics!r}, expected {dict(rendered.expected_diagnostics)}"
    )
    by_key = {r.key: r for r in result.records}
    for want in rendered.expected:
        have = by_key[want.key]
        if want.key.kind in (
            Kind.POLICY_ACCEPT,
            Kind.POLICY_DENY,
            Kind.NO_POLICY_DROP,
            Kind.PROFILE_ACCEPT,
            Kind.NO_PROFILE_DROP,
        ):
            assert have.rule_ids == want.rule_ids, (want.key, have.rule_ids, want.rule_ids)
        if want.key.kind is Kind.POLICY_ACCEPT:
            assert have.chain_comment == want.chain_comment, (want.key, have.chain_comment)
            assert have.group_members == want.group_members, (want.key, have.group_members)


@pytest.mark.parametrize("layout", LAYOUTS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_parser_recovers_every_record(layout: str, data: st.DataObject) -> None:
    model = data.draw(node_models(layout))
    rendered = render(model)
    assert_exact(rendered, parse_rendered(rendered, model))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ipv4_and_ipv6_tables_form_one_node(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save")]))
    v4 = render(model.with_options(family=4))
    v6 = render(model.with_options(family=6))
    result = parse_node([("iptables", v4.text), ("ip6tables", v6.text)])
    expected = values(v4.expected) + values(v6.expected)
    assert values(result.records) == expected, describe_difference(expected, values(result.records))
    assert {r.key.family for r in result.records} <= {4, 6}
    if model.endpoints:
        assert {r.key.family for r in result.records} == {4, 6}
    assert Counter(result.diagnostic_counts()) == v4.expected_diagnostics + v6.expected_diagnostics


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_steady_state_parser_matches_fresh_parse(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save"), ("inline", "list")]))
    steady = SteadyStateParser(family=model.options.family if model.options.framing == "list" else None)
    seeds = data.draw(st.lists(st.integers(0, 2**31), min_size=2, max_size=4))
    for seed in seeds:
        rendered = render(model.with_options(flow_seed=seed))
        fresh = parse_rendered(rendered, model)
        again = steady.parse([("node", rendered.text)])
        assert values(again.records) == values(fresh.records)
        assert {(r.key, r.rule_ids) for r in again.records} == {(r.key, r.rule_ids) for r in fresh.records}
        assert again.diagnostic_counts() == fresh.diagnostic_counts()
        assert values(again.records) == values(rendered.expected)
    if model.options.counter_form == "prefix" and rendered.rule_lines and hasattr(steady, "fast_path_reads"):
        # Same rule text every read: everything after the first read takes the fast path.
        assert steady.fast_path_reads == len(seeds) - 1


# ------------------------------------------------------------------------------------------
# Deterministic cases, so the features below are covered whatever hypothesis draws.
# ------------------------------------------------------------------------------------------


def _policy(
    name: str, selector: str, *actions: Action, tier: str = "default", order: float = 100.0
) -> Policy:
    """Deny rules match everything; the others one TCP port each."""
    rules = tuple(
        PolicyRule(a) if a == "deny" else PolicyRule(a, Match(protocol="tcp", port=8000 + i))
        for i, a in enumerate(actions)
    )
    return Policy(name, "prod", "NetworkPolicy", selector, tier, order, ingress=rules, egress=rules)


def _endpoint(interface: str, *labels: str) -> Endpoint:
    return Endpoint(interface, "prod", frozenset(labels), ("kns.prod",))


_KNS = Profile("kns.prod", (PolicyRule("allow"),), (PolicyRule("allow"),))


def test_group_of_seven_policies_has_return_on_verdict_and_exact_records() -> None:
    policies = tuple(_policy(f"grouped-{i}", "app=web", "allow", "deny", order=float(i)) for i in range(7))
    model = NodeModel(
        "v3.28",
        (Tier("default", 1e6),),
        policies,
        (_KNS,),
        (_endpoint("cali0123456789a", "app=web"), _endpoint("azv0123456789", "app=web")),
        RenderOptions(flows_per_direction=30, flow_seed=7),
    )
    rendered = render(model)
    assert "Return on verdict" in rendered.text
    accepts = [r for r in rendered.expected if r.key.kind is Kind.POLICY_ACCEPT]
    assert accepts and all(r.key.chain.startswith(("cali-gi-", "cali-go-")) for r in accepts)
    assert all(len(r.group_members) == 7 for r in accepts)
    assert sum(r.packets for r in rendered.expected if r.key.kind is Kind.POLICY_DENY) > 0
    assert_exact(rendered, parse_node([("node", rendered.text)]))


@pytest.mark.parametrize("layout", ["v3.30", "v3.32"])
def test_pass_tier_and_tiers_in_order(layout: str) -> None:
    policies = (
        _policy("first", "app=web", "allow", "deny", tier="security", order=1.0),
        _policy("second", "app=web", "pass", "allow", tier="platform", order=1.0),
        _policy("third", "app=web", "deny", tier="default", order=1.0),
    )
    tiers = (Tier("security", 100.0, default_pass=True), Tier("platform", 200.0), Tier("default", 1e6))
    model = NodeModel(
        layout,
        tiers,
        policies,
        (_KNS,),
        (_endpoint("eni0a1b2c3d4e5f", "app=web"),),
        RenderOptions(flows_per_direction=40, flow_seed=3, flow_logs=True, deny_action="REJECT"),
    )
    rendered = render(model)
    assert "End of tier platform. Reject if no policies passed packet" in rendered.text
    assert "End of tier security." not in rendered.text
    # "first" is followed by the unguarded "Start of tier platform" but its tier has no pass rule: exact.
    denies = {r.key.chain for r in rendered.expected if r.key.kind is Kind.POLICY_DENY}
    assert any(chain.startswith("cali-pi-") for chain in denies)
    assert rendered.expected_diagnostics["deny_not_exact"] == 2  # "second", ingress and egress
    assert_exact(rendered, parse_node([("node", rendered.text)]))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "form", [("prefix", "save"), ("inline", "list"), ("none", "list"), ("inline", "save")]
)
def test_every_layout_in_every_counter_form(layout: str, form: tuple[CounterForm, Framing]) -> None:
    counter_form, framing = form
    for seed in range(3):
        options = RenderOptions(
            family=6 if seed == 1 else 4,
            counter_form=counter_form,
            framing=framing,
            comment_order=("cali_first", "cali_last", "trailing")[seed],
            flow_seed=seed,
            other_tables=seed == 2,
        )
        model = build_model(random.Random(seed), layout, endpoints=3, policies=5, options=options)
        rendered = render(model)
        assert_exact(rendered, parse_rendered(rendered, model))


# ------------------------------------------------------------------------------------------
# Through a real kernel: what iptables itself prints back parses to the same records.
# ------------------------------------------------------------------------------------------

_KERNEL_TOOLS = {
    4: ("iptables-restore", "iptables-save"),
    6: ("ip6tables-legacy-restore", "ip6tables-legacy-save"),
}
"""IPv6 goes through the legacy tools: ``ip6tables-nft-restore`` 1.8.9 drops rule counters."""


def _rule_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith("["))


@pytest.mark.kernel
@pytest.mark.parametrize("family", [4, 6])
def test_kernel_round_trip_is_byte_identical_and_parses_exactly(family: int) -> None:
    restore, save = _KERNEL_TOOLS[family]
    skip_unless_kernel("ip", restore, save)
    namespace = f"ca-felix-render-{os.getpid()}-{family}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        for index, layout in enumerate(LAYOUTS):
            options = RenderOptions(
                family=family,
                flow_logs=True,
                deny_action="REJECT" if index % 2 else "DROP",
                flow_seed=index,
                flows_per_direction=6,
                big_counters=True,
            )
            model = build_model(random.Random(index), layout, endpoints=3, policies=6, options=options)
            rendered = render_restore(model)
            exec_ = ["ip", "netns", "exec", namespace]
            subprocess.run(
                [*exec_, restore, "-c"], input=rendered.text, text=True, check=True, capture_output=True
            )
            dumped = subprocess.run(
                [*exec_, save, "-c", "-t", "filter"], text=True, check=True, capture_output=True
            ).stdout
            assert _rule_lines(dumped) == _rule_lines(rendered.text), layout
            assert_exact(rendered, parse_node([(save, dumped)]))
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_policy_rule_ids_name_the_verdict_rule(layout: str) -> None:
    """A policy_rule's value and id come from the verdict rule itself: the DROP/REJECT before
    v3.30, the ``MARK --set-xmark D/D`` from v3.30 (the guarded DROP after it is the same
    verdict and is not counted again: Enterprise can queue packets between the two)."""
    policies = (_policy("mixed", "app=web", "log", "deny", "allow", "deny"),)
    model = NodeModel(
        layout,
        (Tier("default", 1e6),),
        policies,
        (_KNS,),
        (_endpoint("cali0123456789a", "app=web"),),
        RenderOptions(flows_per_direction=20, flow_seed=5, flow_logs=True),
    )
    rendered = render(model)
    result = parse_node([("node", rendered.text)])
    want = {r.key: r.rule_ids for r in rendered.expected if r.key.kind is Kind.POLICY_RULE}
    got = {r.key: r.rule_ids for r in result.records if r.key.kind is Kind.POLICY_RULE}
    assert len(want) == 8
    assert got == want
