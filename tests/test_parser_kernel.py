"""The parser against a real kernel: tables iptables itself saved, counters real traffic moved.

Two kinds of test, with the legacy and the nft backend:

* **real traffic** -- a node namespace routes for pod namespaces (veths named like Calico's),
  loaded with a felix-shaped ruleset (:mod:`calico_accountant_cli.lab.calico_rules`): the v3.27
  layout, the v3.30 layout, v3.30 with a policy-group chain, and v3.27 with REJECT.  A known
  number of new TCP connections and pings is sent that an allow policy accepts, that a deny
  policy denies, that no policy matches and that an egress policy denies, over IPv4 and
  IPv6.  Every probe is exactly one new-flow packet (see :mod:`calico_accountant_cli.lab.traffic`),
  so every parsed record -- per endpoint and per policy rule, packets and bytes -- must
  equal what was sent, and there must be no other records.  Then more traffic, and a
  ``SteadyStateParser`` re-read must show exactly the increments.
* **felix_render round trip** -- tables rendered by ``tests/felix_render.py`` with known
  counters are restored with ``iptables-restore -c``, saved back with ``iptables-save -c``
  and parsed: the records must be those of the rendered text, and the counts those the
  renderer expects.  IPv6 with counters goes through ip6tables-legacy (ip6tables-nft-restore
  drops counters); IPv6 through nft is checked without counters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings

from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind
from calico_accountant_cli.lab.calico_rules import (
    LabEndpoint,
    LabPolicy,
    LabPolicyGroup,
    LabRule,
    Layout,
    PolicyEntry,
    group_chain_name,
    policy_chain_name,
    profile_chain_name,
)
from calico_accountant_cli.lab.calico_rules import render_filter_table as render_lab_table
from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools, restore, save
from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
from calico_accountant_cli.lab.topology import Node, Pod, PodSpec, build_node
from calico_accountant_cli.lab.traffic import (
    connect,
    guard_counts,
    ping,
    prepare_pods,
    start_listener,
)
from tests.support.felix_render import (
    NodeModel,
    RenderedTable,
    node_models,
    render,
    render_restore,
    sized_model,
)
from tests.support.skips import requires_kernel

pytestmark = [pytest.mark.kernel, requires_kernel("ip", *missing_backend_tools())]

INGRESS, EGRESS = Direction.INGRESS, Direction.EGRESS
WEB_PORT, REFUSED_PORT, ADMIN_PORT, UNMATCHED_PORT, EGRESS_DENIED_PORT = 8080, 8090, 8081, 8082, 9090

ALLOW_WEB = LabPolicy(
    "shop",
    "allow-web",
    ingress=(
        LabRule("allow", "tcp", WEB_PORT),
        LabRule("allow", "tcp", REFUSED_PORT),
        LabRule("allow", "icmp"),
    ),
)
DENY_ADMIN = LabPolicy("shop", "deny-admin", ingress=(LabRule("deny", "tcp", ADMIN_PORT),))
CLIENT_EGRESS = LabPolicy(
    "shop", "client-egress", egress=(LabRule("deny", "tcp", EGRESS_DENIED_PORT), LabRule("allow"))
)
PROFILE = "kns.shop"
SERVER_GROUP = LabPolicyGroup("app == 'server'", (ALLOW_WEB, DENY_ADMIN))


@dataclass(frozen=True)
class Scenario:
    layout: Layout
    grouped: bool = False
    """The server's two ingress policies share a ``cali-gi-`` group chain (v3.28+)."""
    reject: bool = False
    """FilterDenyAction=REJECT: the node answers denied attempts with an ICMP error."""

    @property
    def name(self) -> str:
        return self.layout.value + ("-group" if self.grouped else "") + ("-reject" if self.reject else "")


SCENARIOS = [
    Scenario(Layout.V3_27),
    Scenario(Layout.V3_30),
    Scenario(Layout.V3_30, grouped=True),
    Scenario(Layout.V3_27, reject=True),
]


@dataclass(frozen=True)
class Plan:
    """How many probes of each kind to send in one family (different per family on purpose)."""

    web: int  # client -> server:8080, listener: allowed, connected
    refused: int  # client -> server:8090, no listener: allowed, refused by the server's kernel
    admin: int  # client -> server:8081: denied by deny-admin
    unmatched: int  # client -> server:8082: no policy matches, tier drop
    pings: int  # client -> server echo: allowed by allow-web's icmp rule
    egress_denied: int  # client -> server:9090: denied by client-egress, never reaches server
    other_web: int  # other -> server:8080 (other has no policies: its profile accepts)
    other_admin: int  # other -> server:8081


