"""The :data:`~aggregator.trust.identity.Identify` of a server: which credential names the caller.

A call may carry a ServiceAccount token (``authorization: Bearer`` metadata, verified by
:class:`~aggregator.trust.tokens.TokenVerifier`) and may come over a TLS connection with a
client certificate (identified by a certificate ``Identify``).  :func:`identify_from`
combines whichever the server is configured with, token first:

* a token that is present is verified, and a bad one refuses the call
  (:class:`~aggregator.trust.tokens.InvalidToken`, a :class:`PermissionError`) even when a
  good certificate comes with it: a caller that sends a credential means it;
* without a token, the client certificate decides (an agent on a node with PKI, or a
  consumer such as Grafana);
* with neither, the caller has no verified identity (None), and the access rules decide
  what that may do.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from aggregator.trust.identity import Identify, PeerIdentity, bearer_token, no_identity
from aggregator.trust.tokens import TokenVerifier

__all__ = ["identify_from"]


def identify_from(*, verifier: TokenVerifier | None = None, certificates: Identify | None = None) -> Identify:
    """An :data:`Identify` trying the bearer token (when ``verifier`` is given), then
    ``certificates``; :func:`no_identity` when neither is configured."""
    if verifier is None:
        return certificates or no_identity

    def identify(context: grpc.aio.ServicerContext[Any, Any]) -> PeerIdentity | None:
        if verifier is not None:
            token = bearer_token(context.invocation_metadata() or ())
            if token is not None:
                return verifier.verify(token)
        if certificates is not None:
            return certificates(context)
        return None

    return identify
