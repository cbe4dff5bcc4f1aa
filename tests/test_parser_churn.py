"""A read after chains came, went or were rewritten (churn) is re-parsed from the previous
read (``node_agent.columnar.incremental``): its result must be exactly the cold parse's.

Exactly: the same records in the same order, the same diagnostics in the same order, the
same rule and line counts, whatever changed (a pod's chains gone or new, an endpoint's
chains rewritten, a policy chain rewritten) and however the table is printed.  The reads
after it (the fast path, from the re-parse's template) must agree too.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from calico_accountant.records import ParseResult
from node_agent.columnar import parse_columnar
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import LAYOUTS, NodeModel, node_models, render, sized_model

CHURN_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_identical(got: ParseResult, want: ParseResult) -> None:
    """Records and diagnostics equal as lists (order included), and the counts."""
    assert got.records == want.records
    assert got.diagnostics == want.diagnostics
    assert (got.rules_seen, got.lines_seen) == (want.rules_seen, want.lines_seen)


def _rewritten_policy(text: str, rng: random.Random) -> str:
    """One policy chain's rule rewritten (its rule id changed), as felix rewrites a rule."""
    rules = re.findall(r'^\[\d+:\d+\] -A cali-p[io]-\S+ .*?"cali:([^"]+)"', text, re.MULTILINE)
    if not rules:
        return text
    rule = rng.choice(rules)
    return text.replace(f'"cali:{rule}"', f'"cali:{rule[::-1]}x"', 1)


def _churned(model: NodeModel, kind: str, rng: random.Random) -> tuple[NodeModel, NodeModel]:
    """(before, after) for one kind of churn."""
    endpoints = list(model.endpoints)
    if kind == "pod gone" and endpoints:
        del endpoints[rng.randrange(len(endpoints))]
        return model, replace(model, endpoints=tuple(endpoints))
    if kind == "pod new" and endpoints:
        del endpoints[rng.randrange(len(endpoints))]
        return replace(model, endpoints=tuple(endpoints)), model
    if kind == "endpoint rewritten" and endpoints:
        index = rng.randrange(len(endpoints))
        endpoint = endpoints[index]
        endpoints[index] = replace(
            endpoint, profiles=endpoint.profiles[1:] or endpoint.profiles + endpoint.profiles
        )
        return model, replace(model, endpoints=tuple(endpoints))
    return model, model


@CHURN_SETTINGS
@given(data=st.data())
def test_a_read_after_churn_is_exactly_the_cold_parse(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save")], max_endpoints=6))
    kind = data.draw(st.sampled_from(("pod gone", "pod new", "endpoint rewritten", "policy rewritten")))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    before, after = _churned(model, kind, rng)
    parser = SteadyStateParser()
    first = render(before).text
    assert_identical(parser.parse([("node", first)]), parse_node([("node", first)]))
    assert_identical(parser.parse([("node", first)]), parse_node([("node", first)]))
    changed_before = parser.changed_reads
    policy_rng = random.Random(rng.random())
    for step in range(3):  # the churn read, then two reads with other counters
        text = render(after.with_options(flow_seed=after.options.flow_seed + step)).text
        if kind == "policy rewritten":
            text = _rewritten_policy(text, random.Random(policy_rng.random() if step == 0 else 0))
        assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
    columnar = parse_columnar(first, "node", None) is not None
    event(
        f"{kind}: re-parsed"
        if parser.changed_reads > changed_before
        else f"{kind}: parsed whole" + ("" if columnar else " (no columnar parse)")
    )


def _without(text: str, interface: str) -> str:
    """Every line naming ``interface`` left out: the pod's chains, their declarations and
    the dispatch rules to them (what felix's table looks like once the pod is gone)."""
    return "\n".join(line for line in text.split("\n") if interface not in line)


def test_a_pod_gone_and_back_is_re_parsed_not_parsed_whole() -> None:
    """The common case on a busy node: one pod's chains go, then come back; both reads are
    re-parsed (not cold parses), and give the cold parse's result."""
    model = sized_model(40, 6, seed=3)
    text = render(model).text
    interface = model.endpoints[len(model.endpoints) // 2].interface
    parser = SteadyStateParser()
    parser.parse([("node", text)])
    for step, table in enumerate((_without(text, interface), text)):
        assert_identical(parser.parse([("node", table)]), parse_node([("node", table)]))
        assert parser.changed_reads == step + 1
        assert parser.full_reads == 1
    assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
    assert parser.fast_path_reads == 1


def test_a_rewritten_policy_chain_re_plans_the_endpoints_that_jump_to_it() -> None:
    """A policy chain's rules rewritten (a rule id changed): the policy's own records and
    those of every endpoint chain that jumps to it follow the new text."""
    model = sized_model(30, 4, seed=5)
    text = render(model).text
    chain = re.search(r"^:(cali-pi-\S+) ", text, re.MULTILINE)
    assert chain is not None
    rule = re.search(rf'^\[\d+:\d+\] -A {re.escape(chain[1])} .*"cali:([^"]+)"', text, re.MULTILINE)
    assert rule is not None
    rewritten = text.replace(f'"cali:{rule[1]}"', f'"cali:{rule[1][::-1]}"')
    assert rewritten != text
    parser = SteadyStateParser()
    parser.parse([("node", text)])
    result = parser.parse([("node", rewritten)])
    assert parser.changed_reads == 1
    assert_identical(result, parse_node([("node", rewritten)]))
    assert any(rule[1][::-1] in record.rule_ids for record in result.records)


def _edited(text: str, rng: random.Random) -> str:
    """One rule line of any chain dropped, duplicated, moved to the end of the table's rules
    or given another rule id: churn the renderer does not draw (dispatch chains, kube-proxy's
    chains, odd orders)."""
    lines = text.split("\n")
    rules = [index for index, line in enumerate(lines) if line.startswith("[")]
    if not rules:
        return text
    index = rng.choice(rules)
    line = lines[index]
    edit = rng.randrange(4)
    if edit == 0:
        del lines[index]
    elif edit == 1:
        lines.insert(index, line)
    elif edit == 2:
        del lines[index]
        lines.insert(rules[-1], line)
    else:
        lines[index] = line.replace('"cali:', '"cali:Y', 1)
    return "\n".join(lines)


@CHURN_SETTINGS
@given(data=st.data())
def test_a_read_after_any_rule_line_edit_is_exactly_the_cold_parse(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save")]))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    parser = SteadyStateParser()
    text = render(model).text
    assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
    for _ in range(3):
        text = _edited(text, rng)
        assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