PLANS = {4: Plan(3, 2, 4, 5, 2, 3, 1, 2), 6: Plan(2, 1, 3, 1, 1, 2, 2, 1)}
SECOND_ROUND = Plan(
    web=1, refused=0, admin=2, unmatched=1, pings=0, egress_denied=1, other_web=0, other_admin=1
)


@pytest.fixture
def lab() -> Iterator[LabNetwork]:
    with LabNetwork() as network:
        yield network
    assert not [name for name in list_namespaces(network.prefix)], "lab namespaces left behind"


def _endpoints(node: Node, grouped: bool) -> list[LabEndpoint]:
    client, server, other = node.pods
    server_policies: tuple[PolicyEntry, ...] = (SERVER_GROUP,) if grouped else (ALLOW_WEB, DENY_ADMIN)
    return [
        LabEndpoint(client.interface, egress_policies=(CLIENT_EGRESS,), profiles=(PROFILE,)),
        LabEndpoint(server.interface, ingress_policies=server_policies, profiles=(PROFILE,)),
        LabEndpoint(other.interface, profiles=(PROFILE,)),
    ]


def _send(lab: LabNetwork, node: Node, family: int, plan: Plan, reject: bool) -> None:
    """Send ``plan`` and check every probe behaved as designed (so the counts below are what was sent)."""
    client, server, other = node.pods
    dest = server.ipv4 if family == 4 else server.ipv6

    def denied(source: Pod, port: int, count: int) -> None:
        result = connect(source, dest, port, count, timeout=0.3)
        if reject:
            # The node's ICMP error often arrives while connect() still holds the socket
            # lock, and Linux then drops it (TcpExtLockDroppedIcmps): refused or timed out.
            assert result.refused + result.timed_out == count and result.connected == 0
        else:
            assert result.timed_out == count

    listener = start_listener(lab, server, [WEB_PORT], family=family)
    try:
        assert connect(client, dest, WEB_PORT, plan.web).connected == plan.web
        assert connect(client, dest, REFUSED_PORT, plan.refused).refused == plan.refused
        denied(client, ADMIN_PORT, plan.admin)
        denied(client, UNMATCHED_PORT, plan.unmatched)
        assert ping(client, dest, plan.pings).answered == plan.pings
        denied(client, EGRESS_DENIED_PORT, plan.egress_denied)
        assert connect(other, dest, WEB_PORT, plan.other_web).connected == plan.other_web
        denied(other, ADMIN_PORT, plan.other_admin)
    finally:
        listener.stop()


