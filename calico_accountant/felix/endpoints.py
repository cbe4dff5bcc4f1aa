"""Which endpoint a felix endpoint chain belongs to: workload or host, direction, interface.

Felix names an endpoint's chains ``EndpointChainName(prefix, interface)``
(``felix/rules/endpoints.go``): ``cali-tw-``/``cali-fw-`` for workloads, ``cali-th-``/
``cali-fh-`` for host endpoints and ``cali-thfw-``/``cali-fhfw-`` for the forward chains
of host endpoints (``applyOnForward`` policies).  Host endpoint chains use the policy
direction the other way round from workload chains: ``cali-th-`` (to the host endpoint,
traffic the host sends out) holds *egress* policy, ``cali-fh-`` *ingress*.

Interfaces are at most 15 characters, so the name is the prefix plus the interface,
except for the wildcard host endpoint (``interfaceName: "*"``), whose pseudo-interface
``any-interface-at-all`` makes ``cali-thfw-``/``cali-fhfw-`` names of 30 characters: in
iptables (28 at most) those are hashed, and recognised here by computing the hash.
"""

from __future__ import annotations

from typing import NamedTuple

from calico_accountant.felix.naming import IPTABLES_MAX_CHAIN_NAME, length_limited_id
from calico_accountant.records import Direction, EndpointKind

__all__ = [
    "ALL_INTERFACES",
    "ENDPOINT_PREFIXES",
    "EndpointChain",
    "endpoint_chain",
    "endpoint_chain_name",
]

ALL_INTERFACES = "any-interface-at-all"
"""Felix's pseudo-interface of a host endpoint on every interface (``allInterfaces`` in
``felix/dataplane/linux/endpoint_mgr.go``)."""


class EndpointChain(NamedTuple):
    """What an endpoint chain's name says."""

    direction: Direction
    endpoint: EndpointKind
    interface: str


ENDPOINT_PREFIXES: dict[str, tuple[Direction, EndpointKind]] = {
    "cali-tw-": (Direction.INGRESS, EndpointKind.WORKLOAD),
    "cali-fw-": (Direction.EGRESS, EndpointKind.WORKLOAD),
    "cali-th-": (Direction.EGRESS, EndpointKind.HOST),
    "cali-fh-": (Direction.INGRESS, EndpointKind.HOST),
    "cali-thfw-": (Direction.EGRESS, EndpointKind.HOST_FORWARD),
    "cali-fhfw-": (Direction.INGRESS, EndpointKind.HOST_FORWARD),
}
"""Every endpoint chain prefix felix writes into the filter table (``rule_defs.go``)."""

_BY_LENGTH: tuple[tuple[int, dict[str, tuple[Direction, EndpointKind]]], ...] = tuple(
    (length, {p: v for p, v in ENDPOINT_PREFIXES.items() if len(p) == length})
    for length in sorted({len(p) for p in ENDPOINT_PREFIXES}, reverse=True)
)

_HASHED_WILDCARD: dict[str, str] = {
    length_limited_id(prefix, ALL_INTERFACES, IPTABLES_MAX_CHAIN_NAME): ALL_INTERFACES
    for prefix in ENDPOINT_PREFIXES
}
"""The iptables names of the wildcard host endpoint's chains that are hashed."""


def endpoint_chain_name(prefix: str, interface: str, max_len: int = IPTABLES_MAX_CHAIN_NAME) -> str:
    """Felix's ``EndpointChainName``."""
    return length_limited_id(prefix, interface, max_len)


def endpoint_chain(name: str) -> EndpointChain | None:
    """The endpoint behind a filter-table chain name (layer prefix removed), or None.

    None also for a bare prefix (no interface: only a damaged dump has one) and for a
    hashed name other than the wildcard host endpoint's (felix never hashes a real
    interface's chain).
    """
    if not name.startswith("cali-"):
        return None
    for length, prefixes in _BY_LENGTH:
        found = prefixes.get(name[:length])
        if found is None:
            continue
        interface = name[length:]
        if not interface:
            return None
        if interface[0] == "_" and len(name) == IPTABLES_MAX_CHAIN_NAME:
            wildcard = _HASHED_WILDCARD.get(name)
            if wildcard is not None:
                interface = wildcard
        return EndpointChain(found[0], found[1], interface)
    return None
