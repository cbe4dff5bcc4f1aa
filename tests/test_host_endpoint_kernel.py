"""Host endpoints against a real kernel, in both dataplanes: real traffic to and from the node.

A node namespace and a peer namespace joined by a veth; the node-side end is the host
endpoint's interface.  The node is loaded with felix's host endpoint chains
(:mod:`calico_accountant_cli.lab.host_endpoints`: ``INPUT -> cali-INPUT ->
cali-from-host-endpoint -> cali-fh-<if>``, ``OUTPUT -> ... cali-th-<if>``, failsafe
chains) through ``iptables-legacy-restore``, or as ``table ip calico`` through ``nft -f``.
The peer opens connections to the node that an ingress policy allows, pings that
another denies, connections no policy matches and connections to a failsafe port; the
node pings the peer and opens connections an egress policy allows or no policy matches.
Every host endpoint record the parser reads must equal what was sent, per policy and per
rule, and the failsafe connections must appear in no record (failsafe is not policy).

Forwarded traffic: a second peer behind the same node; the host endpoint on the first
peer's interface has ``applyOnForward`` ingress policies, so what the first peer sends
through the node to the second is judged in ``cali-fhfw-<if>`` (reached from
``FORWARD -> cali-FORWARD -> cali-from-hep-forward``), and counted as ``host_forward``;
IPv4 and IPv6.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from calico_accountant.records import CounterKey, CounterRecord, Direction, EndpointKind, Kind
from calico_accountant_cli.lab.calico_rules import LabPolicy, LabRule, Layout, policy_chain_name
from calico_accountant_cli.lab.host_endpoints import LabHostEndpoint, render_host_filter_table
from calico_accountant_cli.lab.iptables import Backend, append_rules, missing_backend_tools, restore, save
from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
from calico_accountant_cli.lab.nft_rules import to_nft
from calico_accountant_cli.lab.nftables import list_table, load_table
from calico_accountant_cli.lab.topology import GATEWAY_V4, GATEWAY_V6, Pod, PodSpec, build_node
from calico_accountant_cli.lab.traffic import connect, guard_counts, ping, prepare_pods, start_listener
from tests.support.skips import requires_kernel

pytestmark = [pytest.mark.kernel, requires_kernel("ip", "nft", *missing_backend_tools((Backend.LEGACY,)))]

WEB, UNMATCHED, FAILSAFE, PEER_WEB, PEER_UNMATCHED = 8080, 9999, 22, 7070, 7071
ALLOW_WEB = LabPolicy("hosts", "allow-web", ingress=(LabRule("allow", "tcp", WEB),))
DENY_PING = LabPolicy("hosts", "deny-ping", ingress=(LabRule("deny", "icmp"),))
ALLOW_OUT = LabPolicy(
    "hosts", "allow-out", egress=(LabRule("allow", "icmp"), LabRule("allow", "tcp", PEER_WEB))
)
SENT = {
    "web": 4,
    "pings": 3,
    "unmatched": 2,
    "failsafe": 2,
    "node_pings": 5,
    "node_web": 3,
    "node_unmatched": 2,
}
_ECHO_OUT = "lab: node echo out"
_SYN_OUT = "lab: node syn out"


@pytest.fixture
def lab() -> Iterator[LabNetwork]:
    with LabNetwork() as network:
        yield network
    assert not list_namespaces(network.prefix), "lab namespaces left behind"


def _node_counts(netns: str, interface: str) -> dict[str, tuple[int, int]]:
    """The node's outgoing echo requests and SYNs on the host endpoint interface, counted in
    the (legacy) raw table, which sees them before any filter chain."""
    counts: dict[str, tuple[int, int]] = {}
    for line in save(netns, table="raw").splitlines():
        for comment in (_ECHO_OUT, _SYN_OUT):
            if f'"{comment}"' in line:
                packets, octets = line[1 : line.index("]")].split(":")
                counts[comment] = (int(packets), int(octets))
    return counts


def _send(lab: LabNetwork, node: Pod, peer: Pod) -> None:
    listeners = [start_listener(lab, node, [WEB, FAILSAFE]), start_listener(lab, peer, [PEER_WEB])]
    try:
        assert connect(peer, GATEWAY_V4, WEB, SENT["web"]).connected == SENT["web"]
        assert connect(peer, GATEWAY_V4, FAILSAFE, SENT["failsafe"]).connected == SENT["failsafe"]
        assert (
            connect(peer, GATEWAY_V4, UNMATCHED, SENT["unmatched"], timeout=0.3).timed_out
            == SENT["unmatched"]
        )
        assert ping(peer, GATEWAY_V4, SENT["pings"], timeout=0.3).answered == 0
        assert ping(node, peer.ipv4, SENT["node_pings"]).answered == SENT["node_pings"]
        assert connect(node, peer.ipv4, PEER_WEB, SENT["node_web"]).connected == SENT["node_web"]
        unmatched = connect(node, peer.ipv4, PEER_UNMATCHED, SENT["node_unmatched"], timeout=0.3)
        assert unmatched.connected == 0
    finally:
        for listener in listeners:
            listener.stop()


def _expected(
    interface: str, syn: int, echo: int, node_echo: tuple[int, int], node_syn: int
) -> dict[CounterKey, tuple[int, int]]:
    host, ingress, egress = EndpointKind.HOST, Direction.INGRESS, Direction.EGRESS
    pi_web = policy_chain_name(ALLOW_WEB, "ingress", Layout.V3_30)
    pi_ping = policy_chain_name(DENY_PING, "ingress", Layout.V3_30)
    po_out = policy_chain_name(ALLOW_OUT, "egress", Layout.V3_30)
    web, pings, unmatched = SENT["web"], SENT["pings"], SENT["unmatched"]
    node_web, node_unmatched = SENT["node_web"], SENT["node_unmatched"]
    out_accepted = (node_echo[0] + node_web, node_echo[1] + node_web * node_syn)

    def key(kind: Kind, direction: Direction, chain: str = "", tier: str = "default") -> CounterKey:
        return CounterKey(kind, 4, direction, interface, chain, tier, endpoint=host)

    def rule(chain: str, direction: Direction, index: int, action: str) -> CounterKey:
        return CounterKey(Kind.POLICY_RULE, 4, direction, "", chain, "default", index, action)

    return {
        key(Kind.POLICY_ACCEPT, ingress, pi_web): (web, web * syn),
        key(Kind.POLICY_DENY, ingress, pi_web): (0, 0),
        key(Kind.POLICY_ACCEPT, ingress, pi_ping): (0, 0),
        key(Kind.POLICY_DENY, ingress, pi_ping): (pings, pings * echo),
        key(Kind.NO_POLICY_DROP, ingress): (unmatched, unmatched * syn),
        key(Kind.NO_PROFILE_DROP, ingress, tier=""): (0, 0),
        key(Kind.POLICY_ACCEPT, egress, po_out): out_accepted,
        key(Kind.POLICY_DENY, egress, po_out): (0, 0),
        key(Kind.NO_POLICY_DROP, egress): (node_unmatched, node_unmatched * node_syn),
        key(Kind.NO_PROFILE_DROP, egress, tier=""): (0, 0),
        rule(pi_web, ingress, 0, "allow"): (web, web * syn),
        rule(pi_ping, ingress, 0, "deny"): (pings, pings * echo),
        rule(po_out, egress, 0, "allow"): node_echo,
        rule(po_out, egress, 1, "allow"): (node_web, node_web * node_syn),
    }


def _by_key(records: list[CounterRecord]) -> dict[CounterKey, tuple[int, int]]:
    found: dict[CounterKey, tuple[int, int]] = {}
    for record in records:
        assert record.key not in found, f"duplicate record {record.key}"
        found[record.key] = (record.packets, record.bytes)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("dataplane", ["iptables", "nftables"])
def test_host_endpoint_counts_match_what_was_sent(lab: LabNetwork, dataplane: str) -> None:
    from node_agent.parsing import parse_node

    built = build_node(lab, [PodSpec("peer", "hosts", interface_prefix="hep")])
    peer = built.pods[0]
    node = Pod("node", "", built.netns, "", GATEWAY_V4, GATEWAY_V6)
    prepare_pods(built, Backend.LEGACY)
    endpoint = LabHostEndpoint(
        peer.interface, ingress_policies=(ALLOW_WEB, DENY_PING), egress_policies=(ALLOW_OUT,)
    )
    text = render_host_filter_table([endpoint])
    for comment, match in ((_ECHO_OUT, "-p icmp --icmp-type echo-request"), (_SYN_OUT, "-p tcp --syn")):
        rule = f'-t raw -A OUTPUT -o {peer.interface} {match} -m comment --comment "{comment}"'
        append_rules(built.netns, [shlex.split(rule)], family=4, backend=Backend.LEGACY)
    if dataplane == "iptables":
        restore(built.netns, text, family=4, backend=Backend.LEGACY)
    else:
        load_table(built.netns, 4, to_nft(text, 4).script)

    _send(lab, node, peer)

    sent = guard_counts(peer.netns, Backend.LEGACY, 4)
    syns = SENT["web"] + SENT["failsafe"] + SENT["unmatched"]
    assert sent.first_syns == syns and sent.echo_requests == SENT["pings"]
    node_sent = _node_counts(built.netns, peer.interface)
    node_syns = SENT["node_web"] + SENT["node_unmatched"]
    assert node_sent[_ECHO_OUT][0] == SENT["node_pings"] and node_sent[_SYN_OUT][0] == node_syns
    expected = _expected(
        peer.interface,
        sent.first_syn_bytes // syns,
        sent.echo_request_bytes // SENT["pings"],
        node_sent[_ECHO_OUT],
        node_sent[_SYN_OUT][1] // node_syns,
    )
    dump = save(built.netns, family=4) if dataplane == "iptables" else list_table(built.netns, 4)
    for columnar in (True, False):
        result = parse_node([(dataplane, dump)], columnar=columnar)
        assert result.diagnostics == []
        assert _by_key(result.records) == expected


FORWARD_WEB = LabPolicy("hosts", "forward-web", ingress=(LabRule("allow", "tcp", WEB),))
FORWARD_NO_PING = LabPolicy("hosts", "forward-no-ping", ingress=(LabRule("deny", "icmp"),))
FORWARDED = {"web": 3, "pings": 4, "unmatched": 2}


@pytest.mark.slow
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("dataplane", ["iptables", "nftables"])
def test_forwarded_traffic_counts_match_what_was_sent(lab: LabNetwork, dataplane: str, family: int) -> None:
    """IPv4 and IPv6.  The host endpoint has a profile that accepts what the node itself
    receives or sends on the interface: over IPv6 that is neighbour discovery, which the
    kernel sends when it likes, so there only the forward records are compared exactly."""
    from node_agent.parsing import parse_node

    built = build_node(lab, [PodSpec("edge", "hosts", interface_prefix="hep"), PodSpec("inner", "hosts")])
    edge, inner = built.pods
    prepare_pods(built, Backend.LEGACY)
    endpoint = LabHostEndpoint(
        edge.interface, forward_ingress_policies=(FORWARD_WEB, FORWARD_NO_PING), profiles=("open",)
    )
    text = render_host_filter_table([endpoint], family=family)
    if dataplane == "iptables":
        restore(built.netns, text, family=family, backend=Backend.LEGACY)
    else:
        load_table(built.netns, family, to_nft(text, family).script)

    dest = inner.ipv4 if family == 4 else inner.ipv6
    listener = start_listener(lab, inner, [WEB], family=family)
    try:
        web, pings, unmatched = FORWARDED["web"], FORWARDED["pings"], FORWARDED["unmatched"]
        assert connect(edge, dest, WEB, web).connected == web
        assert ping(edge, dest, pings, timeout=0.3).answered == 0
        assert connect(edge, dest, UNMATCHED, unmatched, timeout=0.3).timed_out == unmatched
    finally:
        listener.stop()

    sent = guard_counts(edge.netns, Backend.LEGACY, family)
    assert sent.first_syns == web + unmatched and sent.echo_requests == pings
    syn, echo = sent.first_syn_bytes // (web + unmatched), sent.echo_request_bytes // pings
    pi_web = policy_chain_name(FORWARD_WEB, "ingress", Layout.V3_30)
    pi_ping = policy_chain_name(FORWARD_NO_PING, "ingress", Layout.V3_30)
    ingress, egress = Direction.INGRESS, Direction.EGRESS

    def key(kind: Kind, direction: Direction, chain: str = "", tier: str = "default") -> CounterKey:
        return CounterKey(
            kind, family, direction, edge.interface, chain, tier, endpoint=EndpointKind.HOST_FORWARD
        )

    def host(kind: Kind, direction: Direction, chain: str = "") -> CounterKey:
        return CounterKey(kind, family, direction, edge.interface, chain, "", endpoint=EndpointKind.HOST)

    expected = {
        key(Kind.POLICY_ACCEPT, ingress, pi_web): (web, web * syn),
        key(Kind.POLICY_DENY, ingress, pi_web): (0, 0),
        key(Kind.POLICY_ACCEPT, ingress, pi_ping): (0, 0),
        key(Kind.POLICY_DENY, ingress, pi_ping): (pings, pings * echo),
        key(Kind.NO_POLICY_DROP, ingress): (unmatched, unmatched * syn),
        CounterKey(Kind.POLICY_RULE, family, ingress, "", pi_web, "default", 0, "allow"): (web, web * syn),
        CounterKey(Kind.POLICY_RULE, family, ingress, "", pi_ping, "default", 0, "deny"): (
            pings,
            pings * echo,
        ),
        # The host's own chains of the interface: over IPv4 nothing was sent to or by the node.
        host(Kind.PROFILE_ACCEPT, ingress, "cali-pri-open"): (0, 0),
        host(Kind.PROFILE_ACCEPT, egress, "cali-pro-open"): (0, 0),
        host(Kind.NO_PROFILE_DROP, ingress): (0, 0),
        host(Kind.NO_PROFILE_DROP, egress): (0, 0),
    }
    dump = save(built.netns, family=family) if dataplane == "iptables" else list_table(built.netns, family)
    for columnar in (True, False):
        result = parse_node([(dataplane, dump)], columnar=columnar, family=family)
        assert result.diagnostics == []
        found = _by_key(result.records)
        assert found.keys() == expected.keys()
        exact = [k for k in expected if family == 4 or k.endpoint is not EndpointKind.HOST]
        assert {k: found[k] for k in exact} == {k: expected[k] for k in exact}
