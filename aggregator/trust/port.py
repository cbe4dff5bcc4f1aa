"""Trust on the gRPC port, put together once: how it listens, who a caller is, what it may do.

:mod:`aggregator.server` only wires what :func:`port_trust` returns; the decisions live
here, so that they cannot drift apart:

* TLS (``--tls-cert``/``--tls-key``) or plaintext (the default; the demo, and clusters
  that guard port 9010 with a NetworkPolicy only);
* the caller's identity (:func:`build_identify`): a ServiceAccount token's when
  ``--token-jwks`` is given, a client certificate's names when ``--tls-client-ca`` makes
  every client present one, else nobody's;
* the access rules are enforced exactly when identities are checked: a server that can
  tell who a caller is always uses it, and one that cannot never pretends to.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import grpc

from aggregator.trust.access import AccessRules
from aggregator.trust.callers import identify_from
from aggregator.trust.credentials import ServerTls, server_credentials
from aggregator.trust.identity import Identify, identify_by_certificate, no_identity
from aggregator.trust.tokens import TokenVerifier

__all__ = ["PortTrust", "build_identify", "port_trust"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PortTrust:
    credentials: grpc.ServerCredentials | None
    """For ``add_secure_port``; None: plaintext (``add_insecure_port``)."""
    identify: Identify
    access: AccessRules


def build_identify(tls: ServerTls | None, verifier: TokenVerifier | None = None) -> Identify:
    """The server's one :data:`Identify`: every credential source is combined here."""
    certificates = identify_by_certificate if tls is not None and tls.client_ca is not None else None
    return identify_from(verifier=verifier, certificates=certificates)


def port_trust(
    tls: ServerTls | None, access: AccessRules, verifier: TokenVerifier | None = None
) -> PortTrust:
    """Credentials, identity and rules for the gRPC port; ValueError (a
    :class:`~calico_accountant.runtime.client_tls.TlsFileError` for a bad file) when they cannot work."""
    identify = build_identify(tls, verifier)
    checked = identify is not no_identity
    if access.api_clients is not None and not checked:
        raise ValueError(
            "--api-client-identities needs verified identities: give --tls-client-ca "
            "so that every client presents a certificate (or --token-jwks)"
        )
    rules = dataclasses.replace(access, enforce=access.enforce or checked)
    for name in sorted(rules.api_clients or ()):
        node = rules.template.node_of(name)
        if node is not None:
            log.warning(
                "API client identity %r also names node %r under --node-identity-template %r, so it may "
                "ingest for that node; a template such as system:node:{node} keeps the two apart",
                name,
                node,
                rules.template.template,
            )
    credentials = server_credentials(tls) if tls is not None else None
    return PortTrust(credentials, identify, rules)
