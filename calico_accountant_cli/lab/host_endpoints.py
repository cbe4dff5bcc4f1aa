"""Felix's filter-table chains for host endpoints, for a lab node (``iptables-restore`` form).

Written from felix's source, not from the parser: ``HostEndpointToFilterChains`` and
``endpointIptablesChain`` (``felix/rules/endpoints.go``), the host dispatch chains
(``hostDispatchChains`` in ``felix/rules/dispatch.go``) and the INPUT/OUTPUT/FORWARD
wiring and failsafe chains (``felix/rules/static.go``), with the v3.30 layout:

* ``INPUT -> cali-INPUT``: clear the mark bits, ``-j cali-from-host-endpoint`` (``-i <if>
  -g cali-fh-<if>``), then accept what policy accepted (``Host endpoint policy accepted
  packet.``); ``OUTPUT -> cali-OUTPUT`` the same with ``cali-to-host-endpoint`` and
  ``cali-th-<if>`` (felix also skips DNAT'd packets there, left out: the lab has no DNAT);
  ``FORWARD -> cali-FORWARD``: ``cali-from-hep-forward`` / ``cali-to-hep-forward`` to
  ``cali-fhfw-``/``cali-thfw-`` when a host endpoint has forward policies;
* ``cali-fh-<if>`` (ingress policy) / ``cali-th-<if>`` (egress policy): conntrack accept
  and invalid drop, ``-j cali-failsafe-in``/``-out``, the mark clear, the tier, profiles,
  ``Drop if no profiles matched`` -- no VXLAN/IPIP drops (host endpoints allow them);
* ``cali-fhfw-``/``cali-thfw-``: no failsafe, no profiles; without forward policies
  ``Allow forwarded traffic by default`` then ``Return for accepted forward traffic``;
* the failsafe chains accept their ports (``-p tcp -m multiport --dports 22 -j ACCEPT``).

The wildcard host endpoint's interface is ``any-interface-at-all``, and its chains are
reached from the dispatch chains' last rule (a goto without an interface match).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico_accountant_cli.lab.calico_rules import (
    ACCEPT_MARK,
    PASS_MARK,
    FelixChain,
    LabPolicy,
    Layout,
    deny_target,
    filter_table_text,
    length_limited_id,
    policy_chain,
    policy_chain_name,
    policy_entries,
    profile_chain,
    profile_chain_name,
)

__all__ = [
    "ALL_INTERFACES",
    "LabHostEndpoint",
    "host_chain_name",
    "host_endpoint_chains",
    "nft_endpoint_names",
    "render_host_filter_table",
]

ALL_INTERFACES = "any-interface-at-all"
"""Felix's pseudo-interface for a host endpoint with ``interfaceName: "*"``."""
_ALL_MARK_BITS = 0xF0000
"""accept, pass, drop and scratch bits of the default mask (``allCalicoMarkBits``)."""


@dataclass(frozen=True, slots=True)
class LabHostEndpoint:
    """A host endpoint: its interface (or :data:`ALL_INTERFACES`), its normal policies,
    its ``applyOnForward`` policies (rendered into the forward chains) and profiles."""

    interface: str
    ingress_policies: tuple[LabPolicy, ...] = ()
    egress_policies: tuple[LabPolicy, ...] = ()
    forward_ingress_policies: tuple[LabPolicy, ...] = ()
    forward_egress_policies: tuple[LabPolicy, ...] = ()
    profiles: tuple[str, ...] = ()
    failsafe_in_ports: tuple[int, ...] = (22,)
    failsafe_out_ports: tuple[int, ...] = (2379,)


def host_chain_name(prefix: str, interface: str) -> str:
    """``EndpointChainName``: ``cali-thfw-any-interface-at-all`` is too long and hashed."""
    return length_limited_id(prefix, interface)


def nft_endpoint_names(endpoints: Sequence[LabHostEndpoint]) -> dict[str, str]:
    """The endpoint chains iptables names with a hash -> their nft names (felix's nft chain
    names may be 256 characters, so ``cali-thfw-any-interface-at-all`` is not hashed there);
    the ``rename`` of :func:`~calico_accountant_cli.lab.nft_rules.to_nft`."""
    names: dict[str, str] = {}
    for endpoint in endpoints:
        for prefix in ("cali-th-", "cali-fh-", "cali-thfw-", "cali-fhfw-"):
            hashed = host_chain_name(prefix, endpoint.interface)
            if hashed != prefix + endpoint.interface:
                names[hashed] = prefix + endpoint.interface
    return names


