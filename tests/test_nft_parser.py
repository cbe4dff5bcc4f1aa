"""The nftables parser (``node_agent.nftables``) against the nft oracle (pure, no kernel).

Tables rendered by :mod:`tests.support.felix_render` are written in felix's nftables form
by :mod:`tests.support.felix_nft` (JSON as ``nft -j list table`` prints it): the parsed
records must be the oracle's expectations with nft chain names, and the same as the
iptables parser's records for the iptables rendering of the same node.  Then the cases
the oracle does not draw: 256-character chain names in the v3.30-v3.31 and v3.32 forms,
dispatch maps naming the interface, marks as strings, the fast path, and mutated JSON.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.felix.naming import length_limited_id
from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_nft import IDENTITY_SHARE, nft_records, to_nft
from tests.support.felix_render import (
    Endpoint,
    Match,
    NodeModel,
    Policy,
    PolicyRule,
    Profile,
    RenderOptions,
    Tier,
    build_model,
    nft_chain_names,
    node_models,
    render,
)

NFT_LAYOUTS = ("v3.29", "v3.30", "v3.32")
"""Felix's nft chain names are 256 characters long from v3.30; v3.29's tech preview hashed them
at 28 as iptables does (the renderer then keeps the iptables names)."""


def _as_saved(model: NodeModel) -> NodeModel:
    return model.with_options(framing="save", counter_form="prefix")


def _by_key(records: list[CounterRecord]) -> dict[CounterKey, CounterRecord]:
    found: dict[CounterKey, CounterRecord] = {}
    for record in records:
        assert record.key not in found, f"duplicate record {record.key}"
        found[record.key] = record
    return found


def _counts(records: list[CounterRecord]) -> dict[CounterKey, tuple[Any, ...]]:
    """What the oracle predicts of a record (it leaves profiles' identity comments out)."""
    return {key: (r.packets, r.bytes, r.rule_ids, r.group_members) for key, r in _by_key(records).items()}


def _check_model(model: NodeModel) -> None:
    model = _as_saved(model)
    rendered = render(model)
    rename = nft_chain_names(model)
    nft = to_nft(rendered.text, model.options.family, rename)
    parsed = parse_node([("nft", nft.json)])
    expected = nft_records(rendered.expected, rename)
    assert _counts(parsed.records) == _counts(expected)
    assert parsed.diagnostic_counts() == dict(rendered.expected_diagnostics)
    # The iptables rendering of the same node gives the same records, chains renamed.
    iptables = parse_node([("iptables", rendered.text)])
    assert _by_key(nft_records(iptables.records, rename)) == _by_key(parsed.records)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(NFT_LAYOUTS).flatmap(lambda layout: node_models(layout)))
def test_rendered_nft_tables_parse_to_the_oracles_records(model: NodeModel) -> None:
    _check_model(model)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("layout", NFT_LAYOUTS)
def test_groups_tiers_flow_logs_and_reject(layout: str, family: int) -> None:
    """Forty nodes per layout and family: groups, several tiers (some with default Pass), Pass
    rules (and the denies they make inexact), v3.30 deny marks, flow logs, REJECT."""
    covered: Counter[str] = Counter()
    for seed in range(40):
        options = RenderOptions(
            family=family, flow_logs=seed % 2 == 0, deny_action="REJECT" if seed % 3 else "DROP"
        )
        model = build_model(random.Random(seed), layout, endpoints=4, policies=8, options=options)
        _check_model(model)
        rendered = render(_as_saved(model))
        covered["group"] += any(r.key.chain.startswith("cali-gi-") for r in rendered.expected)
        covered["tiers"] += len({r.key.tier for r in rendered.expected if r.key.tier}) > 1
        covered["pass rules"] += any(r.key.action == "pass" for r in rendered.expected)
        covered["default-pass tier"] += any(t.default_pass for t in model.tiers)
        covered["deny_not_exact"] += bool(rendered.expected_diagnostics["deny_not_exact"])
        covered["v3.30 deny marks"] += layout >= "v3.30" and any(
            r.key.action == "deny" for r in rendered.expected
        )
    assert all(
        covered[what] for what in ("group", "tiers", "pass rules", "default-pass tier", "deny_not_exact")
    ), covered


def _long_policy(name: str, kind: Any = "NetworkPolicy", namespace: str = "prod") -> Policy:
    return Policy(
        name=name,
        namespace=namespace,
        kind=kind,
        selector="app=web",
        tier="default",
        ingress=(PolicyRule("allow", Match("tcp", 8080)), PolicyRule("deny")),
    )


