"""What an identity may do: the rules ingest and the policy-hit API enforce.

* Ingest: a snapshot is accepted only for the node the caller's identity names: a
  token's node claim, or a certificate name that matches ``--node-identity-template``
  (``{node}`` by default, the Common Name itself; ``system:node:{node}`` for kubelet-style
  certificates; ``{node}.nodes.example.com`` for a DNS name).  An identity that names no
  node (a consumer's certificate) never ingests.
* The consumer API (``Watch``, ``Snapshot``, ``ListNodes``, ``ServerStatus``): anyone the
  transport lets in (with client certificates required, anyone with a certificate of the
  client CA), or only the identities listed in ``--api-client-identities``.
* Agent instance ids (which a forger would need to continue a node's sequence) are shown
  only to identities that may ingest.

With enforcement off (no client certificates required, no token verifier) everyone may
do everything, as before trust existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aggregator.trust.identity import Credential, PeerIdentity

__all__ = ["AccessRules", "NodeIdentityTemplate"]


@dataclass(frozen=True, slots=True)
class NodeIdentityTemplate:
    """How a certificate name maps to a node name: one ``{node}`` placeholder in a fixed
    text, matched exactly (``system:node:{node}``)."""

    template: str = "{node}"

    def __post_init__(self) -> None:
        if self.template.count("{node}") != 1:
            raise ValueError(f"node identity template {self.template!r} must contain {{node}} exactly once")

    def node_of(self, name: str) -> str | None:
        before, _, after = self.template.partition("{node}")
        if len(name) <= len(before) + len(after) or not name.startswith(before) or not name.endswith(after):
            return None
        node = name[len(before) : len(name) - len(after)]
        return node if re.fullmatch(r"[^\s/{}]+", node) else None


@dataclass(frozen=True, slots=True)
class AccessRules:
    enforce: bool = False
    """Identities are checked (client certificates are required, or tokens verified)."""
    template: NodeIdentityTemplate = NodeIdentityTemplate()
    api_clients: frozenset[str] | None = None
    """Names allowed to use the consumer API; None: any authenticated identity."""

    def node_of(self, identity: PeerIdentity | None) -> str | None:
        """The node ``identity`` may report for, if any."""
        if identity is None:
            return None
        if identity.credential is Credential.TOKEN:
            return identity.node or None
        for name in identity.names:
            node = self.template.node_of(name)
            if node is not None:
                return node
        return None

    def ingest_problem(self, identity: PeerIdentity | None, node: str) -> str | None:
        """Why ``identity`` may not report for ``node`` (None: it may)."""
        if not self.enforce:
            return None
        if identity is None:
            return "no verified identity: present a node's client certificate or ServiceAccount token"
        own = self.node_of(identity)
        if own is None:
            return f"{identity} is not a node's identity and may not ingest"
        if own != node:
            return f"{identity} may report only for node {own!r}, not {node!r}"
        return None

    def may_consume(self, identity: PeerIdentity | None) -> bool:
        """Anyone the transport let in, unless ``--api-client-identities`` names who."""
        if self.api_clients is None:
            return True
        return identity is not None and any(name in self.api_clients for name in identity.names)

    def shows_instance_ids(self, identity: PeerIdentity | None) -> bool:
        return not self.enforce or self.node_of(identity) is not None
