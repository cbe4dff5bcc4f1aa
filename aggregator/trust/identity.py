"""The identity of a gRPC peer, as its credential proves it.

A client certificate proves its Common Name and its DNS subject alternative names (the
TLS handshake checked the chain against ``--tls-client-ca``); a ServiceAccount token
proves its subject and, for a token projected into a pod, the node the pod runs on
(the ``kubernetes.io`` claim).  Nothing here trusts what the peer *says* (the node name
in a snapshot): :mod:`aggregator.trust.access` compares the two.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc.aio

__all__ = [
    "Credential",
    "Identify",
    "PeerIdentity",
    "bearer_token",
    "certificate_identity",
    "identify_by_certificate",
    "no_identity",
]


class Credential(enum.StrEnum):
    """What proved an identity."""

    CERTIFICATE = "certificate"
    TOKEN = "token"


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is at the other end of a call."""

    credential: Credential
    subject: str
    """The primary name: a certificate's Common Name (or first DNS name), a token's ``sub``."""
    names: tuple[str, ...]
    """Every name the credential proves (the subject first)."""
    node: str = ""
    """The node a token's ``kubernetes.io`` claim names (tokens only)."""

    def __str__(self) -> str:
        return f"{self.credential.value} {self.subject!r}"


def _texts(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]


def certificate_identity(auth_context: Mapping[str, Iterable[bytes | str]]) -> PeerIdentity | None:
    """The identity of a TLS peer whose certificate the server verified, from gRPC's auth
    context (``x509_common_name``, ``x509_subject_alternative_name``); None without one."""
    common = _texts(auth_context.get("x509_common_name", ()))
    alternative = _texts(auth_context.get("x509_subject_alternative_name", ()))
    names = tuple(dict.fromkeys(name for name in (*common, *alternative) if name))
    if not names:
        return None
    return PeerIdentity(Credential.CERTIFICATE, names[0], names)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` call metadata entry, if any."""
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


Identify = Callable[[grpc.aio.ServicerContext[Any, Any]], PeerIdentity | None]
"""Who the caller of a call is, as its transport proved it (None: no verified identity).
Raises :class:`PermissionError` for a credential that is present but invalid (a bad
token): a wrong credential is refused, never treated as none."""


def no_identity(context: grpc.aio.ServicerContext[Any, Any]) -> PeerIdentity | None:
    """The :data:`Identify` of a server without client authentication."""
    return None


def identify_by_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> PeerIdentity | None:
    """The :data:`Identify` of a server that requires client certificates: the handshake
    already verified the chain, so the names in the auth context are proven."""
    return certificate_identity(context.auth_context())