@pytest.mark.parametrize("layout", ("v3.30", "v3.32"))
def test_chain_names_up_to_256_characters_are_not_hashed(layout: str) -> None:
    """A name that fills the 256 limit exactly is kept; one character more is hashed."""
    id_prefix = "default/prod/default." if layout == "v3.30" else "np/prod/"
    fits = "p" * (256 - len("cali-pi-") - len(id_prefix))
    too_long = "q" * (len(fits) + 1)
    model = NodeModel(
        layout,
        (Tier("default", 1000.0),),
        (_long_policy(fits), _long_policy(too_long)),
        (Profile("kns.prod", ingress=(PolicyRule("allow"),), egress=(PolicyRule("allow"),)),),
        (Endpoint("cali0123456789a", "prod", frozenset({"app=web"}), ("kns.prod",)),),
        RenderOptions(flows_per_direction=8, flow_seed=3),
    )
    rename = nft_chain_names(model)
    assert f"cali-pi-{id_prefix}{fits}" in rename.values()
    hashed = length_limited_id("cali-pi-", id_prefix + too_long, 256)
    assert hashed in rename.values() and hashed.startswith("cali-pi-_")
    _check_model(model)
    parsed = parse_node([("nft", to_nft(render(model).text, 4, rename).json)])
    chains = {record.key.chain for record in parsed.records}
    assert f"cali-pi-{id_prefix}{fits}" in chains and hashed in chains
    # The identity comment is longer than felix's share of the 128-character comment: cut, so not used.
    assert all(not r.chain_comment for r in parsed.records if r.key.chain.startswith("cali-pi-"))
    assert IDENTITY_SHARE == 105  # 128 - len("cali:<16>;") - 1 for the space


def _table(rules: list[dict[str, Any]], maps: list[dict[str, Any]] = (), family: str = "ip") -> str:  # type: ignore[assignment]
    chains = sorted({rule["chain"] for rule in rules})
    items: list[dict[str, Any]] = [{"table": {"family": family, "name": "calico", "handle": 1}}]
    items += [
        {"map": {"family": family, "table": "calico", "type": "ifname", "map": "verdict", **m}} for m in maps
    ]
    items += [{"chain": {"family": family, "table": "calico", "name": name}} for name in chains]
    items += [{"rule": {"family": family, "table": "calico", **rule}} for rule in rules]
    return json.dumps({"nftables": items})


MARK = {"meta": {"key": "mark"}}


def _counter(packets: int) -> dict[str, Any]:
    return {"counter": {"packets": packets, "bytes": packets * 60}}


def _endpoint_rules(chain: str, mark: Any = 0x10000) -> list[dict[str, Any]]:
    guard = {"match": {"op": "==", "left": {"&": [MARK, mark]}, "right": mark}}
    return [
        {"chain": chain, "expr": [_counter(9), {"jump": {"target": "filter-cali-pri-kns.prod"}}]},
        {
            "chain": chain,
            "comment": "cali:ret0000000000000; Return if profile accepted",
            "expr": [guard, _counter(7), {"return": None}],
        },
        {
            "chain": chain,
            "comment": "cali:drop000000000000; Drop if no profiles matched",
            "expr": [_counter(2), {"drop": None}],
        },
        {
            "chain": "filter-cali-pri-kns.prod",
            "comment": "cali:p; Profile kns.prod ingress",
            "expr": [_counter(7), {"mangle": {"key": MARK, "value": {"|": [MARK, 0x10000]}}}],
        },
    ]


def test_interface_comes_from_the_dispatch_map() -> None:
    rules = _endpoint_rules("filter-cali-tw-renamed")
    maps = [
        {
            "name": "filter-cali-to-wl-dispatch",
            "elem": [["eni0a1b2c", {"goto": {"target": "filter-cali-tw-renamed"}}]],
        }
    ]
    result = parse_node([("nft", _table(rules, maps))])
    assert {r.key.interface for r in result.records if r.key.interface} == {"eni0a1b2c"}
    accept = next(r for r in result.records if r.key.kind is Kind.PROFILE_ACCEPT)
    assert (accept.packets, accept.bytes, accept.rule_ids) == (7, 420, ("ret0000000000000",))
    assert accept.chain_comment == "Profile kns.prod ingress"
    mismatched = [
        {
            "name": "filter-cali-from-wl-dispatch",
            "elem": [["x", {"goto": {"target": "filter-cali-tw-renamed"}}]],
        }
    ]
    assert parse_node([("nft", _table(rules, mismatched))]).diagnostic_counts() == {"dispatch_mismatch": 1}


def test_marks_given_as_strings_and_ipv6_table() -> None:
    """Marks may come as zero-padded hex strings (as the text form prints them)."""
    result = parse_node(
        [("nft", _table(_endpoint_rules("filter-cali-tw-cali1", "0x00010000"), family="ip6"))]
    )
    accept = next(r for r in result.records if r.key.kind is Kind.PROFILE_ACCEPT)
    assert (accept.key.family, accept.key.direction, accept.packets) == (6, Direction.INGRESS, 7)
    assert result.diagnostics == []


def test_nft_and_iptables_inputs_are_told_apart_by_content() -> None:
    model = _as_saved(build_model(random.Random(5), "v3.30", endpoints=2, policies=3))
    rendered = render(model)
    rename = nft_chain_names(model)
    nft = to_nft(rendered.text, 4, rename)
    mixed = parse_node([("a.save", rendered.text), ("b.save", nft.json)])
    assert len(mixed.records) == 2 * len(rendered.expected)
    assert set(mixed.rules_by_source) == {"a.save", "b.save"}