def _expected(
    node: Node, scenario: Scenario, family: int, plan: Plan, syn: int, echo: int
) -> dict[CounterKey, tuple[int, int]]:
    """Every record the parser must produce for one family, as (packets, bytes)."""
    layout = scenario.layout
    client, server, other = node.pods
    pi_allow = policy_chain_name(ALLOW_WEB, "ingress", layout)
    pi_deny = policy_chain_name(DENY_ADMIN, "ingress", layout)
    po_client = policy_chain_name(CLIENT_EGRESS, "egress", layout)
    pri, pro = profile_chain_name(PROFILE, "ingress"), profile_chain_name(PROFILE, "egress")

    def tcp(attempts: int) -> tuple[int, int]:
        return attempts, attempts * syn  # one SYN per attempt

    p = plan
    accepted_by_client_egress = p.web + p.refused + p.admin + p.unmatched
    expected = {
        # server ingress: allow-web accepts web, refused, pings (client) and other's web
        CounterKey(Kind.POLICY_ACCEPT, family, INGRESS, server.interface, pi_allow, "default"): (
            p.web + p.refused + p.other_web + p.pings,
            (p.web + p.refused + p.other_web) * syn + p.pings * echo,
        ),
        CounterKey(Kind.POLICY_DENY, family, INGRESS, server.interface, pi_allow, "default"): (0, 0),
        CounterKey(Kind.POLICY_ACCEPT, family, INGRESS, server.interface, pi_deny, "default"): (0, 0),
        CounterKey(Kind.POLICY_DENY, family, INGRESS, server.interface, pi_deny, "default"): tcp(
            p.admin + p.other_admin
        ),
        CounterKey(Kind.NO_POLICY_DROP, family, INGRESS, server.interface, "", "default"): tcp(p.unmatched),
        # client egress: client-egress denies 9090 and accepts the rest
        CounterKey(Kind.POLICY_ACCEPT, family, EGRESS, client.interface, po_client, "default"): (
            accepted_by_client_egress + p.pings,
            accepted_by_client_egress * syn + p.pings * echo,
        ),
        CounterKey(Kind.POLICY_DENY, family, EGRESS, client.interface, po_client, "default"): tcp(
            p.egress_denied
        ),
        CounterKey(Kind.NO_POLICY_DROP, family, EGRESS, client.interface, "", "default"): (0, 0),
        # other has no egress policy: its profile accepts its flows
        CounterKey(Kind.PROFILE_ACCEPT, family, EGRESS, other.interface, pro, ""): tcp(
            p.other_web + p.other_admin
        ),
        # policy rules, node-wide
        CounterKey(Kind.POLICY_RULE, family, INGRESS, "", pi_allow, "default", 0, "allow"): tcp(
            p.web + p.other_web
        ),
        CounterKey(Kind.POLICY_RULE, family, INGRESS, "", pi_allow, "default", 1, "allow"): tcp(p.refused),
        CounterKey(Kind.POLICY_RULE, family, INGRESS, "", pi_allow, "default", 2, "allow"): (
            p.pings,
            p.pings * echo,
        ),
        CounterKey(Kind.POLICY_RULE, family, INGRESS, "", pi_deny, "default", 0, "deny"): tcp(
            p.admin + p.other_admin
        ),
        CounterKey(Kind.POLICY_RULE, family, EGRESS, "", po_client, "default", 0, "deny"): tcp(
            p.egress_denied
        ),
        CounterKey(Kind.POLICY_RULE, family, EGRESS, "", po_client, "default", 1, "allow"): (
            accepted_by_client_egress + p.pings,
            accepted_by_client_egress * syn + p.pings * echo,
        ),
    }
    if scenario.grouped:
        # One accept/deny pair for the group chain instead of one per policy; same totals.
        group = group_chain_name(SERVER_GROUP, "ingress", layout)
        for kind in (Kind.POLICY_ACCEPT, Kind.POLICY_DENY):
            by_policy = [
                expected.pop(CounterKey(kind, family, INGRESS, server.interface, chain, "default"))
                for chain in (pi_allow, pi_deny)
            ]
            expected[CounterKey(kind, family, INGRESS, server.interface, group, "default")] = (
                sum(packets for packets, _ in by_policy),
                sum(nbytes for _, nbytes in by_policy),
            )
    # Every endpoint and direction has its profile records; untouched ones stay at zero.
    for pod in node.pods:
        for direction, chain in ((INGRESS, pri), (EGRESS, pro)):
            expected.setdefault(
                CounterKey(Kind.PROFILE_ACCEPT, family, direction, pod.interface, chain, ""), (0, 0)
            )
            expected[CounterKey(Kind.NO_PROFILE_DROP, family, direction, pod.interface, "", "")] = (0, 0)
    return expected


