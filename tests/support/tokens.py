"""A stand-in for a cluster's ServiceAccount token issuer: keys the test makes, tokens
shaped like the kubelet's projected ones, and the key set as a file or a URL.

Usage::

    issuer = TokenIssuer()                     # one RS256 and one ES256 key
    token = issuer.token("node-1")             # valid for node-1, audience calico-accountant
    issuer.token("node-1", expires_in=-60)     # expired a minute ago
    issuer.write_jwks(path)                    # the public keys, for --token-jwks FILE
    with issuer.serve() as url: ...            # the same from a loopback HTTP server
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from calico_accountant.runtime.http import HttpServer, Response

__all__ = ["AGENT_SUBJECT", "ISSUER", "TokenIssuer"]

ISSUER = "https://kubernetes.default.svc.cluster.local"
AGENT_SUBJECT = "system:serviceaccount:calico-accountant:agent"

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class TokenIssuer:
    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.keys: dict[str, tuple[str, _PrivateKey]] = {}
        """kid -> (algorithm, private key); the first of each algorithm signs by default."""
        self.add_key("RS256")
        self.add_key("ES256")

    def add_key(self, algorithm: str, kid: str | None = None) -> str:
        kid = kid or f"{algorithm.lower()}-{secrets.token_hex(4)}"
        key: _PrivateKey
        if algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = (algorithm, key)
        return kid

    def kid_of(self, algorithm: str) -> str:
        return next(kid for kid, (alg, _) in self.keys.items() if alg == algorithm)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, (algorithm, key) in self.keys.items():
            public = key.public_key()
            jwk = (
                RSAAlgorithm.to_jwk(public, as_dict=True)
                if isinstance(public, rsa.RSAPublicKey)
                else ECAlgorithm.to_jwk(public, as_dict=True)
            )
            keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})
        return {"keys": keys}

    def write_jwks(self, path: Path) -> Path:
        temporary = path.with_name(path.name + ".new")
        temporary.write_text(json.dumps(self.jwks()))
        temporary.replace(path)
        return path

    def token(
        self,
        node: str | None,
        *,
        algorithm: str = "RS256",
        kid: str | None = None,
        audience: str = "calico-accountant",
        issuer: str | None = None,
        subject: str = AGENT_SUBJECT,
        expires_in: float = 3600,
        not_before: float = -5,
        signer: TokenIssuer | None = None,
    ) -> str:
        """A projected-token-shaped JWT for a pod on ``node`` (None: no node claim), signed
        with its key ``kid`` (whose algorithm wins; default: its first key of ``algorithm``);
        with ``signer``, the
        header names that kid but ``signer``'s key of ``algorithm`` signs (a forgery)."""
        if kid is not None and kid in self.keys:
            algorithm = self.keys[kid][0]
        kid = kid or self.kid_of(algorithm)
        _, key = signer.keys[signer.kid_of(algorithm)] if signer is not None else self.keys[kid]
        now = time.time()
        kubernetes: dict[str, Any] = {
            "namespace": "calico-accountant",
            "pod": {"name": f"agent-{node or 'x'}", "uid": "pod-uid"},
            "serviceaccount": {"name": "agent", "uid": "sa-uid"},
        }
        if node is not None:
            kubernetes["node"] = {"name": node, "uid": f"{node}-uid"}
        claims = {
            "iss": issuer or self.issuer,
            "aud": [audience],
            "sub": subject,
            "iat": int(now + not_before),
            "nbf": int(now + not_before),
            "exp": int(now + expires_in),
            "kubernetes.io": kubernetes,
        }
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})

    @contextlib.contextmanager
    def serve(self, path: str = "/openid/v1/jwks") -> Iterator[str]:
        """The key set at ``http://127.0.0.1:PORT/openid/v1/jwks`` (current at every GET)."""

        def page() -> Response:
            return Response(200, "application/json", json.dumps(self.jwks()).encode())

        server = HttpServer("127.0.0.1", 0, {path: page}, name="test-jwks")
        try:
            yield f"http://127.0.0.1:{server.port}{path}"
        finally:
            server.close()
