"""Agents identified by ServiceAccount tokens, with real processes on loopback.

An aggregator process verifies tokens against a key set the test makes (a JWKS file, or
the same from a loopback HTTP server); agent processes send a projected-token-shaped JWT
from ``--token-file``.  Asserted:

* a valid token for node n1 (RS256; ES256 with the URL form) ingests for n1, and the
  aggregator's series carry exactly the packets the agent read;
* each of these is refused, with its gRPC code, and counted exactly once in
  ``calico_accountant_ingest_rejected_total{reason="identity"}``: a token for another
  node, expired, wrong audience, wrong issuer, signed with an unknown key, garbage, and
  no token at all;
* the agent reads its token file again at every reconnect: an agent whose token is
  expired keeps being refused until the file holds a valid one, then ingests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from calico_accountant.records import Kind
from calico_accountant.v1 import snapshot_pb2_grpc as spb_grpc
from calico_accountant.wire.snapshots import build_snapshot
from node_agent.parsing import parse_node
from tests.support.accounting import accept
from tests.support.dumps import scale_dump, write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import Processes, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.tokens import ISSUER, TokenIssuer
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

REJECTED = "calico_accountant_ingest_rejected_total"
NODE_POLICY = "calico_accountant_node_policy_packets_total"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


class Node:
    """A node's dump, read by its agent with ``cat``, and what it must add up to: the
    aggregator counts from the first read it sees (x1), so once the dump is at x2 it has
    counted ``accepted`` (x2 - x1)."""

    def __init__(self, directory: Path, name: str, seed: int) -> None:
        self.name = name
        self.path = directory / f"{name}.save"
        self.text = render(sized_model(8, 3, seed=seed)).text
        self.path.write_text(self.text)
        records = parse_node([(str(self.path), self.text)]).records
        self.accepted = sum(r.packets for r in records if r.key.kind is Kind.POLICY_ACCEPT)
        assert self.accepted > 0

    def advance_once_seen(self, metrics_port: int) -> None:
        """Wait for the aggregator's baseline (the node's first applied snapshot), then x2."""
        sequence = "calico_accountant_node_snapshot_sequence"
        wait_until(
            lambda: metric_samples(scrape(metrics_port), sequence).get((("node", self.name),), 0) >= 1,
            what=f"{self.name}'s first snapshot (the baseline)",
        )
        write_atomic(self.path, scale_dump(self.text, 2))


def start_aggregator(run: Processes, *flags: str) -> tuple[int, int]:
    grpc_port, metrics_port = free_port(), free_port()
    run.aggregator(grpc_port, metrics_port, *flags)
    wait_until(lambda: http_get(f"http://127.0.0.1:{metrics_port}/metrics")[0] == 200, what="aggregator up")
    return grpc_port, metrics_port


def scrape(metrics_port: int) -> str:
    return http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]


def accepted_of(metrics_port: int, node: str) -> float:
    samples = metric_samples(scrape(metrics_port), NODE_POLICY)
    return sum(
        v for labels, v in samples.items() if ("node", node) in labels and ("verdict", "accept") in labels
    )


def identity_rejections(metrics_port: int) -> float:
    return metric_samples(scrape(metrics_port), REJECTED).get((("reason", "identity"),), 0.0)


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    return path


def ingest_once(grpc_port: int, node: str, token: str | None) -> grpc.RpcError | None:
    """One full snapshot for ``node`` on a stream carrying ``token``; the error the
    aggregator ended the stream with (None: it acknowledged)."""
    snapshot = build_snapshot(
        node=node,
        agent_instance_id="forger",
        sequence=1,
        read_time=datetime.now(UTC),
        full=True,
        records=[accept("cali1", "cali-pi-x", 1)],
    )
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = spb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        try:
            for _ack in stub.StreamSnapshots(iter([snapshot]), metadata=metadata, timeout=10):
                return None
        except grpc.RpcError as error:
            return error
    return None


def test_a_token_ingests_for_its_node_and_every_bad_one_is_refused(
    run: Processes, tmp_path: Path, issuer: TokenIssuer
) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    grpc_port, metrics_port = start_aggregator(run, "--token-jwks", str(jwks), "--token-issuer", ISSUER)
    n1 = Node(tmp_path, "n1", seed=1)
    token_file = write_token(tmp_path / "n1.token", issuer.token("n1"))
    run.agent("n1", grpc_port, [f"cat {n1.path}"], "--interval", "0.3", "--token-file", str(token_file))
    n1.advance_once_seen(metrics_port)
    wait_until(lambda: accepted_of(metrics_port, "n1") == n1.accepted, what="n1's counts")
    assert identity_rejections(metrics_port) == 0

    stranger = TokenIssuer()
    cases = [
        ("another node's", "n2", issuer.token("n1"), grpc.StatusCode.PERMISSION_DENIED),
        ("expired", "n1", issuer.token("n1", expires_in=-120), grpc.StatusCode.UNAUTHENTICATED),
        ("wrong audience", "n1", issuer.token("n1", audience="vault"), grpc.StatusCode.UNAUTHENTICATED),
        ("wrong issuer", "n1", issuer.token("n1", issuer="https://evil"), grpc.StatusCode.UNAUTHENTICATED),
        ("unknown key", "n1", stranger.token("n1"), grpc.StatusCode.UNAUTHENTICATED),
        ("garbage", "n1", "garbage.garbage.garbage", grpc.StatusCode.UNAUTHENTICATED),
        ("no", "n1", None, grpc.StatusCode.PERMISSION_DENIED),
    ]
    for count, (what, node, token, code) in enumerate(cases, start=1):
        error = ingest_once(grpc_port, node, token)
        assert error is not None and error.code() == code, f"{what} token: {error}"
        assert identity_rejections(metrics_port) == count, f"{what} token not counted once"
    # The forgeries changed nothing: n1 keeps exactly its agent's counts, n2 never existed.
    assert accepted_of(metrics_port, "n1") == n1.accepted and accepted_of(metrics_port, "n2") == 0


def test_the_key_set_from_a_url_and_an_ec_key(run: Processes, tmp_path: Path, issuer: TokenIssuer) -> None:
    with issuer.serve() as url:
        grpc_port, metrics_port = start_aggregator(run, "--token-jwks", url, "--token-issuer", ISSUER)
        n2 = Node(tmp_path, "n2", seed=2)
        token_file = write_token(tmp_path / "n2.token", issuer.token("n2", algorithm="ES256"))
        run.agent("n2", grpc_port, [f"cat {n2.path}"], "--interval", "0.3", "--token-file", str(token_file))
        n2.advance_once_seen(metrics_port)
        wait_until(lambda: accepted_of(metrics_port, "n2") == n2.accepted, what="n2's counts")
        error = ingest_once(grpc_port, "n2", issuer.token("n2", algorithm="ES256", audience="other"))
        assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "audience" in (error.details() or "")


def test_the_agent_reads_a_rotated_token_at_its_next_connect(
    run: Processes, tmp_path: Path, issuer: TokenIssuer
) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    grpc_port, metrics_port = start_aggregator(run, "--token-jwks", str(jwks))
    n3 = Node(tmp_path, "n3", seed=3)
    token_file = write_token(tmp_path / "n3.token", issuer.token("n3", expires_in=-120))
    _, agent_port = run.agent(
        "n3", grpc_port, [f"cat {n3.path}"], "--interval", "0.3", "--token-file", str(token_file)
    )
    wait_until(lambda: identity_rejections(metrics_port) >= 2, what="the expired token refused, twice")
    assert accepted_of(metrics_port, "n3") == 0
    agent_errors = metric_samples(
        http_get(f"http://127.0.0.1:{agent_port}/metrics")[1], "calico_accountant_agent_stream_errors_total"
    )
    # The agent saw its streams end (as UNAUTHENTICATED, or as "already finished" when the
    # refusal beat its first write: the code it counts depends on that race).
    assert sum(agent_errors.values()) >= 2

    write_token(token_file, issuer.token("n3"))  # the kubelet's rotation: same file, new token
    n3.advance_once_seen(metrics_port)
    wait_until(lambda: accepted_of(metrics_port, "n3") == n3.accepted, what="n3's counts after rotation")
    assert http_get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200
