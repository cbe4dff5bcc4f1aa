"""Kubernetes ServiceAccount tokens as agent identities: verified with PyJWT.

An agent pod mounts a projected ServiceAccount token with audience ``calico-accountant``
and sends it with every ingest stream (``authorization: Bearer``).  No per-node PKI is
needed: the kubelet issues and rotates the token, and since Kubernetes 1.30 a projected
token names the node its pod runs on::

    {"iss": "https://kubernetes.default.svc.cluster.local",
     "aud": ["calico-accountant"], "sub": "system:serviceaccount:calico-accountant:agent",
     "exp": ..., "nbf": ..., "iat": ...,
     "kubernetes.io": {"namespace": "calico-accountant",
                       "node": {"name": "node-1", "uid": "..."},
                       "pod": {"name": "agent-x7k2p", "uid": "..."},
                       "serviceaccount": {"name": "agent", "uid": "..."}}}

:class:`TokenVerifier` checks the signature (RS256 or ES256, with a key of the issuer's
set, :mod:`aggregator.trust.jwks`), expiry, not-before, audience and, when configured,
issuer; the identity's subject is ``sub`` and its node the ``kubernetes.io`` node claim.

Any pod may ask the kubelet for a token of any audience for its own ServiceAccount, so
on a shared cluster name the agents' ServiceAccounts (``agents``): then only their
tokens carry a node, and every other valid token is an identity that may read the
policy-hit API but never ingest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from aggregator.trust.identity import Credential, PeerIdentity
from aggregator.trust.jwks import KeySource, UnknownKey, key_source

__all__ = ["DEFAULT_AUDIENCE", "InvalidToken", "TokenSettings", "TokenVerifier"]

DEFAULT_AUDIENCE = "calico-accountant"
ALGORITHMS = ("RS256", "ES256")
"""What Kubernetes issuers sign with (RS256 by default; ES256 with an EC service-account key)."""


class InvalidToken(PermissionError):
    """A token was presented and is not valid; the message says why (for the refusal)."""


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """The aggregator's ``--token-*`` flags."""

    jwks: str
    """A JWKS file, or an ``https://`` URL of one."""
    audience: str = DEFAULT_AUDIENCE
    issuer: str | None = None
    """Checked against ``iss`` when given."""
    agents: frozenset[str] | None = None
    """ServiceAccounts (``system:serviceaccount:NS:NAME``) whose tokens name a node; None: all."""
    jwks_ca: str | None = None
    jwks_token_file: str | None = None
    leeway: float = 10.0
    """Seconds of clock skew allowed for ``exp`` and ``nbf``."""


class TokenVerifier:
    """Turns a bearer token into a :class:`PeerIdentity` or raises :class:`InvalidToken`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        agents: Collection[str] | None = None,
        leeway: float = 10.0,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.agents = frozenset(agents) if agents is not None else None
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: TokenSettings) -> TokenVerifier:
        keys = key_source(settings.jwks, ca_file=settings.jwks_ca, token_file=settings.jwks_token_file)
        return cls(
            keys,
            audience=settings.audience,
            issuer=settings.issuer,
            agents=settings.agents,
            leeway=settings.leeway,
        )

    def verify(self, token: str) -> PeerIdentity:
        claims = self._claims(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no subject (sub)")
        node = _node_claim(claims)
        if self.agents is not None and subject not in self.agents:
            node = ""  # a valid token, but not an agent's: it may read, never report
        return PeerIdentity(Credential.TOKEN, subject, (subject,), node)

    def close(self) -> None:
        self.keys.close()

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in ALGORITHMS:
                raise InvalidToken(f"token algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
            kid = header.get("kid")
            key = self.keys.key_for(kid if isinstance(kid, str) else None)
            return jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub", "aud", *(["iss"] if self.issuer else [])]},
            )
        except UnknownKey as error:
            raise InvalidToken(f"token signed with an unknown key: {error}") from None
        except jwt_errors.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt_errors.ImmatureSignatureError:
            raise InvalidToken("token not valid yet (nbf or iat in the future)") from None
        except jwt_errors.InvalidAudienceError:
            raise InvalidToken(f"token audience is not {self.audience!r}") from None
        except jwt_errors.InvalidIssuerError:
            raise InvalidToken(f"token issuer is not {self.issuer!r}") from None
        except jwt_errors.InvalidSignatureError:
            raise InvalidToken("token signature does not verify") from None
        except jwt_errors.MissingRequiredClaimError as error:
            raise InvalidToken(f"token lacks the {error.claim!r} claim") from None
        except jwt_errors.DecodeError:
            raise InvalidToken("not a well-formed token (JWT)") from None
        except jwt_errors.PyJWTError as error:
            raise InvalidToken(f"invalid token: {error}") from None


def _node_claim(claims: Mapping[str, Any]) -> str:
    """``kubernetes.io.node.name``, or "" when the token names no node (a token of a pod
    created before node claims, or one not bound to a pod)."""
    kubernetes = claims.get("kubernetes.io")
    node = kubernetes.get("node") if isinstance(kubernetes, dict) else None
    name = node.get("name") if isinstance(node, dict) else None
    return name if isinstance(name, str) else ""
