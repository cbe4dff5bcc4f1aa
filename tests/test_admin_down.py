"""Admin-down endpoints, in both dataplanes: felix renders the endpoint's chains as the one
rule ``Endpoint admin disabled`` (DROP); the agent reports what it dropped as
``endpoint_admin_drop`` per interface and direction, and the aggregator exports it per workload."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from aggregator.accountant import Accountant
from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind, Verdict, verdict_of
from calico_accountant.wire.counters import counter_to_record, record_to_counter
from node_agent.parsing import parse_node
from tests.support.accounting import FakeCatalog, snapshot
from tests.support.felix_nft import nft_records, to_nft
from tests.support.felix_render import NodeModel, build_model, nft_chain_names, render
from tests.test_series import by_name, one


def _model(layout: str, family: int) -> NodeModel:
    model = build_model(random.Random(21), layout, endpoints=3, policies=5)
    endpoints = list(model.endpoints)
    endpoints[1] = replace(endpoints[1], admin_down=True)
    return replace(model, endpoints=tuple(endpoints)).with_options(
        framing="save", counter_form="prefix", family=family, flows_per_direction=5
    )


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("layout", ["v3.0", "v3.28", "v3.30", "v3.32"])
def test_admin_down_endpoints_are_their_own_records(layout: str, family: int) -> None:
    model = _model(layout, family)
    rendered = render(model)
    down = model.endpoints[1].interface
    assert "Endpoint admin disabled" in rendered.text
    expected = {r.key: (r.packets, r.bytes, r.rule_ids) for r in rendered.expected}
    for columnar in (True, False):  # the cold fast path and the general path agree
        parsed = parse_node([("t", rendered.text)], columnar=columnar)
        assert {r.key: (r.packets, r.bytes, r.rule_ids) for r in parsed.records} == expected
    admin = [key for key in expected if key.kind is Kind.ENDPOINT_ADMIN_DROP]
    assert {(key.interface, key.direction) for key in admin} == {
        (down, Direction.INGRESS),
        (down, Direction.EGRESS),
    }
    assert sum(expected[key][0] for key in admin) > 0
    assert not [key for key in expected if key.interface == down and key.kind is not Kind.ENDPOINT_ADMIN_DROP]
    if layout >= "v3.30":  # and in felix's nftables mode
        names = nft_chain_names(model)
        nft = parse_node([("nft", to_nft(rendered.text, family, names).json)])
        assert {r.key: (r.packets, r.bytes) for r in nft.records} == {
            r.key: (r.packets, r.bytes) for r in nft_records(rendered.expected, names)
        }


def test_admin_drop_on_the_wire_and_in_the_workload_series() -> None:
    key = CounterKey(Kind.ENDPOINT_ADMIN_DROP, 4, Direction.INGRESS, "cali1")
    record = CounterRecord(key, 5, 500, ("adm",))
    assert verdict_of(key) is Verdict.DENY
    assert counter_to_record(record_to_counter(record)) == record
    acct = Accountant(FakeCatalog())
    acct.apply(snapshot("n1", [record]), 0)
    labels, values = one(by_name(acct.view(0))["calico_accountant_workload_admin_down_drop_packets_total"])
    assert values == (5, 500)
    assert (labels["direction"], labels["node"], labels["pod"]) == ("ingress", "n1", "cali1")