def _by_key(records: list[CounterRecord]) -> dict[CounterKey, tuple[int, int]]:
    result: dict[CounterKey, tuple[int, int]] = {}
    for record in records:
        assert record.key not in result, f"duplicate record {record.key}"
        result[record.key] = (record.packets, record.bytes)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(Backend), ids=lambda b: b.value)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_real_traffic_counts_match_what_was_sent(
    lab: LabNetwork, scenario: Scenario, backend: Backend
) -> None:
    from node_agent.parsing import SteadyStateParser, parse_node

    layout = scenario.layout
    node = build_node(lab, [PodSpec("client", "shop"), PodSpec("server", "shop"), PodSpec("other", "shop")])
    prepare_pods(node, backend)
    endpoints = _endpoints(node, scenario.grouped)
    for family in (4, 6):
        # Zero counters to start with, so no -c: that keeps ip6tables-nft-restore on the nft backend.
        loaded = restore(
            node.netns,
            render_lab_table(
                endpoints, layout, family=family, deny_action="REJECT" if scenario.reject else "DROP"
            ),
            family=family,
            backend=backend,
            counters=False,
        )
        assert loaded.backend is backend
    for family in (4, 6):
        _send(lab, node, family, PLANS[family], scenario.reject)

    dumps = [(f"ipv{family}", save(node.netns, family=family, backend=backend)) for family in (4, 6)]
    assert all(f"-A cali-tw-{node.pods[1].interface}" in text for _, text in dumps)
    result = parse_node(dumps)
    assert result.diagnostics == []

    expected: dict[CounterKey, tuple[int, int]] = {}
    for family in (4, 6):
        client, _, other = node.pods
        sent = [guard_counts(pod.netns, backend, family) for pod in (client, other)]
        plan = PLANS[family]
        attempts = plan.web + plan.refused + plan.admin + plan.unmatched + plan.egress_denied
        assert sent[0].first_syns == attempts and sent[1].first_syns == plan.other_web + plan.other_admin
        assert sent[0].echo_requests == plan.pings
        syn = sent[0].first_syn_bytes // attempts
        assert (
            syn * attempts == sent[0].first_syn_bytes and syn == sent[1].first_syn_bytes // sent[1].first_syns
        )
        echo = sent[0].echo_request_bytes // plan.pings
        expected.update(_expected(node, scenario, family, plan, syn, echo))
        if family == 4:
            syn_v4 = syn

    assert _by_key(result.records) == expected
    comments = {record.key.chain: record.chain_comment for record in result.records if record.key.chain}
    assert (
        comments[policy_chain_name(DENY_ADMIN, "ingress", layout)] == "Policy shop/default.deny-admin ingress"
    )
    assert comments[profile_chain_name(PROFILE, "egress")] == "Profile kns.shop egress"
    assert all(record.rule_ids for record in result.records)
    if scenario.grouped:
        members = {r.group_members for r in result.records if r.key.chain.startswith("cali-gi-")}
        assert members == {
            (
                policy_chain_name(ALLOW_WEB, "ingress", layout),
                policy_chain_name(DENY_ADMIN, "ingress", layout),
            )
        }

    # The agent's way: a steady-state parser re-reads the node after more traffic.  Its
    # result is a fresh parse's, and every count grew by exactly what the second round sent.
    steady = SteadyStateParser()
    assert _by_key(steady.parse(dumps).records) == expected
    _send(lab, node, 4, SECOND_ROUND, scenario.reject)
    second_dumps = [(f"ipv{family}", save(node.netns, family=family, backend=backend)) for family in (4, 6)]
    second = steady.parse(second_dumps)
    assert _by_key(second.records) == _by_key(parse_node(second_dumps).records)
    # No rule changed: both tables were re-read on the fast path, although iptables-save
    # printed new times in its comments and new built-in policy counters.
    assert steady.fast_path_reads == 2, (steady.fast_path_reads, steady.full_reads)
    grown = {
        key: (packets - expected[key][0], nbytes - expected[key][1])
        for key, (packets, nbytes) in _by_key(second.records).items()
    }
    increments = _expected(node, scenario, 4, SECOND_ROUND, syn_v4, 0)  # IPv4 only: IPv6 stays put
    assert grown == {key: increments.get(key, (0, 0)) for key in expected}


# --------------------------------------------------------------------------------------
# felix_render tables through a real kernel
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_namespaces() -> Iterator[dict[Backend, str]]:
    """One namespace per backend, shared by the round-trip tests (each restore replaces the table)."""
    with LabNetwork() as network:
        yield {backend: network.namespace(f"rt-{backend.value}") for backend in Backend}
    assert not list_namespaces(network.prefix), "lab namespaces left behind"


def _round_trip(namespace: str, text: str, family: int, backend: Backend, counters: bool = True) -> str:
    """Restore ``text``, then save it with the backend that actually holds it."""
    loaded = restore(namespace, text, family=family, backend=backend, counters=counters)
    return save(namespace, family=family, backend=loaded.backend)


def _record_map(records: list[CounterRecord]) -> dict[CounterKey, CounterRecord]:
    result: dict[CounterKey, CounterRecord] = {}
    for record in records:
        assert record.key not in result, f"duplicate record {record.key}"
        result[record.key] = record
    return result