def _endpoint_chain(
    name: str,
    policies: Sequence[LabPolicy],
    profiles: Sequence[str],
    direction: str,
    failsafe: str,
    forward: bool,
    layout: Layout,
    deny: str,
) -> FelixChain:
    chain = FelixChain(name)
    verb = "Drop" if deny == "DROP" else "Reject"
    chain.add("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    chain.add("-m conntrack --ctstate INVALID -j DROP")
    if failsafe:
        chain.add(f"-j {failsafe}")
    chain.add(f"-j MARK --set-xmark 0x0/{ACCEPT_MARK | PASS_MARK:#x}")
    if policies:
        chain.add(f"-j MARK --set-xmark 0x0/{PASS_MARK:#x}", comments=["Start of tier default"])
        for policy in policies:
            chain.add(f"-m mark --mark 0x0/{PASS_MARK:#x} -j {policy_chain_name(policy, direction, layout)}")
            chain.add(
                f"-m mark --mark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x} -j RETURN",
                comments=["Return if policy accepted"],
            )
        chain.add(
            f"-m mark --mark 0x0/{PASS_MARK:#x} -j {deny}",
            comments=[f"End of tier default. {verb} if no policies passed packet"],
        )
    elif forward:
        chain.add(
            f"-j MARK --set-xmark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x}",
            comments=["Allow forwarded traffic by default"],
        )
        chain.add("-j RETURN", comments=["Return for accepted forward traffic"])
    if forward:
        return chain
    for profile in profiles:
        chain.add(f"-j {profile_chain_name(profile, direction)}")
        chain.add(
            f"-m mark --mark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x} -j RETURN",
            comments=["Return if profile accepted"],
        )
    chain.add(f"-j {deny}", comments=[f"{verb} if no profiles matched"])
    return chain


def _dispatch(name: str, flag: str, prefix: str, interfaces: Sequence[str]) -> FelixChain:
    """``-i/-o <if> -g <prefix><if>`` per named interface; the wildcard's goto last, unmatched."""
    chain = FelixChain(name)
    for interface in interfaces:
        if interface != ALL_INTERFACES:
            chain.add(f"-g {host_chain_name(prefix, interface)}", prefix=f"{flag} {interface}")
    if ALL_INTERFACES in interfaces:
        chain.add(f"-g {host_chain_name(prefix, ALL_INTERFACES)}")
    return chain


def _hook_chains(endpoints: Sequence[LabHostEndpoint]) -> list[FelixChain]:
    accepted = f"-m mark --mark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x} -j ACCEPT"
    chains = []
    for hook, dispatch in (("INPUT", "cali-from-host-endpoint"), ("OUTPUT", "cali-to-host-endpoint")):
        base = FelixChain(hook)
        base.add(f"-j cali-{hook}")
        calico = FelixChain(f"cali-{hook}")
        calico.add(f"-j MARK --set-xmark 0x0/{_ALL_MARK_BITS:#x}")
        calico.add(f"-j {dispatch}")
        calico.add(accepted, comments=["Host endpoint policy accepted packet."])
        chains += [base, calico]
    forward = FelixChain("FORWARD")
    forward.add("-j cali-FORWARD")
    cali_forward = FelixChain("cali-FORWARD")
    cali_forward.add(f"-j MARK --set-xmark 0x0/{_ALL_MARK_BITS:#x}")
    cali_forward.add("-j cali-from-hep-forward")
    cali_forward.add("-j cali-to-hep-forward")
    cali_forward.add(accepted, comments=["Policy explicitly accepted packet."])
    chains += [forward, cali_forward]
    interfaces = [endpoint.interface for endpoint in endpoints]
    chains += [
        _dispatch("cali-from-host-endpoint", "-i", "cali-fh-", interfaces),
        _dispatch("cali-to-host-endpoint", "-o", "cali-th-", interfaces),
        _dispatch("cali-from-hep-forward", "-i", "cali-fhfw-", interfaces),
        _dispatch("cali-to-hep-forward", "-o", "cali-thfw-", interfaces),
    ]
    return chains


def _failsafe(name: str, ports: Sequence[int]) -> FelixChain:
    chain = FelixChain(name)
    for port in ports:
        chain.add(f"-m multiport --dports {port} -j ACCEPT", prefix="-p tcp")
    return chain


def host_endpoint_chains(
    endpoints: Sequence[LabHostEndpoint],
    layout: Layout = Layout.V3_30,
    *,
    family: int = 4,
    deny: str = "DROP",
) -> list[FelixChain]:
    """Every chain of ``endpoints``: hooks, dispatch, failsafe, endpoint, policy and profile chains."""
    chains = _hook_chains(endpoints)
    ins = sorted({port for endpoint in endpoints for port in endpoint.failsafe_in_ports})
    outs = sorted({port for endpoint in endpoints for port in endpoint.failsafe_out_ports})
    chains += [_failsafe("cali-failsafe-in", ins), _failsafe("cali-failsafe-out", outs)]
    for endpoint in endpoints:
        interface = endpoint.interface
        for prefix, policies, direction, failsafe, forward in (
            ("cali-th-", endpoint.egress_policies, "egress", "cali-failsafe-out", False),
            ("cali-fh-", endpoint.ingress_policies, "ingress", "cali-failsafe-in", False),
            ("cali-thfw-", endpoint.forward_egress_policies, "egress", "", True),
            ("cali-fhfw-", endpoint.forward_ingress_policies, "ingress", "", True),
        ):
            name = host_chain_name(prefix, interface)
            chains.append(
                _endpoint_chain(name, policies, endpoint.profiles, direction, failsafe, forward, layout, deny)
            )
    for direction in ("ingress", "egress"):
        entries = [
            policy
            for endpoint in endpoints
            for policy in (
                (*endpoint.ingress_policies, *endpoint.forward_ingress_policies)
                if direction == "ingress"
                else (*endpoint.egress_policies, *endpoint.forward_egress_policies)
            )
        ]
        chains += [
            policy_chain(policy, direction, layout, family, deny) for policy in policy_entries(entries)
        ]
    for profile in dict.fromkeys(profile for endpoint in endpoints for profile in endpoint.profiles):
        chains += [profile_chain(profile, "ingress"), profile_chain(profile, "egress")]
    return chains


def render_host_filter_table(
    endpoints: Sequence[LabHostEndpoint],
    layout: Layout = Layout.V3_30,
    *,
    family: int = 4,
    deny_action: str = "DROP",
) -> str:
    """The whole ``*filter`` table of a node with these host endpoints, zero counters."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family}")
    return filter_table_text(
        host_endpoint_chains(endpoints, layout, family=family, deny=deny_target(deny_action, family))
    )
