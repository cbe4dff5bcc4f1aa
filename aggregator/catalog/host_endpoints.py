"""HostEndpoints by (node, interface), the way felix picks the one that owns an interface.

Felix gives an interface the HostEndpoint of its node whose ``spec.interfaceName`` names
it, and the pseudo-interface ``any-interface-at-all`` the one whose ``interfaceName`` is
``*``; when several claim the same, the one with the smallest name wins
(``resolveHostEndpoints`` in ``felix/dataplane/linux/endpoint_mgr.go``).  A HostEndpoint
with no ``interfaceName`` is matched by felix to the interfaces holding one of its
``expectedIPs``: which interface that is only the node knows, so its chains stay
unresolved here (exported with the raw interface and an empty host endpoint name).

Pure: objects in, a table out.
"""

from __future__ import annotations

from collections.abc import Iterable

from aggregator.datastore.objects import CalicoObject
from aggregator.model import HostEndpointIdentity
from calico_accountant.felix.endpoints import ALL_INTERFACES

__all__ = ["HOST_ENDPOINT_KIND", "HostEndpointTable", "host_endpoint_profiles", "index_host_endpoints"]

HOST_ENDPOINT_KIND = "HostEndpoint"
WILDCARD_INTERFACE = "*"

HostEndpointTable = dict[tuple[str, str], HostEndpointIdentity]
"""(node, felix interface name) -> the host endpoint that owns it."""


def _interface_of(obj: CalicoObject) -> str:
    """The interface felix names the chains after, or "" when it matches by IP only."""
    interface = obj.spec.get("interfaceName")
    if not isinstance(interface, str) or not interface:
        return ""
    return ALL_INTERFACES if interface == WILDCARD_INTERFACE else interface


def index_host_endpoints(objects: Iterable[CalicoObject]) -> HostEndpointTable:
    """The host endpoint of every (node, interface) the datastore names; felix's tie-break."""
    table: HostEndpointTable = {}
    for obj in objects:
        node = obj.spec.get("node")
        interface = _interface_of(obj)
        if not isinstance(node, str) or not node or not interface:
            continue
        key = (node, interface)
        held = table.get(key)
        if held is not None and held.name <= obj.name:
            continue
        labels = tuple(sorted((str(k), str(v)) for k, v in obj.labels.items()))
        table[key] = HostEndpointIdentity(node=node, interface=interface, name=obj.name, labels=labels)
    return table


def host_endpoint_profiles(objects: Iterable[CalicoObject]) -> set[str]:
    """The profiles host endpoints name (``spec.profiles``), so their chains resolve."""
    found: set[str] = set()
    for obj in objects:
        profiles = obj.spec.get("profiles")
        if isinstance(profiles, list):
            found.update(p for p in profiles if isinstance(p, str))
    return found
