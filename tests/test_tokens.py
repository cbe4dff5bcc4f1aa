"""ServiceAccount tokens: verification (PyJWT, RS256 and ES256), the key set as a file or
URL and its rotation, the composed ``identify``, and the agent's token metadata.

Keys and tokens come from :class:`tests.support.tokens.TokenIssuer` (keys made here,
tokens shaped like the kubelet's projected ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aggregator.ingest.servicer import peer_key
from aggregator.trust.callers import identify_from
from aggregator.trust.identity import Credential, PeerIdentity, no_identity
from aggregator.trust.jwks import JwksFile, JwksUrl, key_source
from aggregator.trust.tokens import InvalidToken, TokenVerifier
from node_agent.streamer import StreamBroken, bearer_metadata
from tests.support.tokens import AGENT_SUBJECT, ISSUER, TokenIssuer
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def verifier(issuer: TokenIssuer, tmp_path: Path) -> TokenVerifier:
    return TokenVerifier(JwksFile(issuer.write_jwks(tmp_path / "jwks.json")), issuer=ISSUER)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_valid_token_names_its_subject_and_node(
    issuer: TokenIssuer, verifier: TokenVerifier, algorithm: str
) -> None:
    identity = verifier.verify(issuer.token("n1", algorithm=algorithm))
    assert identity == PeerIdentity(Credential.TOKEN, AGENT_SUBJECT, (AGENT_SUBJECT,), "n1")


def test_a_token_without_a_node_claim_names_no_node(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    assert verifier.verify(issuer.token(None)).node == ""


OTHER = TokenIssuer()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.token("n1", expires_in=-60), "token expired"),
        (lambda i: i.token("n1", not_before=300), "not valid yet"),
        (lambda i: i.token("n1", audience="vault"), "audience is not 'calico-accountant'"),
        (lambda i: i.token("n1", issuer="https://evil.example"), "issuer is not"),
        (lambda i: OTHER.token("n1"), "unknown key"),
        (lambda i: i.token("n1", signer=OTHER), "signature does not verify"),
        (lambda i: i.token("n1", algorithm="ES256", signer=OTHER), "signature does not verify"),
        (lambda i: "not-a-token", "not a well-formed token"),
        (lambda i: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "algorithm 'none'"),
        (lambda i: i.token("n1", subject=""), "sub"),
    ],
    ids=[
        "expired",
        "not-yet",
        "audience",
        "issuer",
        "unknown-key",
        "forged-rsa",
        "forged-ec",
        "garbage",
        "alg-none",
        "no-subject",
    ],
)
def test_a_bad_token_is_refused_saying_why(
    issuer: TokenIssuer, verifier: TokenVerifier, make: Any, reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        verifier.verify(make(issuer))


def test_without_an_issuer_flag_any_issuer_is_accepted(issuer: TokenIssuer, tmp_path: Path) -> None:
    lenient = TokenVerifier(JwksFile(issuer.write_jwks(tmp_path / "jwks.json")))
    assert lenient.verify(issuer.token("n1", issuer="https://oidc.example")).node == "n1"


def test_only_the_agents_service_accounts_carry_a_node(issuer: TokenIssuer, tmp_path: Path) -> None:
    verifier = TokenVerifier(JwksFile(issuer.write_jwks(tmp_path / "jwks.json")), agents={AGENT_SUBJECT})
    assert verifier.verify(issuer.token("n1")).node == "n1"
    intruder = verifier.verify(issuer.token("n1", subject="system:serviceaccount:default:web"))
    assert intruder.node == "" and intruder.subject == "system:serviceaccount:default:web"


def test_the_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    issuer = TokenIssuer()
    verifier = TokenVerifier(JwksFile(issuer.write_jwks(tmp_path / "jwks.json"), check_interval=0.0))
    rotated = issuer.add_key("RS256")
    token = issuer.token("n1", kid=rotated)
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token)
    issuer.write_jwks(tmp_path / "jwks.json")
    assert verifier.verify(token).node == "n1"
    (tmp_path / "jwks.json").write_text("{not json")  # a bad rotation keeps the last good keys
    assert verifier.verify(token).node == "n1"


def test_a_bad_key_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    with pytest.raises(ValueError, match="did not contain any keys"):
        key_source(str(tmp_path / "jwks.json"))
    with pytest.raises(ValueError, match="needs an https:// key set URL"):
        key_source(str(tmp_path / "jwks.json"), ca_file="ca.pem")
    with pytest.raises(ValueError, match="cannot read"):
        key_source(str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match="plain http only on loopback"):
        key_source("http://issuer.example.com/jwks")


def test_the_key_set_url_is_fetched_and_refetched_for_an_unknown_key() -> None:
    issuer = TokenIssuer()
    with issuer.serve() as url:
        keys = JwksUrl(url, min_refetch=0.2)
        try:
            verifier = TokenVerifier(keys, issuer=ISSUER)
            token = issuer.token("n1", algorithm="ES256")
            assert wait_until(lambda: verifier.verify(token)).node == "n1"
            fetches = keys.fetches
            rotated = issuer.add_key("ES256")
            rotated_token = issuer.token("n2", kid=rotated)
            with pytest.raises(InvalidToken, match="unknown key"):
                verifier.verify(rotated_token)  # refused now, and a fetch is due at once
            assert wait_until(lambda: verifier.verify(rotated_token)).node == "n2"
            assert keys.fetches == fetches + 1
        finally:
            keys.close()


def test_an_unreachable_key_set_url_refuses_tokens_until_it_answers() -> None:
    keys = JwksUrl("http://127.0.0.1:9/jwks", timeout=1)
    try:
        with pytest.raises(InvalidToken, match="not fetched yet"):
            TokenVerifier(keys).verify(TokenIssuer().token("n1"))
    finally:
        keys.close()


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def test_identify_tries_the_token_then_the_certificate(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    certificate = PeerIdentity(Credential.CERTIFICATE, "node-7", ("node-7",))
    identify = identify_from(verifier=verifier, certificates=lambda context: certificate)
    bearer = (("authorization", f"Bearer {issuer.token('n1')}"),)
    assert identify(FakeContext(bearer)).node == "n1"  # type: ignore[arg-type, union-attr]
    assert identify(FakeContext()) == certificate  # type: ignore[arg-type]
    with pytest.raises(PermissionError, match="token expired"):  # a bad token is never "no token"
        identify(FakeContext((("authorization", f"Bearer {issuer.token('n1', expires_in=-60)}"),)))  # type: ignore[arg-type]
    tokens_only = identify_from(verifier=verifier)
    assert tokens_only(FakeContext()) is None  # type: ignore[arg-type]
    assert identify_from() is no_identity


def test_streams_are_counted_per_node_not_per_shared_service_account() -> None:
    one = PeerIdentity(Credential.TOKEN, AGENT_SUBJECT, (AGENT_SUBJECT,), "n1")
    two = PeerIdentity(Credential.TOKEN, AGENT_SUBJECT, (AGENT_SUBJECT,), "n2")
    assert peer_key(one, "ipv4:10.0.0.1:1") != peer_key(two, "ipv4:10.0.0.2:1")
    assert peer_key(None, "ipv4:10.0.0.1:5000") == "10.0.0.1"


def test_the_agent_reads_its_token_file_at_every_connect(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert bearer_metadata(None) is None
    with pytest.raises(StreamBroken, match="cannot read the token file"):
        bearer_metadata(str(path))
    path.write_text("first\n")
    assert bearer_metadata(str(path)) == (("authorization", "Bearer first"),)
    path.write_text("second")
    assert bearer_metadata(str(path)) == (("authorization", "Bearer second"),)
    path.write_text("  \n")
    with pytest.raises(StreamBroken, match="is empty"):
        bearer_metadata(str(path))