def _assert_parsed_like_rendered(saved: str, rendered: RenderedTable) -> None:
    """What the kernel printed parses exactly like what was loaded, and like the oracle says.

    The first comparison isolates the kernel round trip (rule order, quoting, headers may
    change; records and diagnostic codes must not); the second checks the counts against
    the oracle.
    """
    from node_agent.parsing import parse_node

    through_kernel = parse_node([("kernel", saved)])
    as_rendered = parse_node([("rendered", rendered.text)])
    assert _record_map(through_kernel.records) == _record_map(as_rendered.records)
    assert through_kernel.diagnostic_counts() == as_rendered.diagnostic_counts()
    assert through_kernel.rules_seen == rendered.rule_lines
    assert _counts(through_kernel.records) == _counts(rendered.expected)
    assert through_kernel.diagnostic_counts() == dict(rendered.expected_diagnostics)


def _counts(records: list[CounterRecord]) -> dict[CounterKey, tuple[int, int]]:
    """The counts only: which rule's hash a record cites is the parser tests' business."""
    return {key: (record.packets, record.bytes) for key, record in _record_map(records).items()}


_KERNEL_SETTINGS = settings(
    max_examples=int(os.environ.get("KERNEL_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("backend", list(Backend), ids=lambda b: b.value)
@_KERNEL_SETTINGS
@given(model=node_models(family=4))
def test_rendered_ipv4_tables_survive_the_kernel(
    kernel_namespaces: dict[Backend, str], backend: Backend, model: NodeModel
) -> None:
    rendered = render_restore(model)
    saved = _round_trip(kernel_namespaces[backend], rendered.text, 4, backend)
    assert saved.startswith(f"# Generated by iptables-{'nft-' if backend is Backend.NFT else ''}save")
    _assert_parsed_like_rendered(saved, rendered)


@_KERNEL_SETTINGS
@given(model=node_models(family=6))
def test_rendered_ipv6_tables_with_counters_survive_the_kernel(
    kernel_namespaces: dict[Backend, str], model: NodeModel
) -> None:
    """IPv6 with counters goes through ip6tables-legacy-restore -c (the nft one drops counters)."""
    rendered = render_restore(model)
    saved = _round_trip(kernel_namespaces[Backend.LEGACY], rendered.text, 6, Backend.NFT)
    assert saved.startswith("# Generated by ip6tables-save")
    _assert_parsed_like_rendered(saved, rendered)


@_KERNEL_SETTINGS
@given(model=node_models(family=6))
def test_rendered_ipv6_tables_through_nft_without_counters(
    kernel_namespaces: dict[Backend, str], model: NodeModel
) -> None:
    """ip6tables-nft-save output parses too; restored without counters, every record is 0."""
    rendered = render(model.with_options(framing="save", counter_form="none", other_tables=False))
    saved = _round_trip(kernel_namespaces[Backend.NFT], rendered.text, 6, Backend.NFT, counters=False)
    assert saved.startswith("# Generated by ip6tables-nft-save")
    _assert_parsed_like_rendered(saved, rendered)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "backend"),
    [(4, Backend.LEGACY), (4, Backend.NFT), (6, Backend.LEGACY)],
    ids=["ipv4-legacy", "ipv4-nft", "ipv6-legacy"],
)
@pytest.mark.parametrize("layout", ["v3.27", "v3.30"])
def test_a_110_pod_node_survives_the_kernel(
    kernel_namespaces: dict[Backend, str], family: int, backend: Backend, layout: str
) -> None:
    model = sized_model(110, 6, layout=layout, seed=7).with_options(family=family)
    rendered = render_restore(model)
    saved = _round_trip(kernel_namespaces[backend], rendered.text, family, backend)
    assert saved.count("\n[") == rendered.rule_lines
    _assert_parsed_like_rendered(saved, rendered)


def test_legacy_and_nft_tables_side_by_side(lab: LabNetwork) -> None:
    """A node can hold both backends' tables at once (felix uses one, kube-proxy may use the
    other): each save prints only its own table, and each parses to its own records."""
    namespace = lab.namespace("both")
    tables = {
        Backend.LEGACY: render_restore(sized_model(3, 2, layout="v3.27", seed=1)),
        Backend.NFT: render_restore(sized_model(4, 3, layout="v3.30", seed=2)),
    }
    for backend, rendered in tables.items():
        restore(namespace, rendered.text, family=4, backend=backend)
    for backend, rendered in tables.items():
        saved = save(namespace, family=4, backend=backend)
        assert saved.count("\n[") == rendered.rule_lines
        _assert_parsed_like_rendered(saved, rendered)