def test_steady_state_reads_counters_only_when_rules_are_unchanged() -> None:
    model = _as_saved(build_model(random.Random(11), "v3.30", endpoints=3, policies=5))
    rename = nft_chain_names(model)
    first = to_nft(render(model).text, 4, rename).json
    moved_model = model.with_options(flow_seed=99)
    moved = to_nft(render(moved_model).text, 4, rename).json
    steady = SteadyStateParser()
    steady.parse([("nft", first)])
    again = steady.parse([("nft", moved)])
    assert steady.fast_path_reads == 1
    assert _by_key(again.records) == _by_key(parse_node([("nft", moved)]).records)
    assert _counts(again.records) == _counts(nft_records(render(moved_model).expected, rename))


def _mutations(draw: Any, document: Any) -> Any:
    """Replace, delete or retype random nodes of the JSON document."""
    if isinstance(document, dict) and document:
        key = draw(st.sampled_from(sorted(document)))
        action = draw(st.integers(0, 3))
        if action == 0:
            del document[key]
        elif action == 1:
            document[key] = draw(
                st.one_of(
                    st.none(), st.integers(-(2**70), 2**70), st.text(max_size=5), st.just([]), st.just({})
                )
            )
        else:
            document[key] = _mutations(draw, document[key])
        return document
    if isinstance(document, list) and document:
        index = draw(st.integers(0, len(document) - 1))
        if draw(st.booleans()):
            document[index] = _mutations(draw, document[index])
        else:
            document.insert(index, draw(st.one_of(st.none(), st.integers(), st.text(max_size=5))))
        return document
    return draw(st.one_of(st.none(), st.integers(-(2**70), 2**70), st.text(max_size=8), st.booleans()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**16), cut=st.integers(0, 5000))
def test_mutated_json_never_crashes_and_counts_diagnostics(data: Any, seed: int, cut: int) -> None:
    model = _as_saved(build_model(random.Random(seed), "v3.30", endpoints=2, policies=4))
    text = to_nft(render(model).text, 4, nft_chain_names(model)).json
    document = json.loads(text)
    for _ in range(data.draw(st.integers(1, 6))):
        document = _mutations(data.draw, document)
    for candidate in (json.dumps(document), text[:cut]):
        steady = SteadyStateParser()
        for _ in range(2):
            result = steady.parse([("nft", candidate)])
            assert sum(result.diagnostic_counts().values()) == len(result.diagnostics)
            for record in result.records:
                assert record.packets >= 0 and record.bytes >= 0


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nft"


@pytest.mark.parametrize("family", [4, 6])
def test_debians_nft_output_parses_to_the_oracles_records(family: int) -> None:
    """Output Debian's nft printed (tests/fixtures/nft/INDEX.md), parsed without a kernel."""
    options = RenderOptions(flow_logs=True, flows_per_direction=6)
    model = build_model(random.Random(38), "v3.30", endpoints=4, policies=8, options=options)
    model = model.with_options(framing="save", counter_form="prefix", family=family)
    listed = (FIXTURES / f"v3.30-seed38-{'ip' if family == 4 else 'ip6'}.json").read_text()
    assert '"version": "1.0.6"' in listed[:200]
    rendered = render(model)
    parsed = parse_node([("debian-nft", listed)])
    expected = nft_records(rendered.expected, nft_chain_names(model))
    assert _counts(parsed.records) == _counts(expected)
    assert parsed.diagnostic_counts() == dict(rendered.expected_diagnostics)
    kinds = {record.key.kind for record in parsed.records}
    assert Kind.ENDPOINT_ADMIN_DROP in kinds and any(r.group_members for r in parsed.records)


def test_pretty_printed_json_and_other_tables_are_read_without_the_fast_path() -> None:
    """``nft -j list ruleset | jq .``: indented, with a non-Calico table: the same records (only
    the ``calico`` table counts), read afresh every time."""
    model = _as_saved(build_model(random.Random(4), "v3.30", endpoints=2, policies=3))
    text = to_nft(render(model).text, 4, nft_chain_names(model)).json
    document = json.loads(text)
    document["nftables"].insert(2, {"table": {"family": "inet", "name": "kube-proxy", "handle": 9}})
    document["nftables"].append(
        {
            "rule": {
                "family": "inet",
                "table": "kube-proxy",
                "chain": "x",
                "expr": [_counter(3), {"accept": None}],
            }
        }
    )
    pretty = json.dumps(document, indent=2)
    steady = SteadyStateParser()
    for _ in range(2):
        result = steady.parse([("ruleset", pretty)])
        assert _by_key(result.records) == _by_key(parse_node([("t", text)]).records)
        assert result.rules_seen == parse_node([("t", text)]).rules_seen + 1
    assert steady.fast_path_reads == 0 and steady.full_reads == 2
