"""Certificate renewal without restarts, with real processes on loopback.

cert-manager renews certificates in place: the kubelet swaps the files of the mounted
Secret (:class:`tests.support.pki.SecretVolume` does the same swap).  The aggregator must
serve the renewed certificate to new connections while an agent's open stream goes on,
must keep its certificate through a renewal caught half-way, and an agent must present
its renewed client certificate from its next connection on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.pki import SERVER_NAME, ClusterPki, SecretVolume, served_certificate
from tests.support.processes import Process, Processes, cli, processes
from tests.support.scrape import http_get, metric_samples
from tests.support.streaming import HitsReader, counted, make_nodes, reporting, start_aggregator, totals_reach
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


def samples(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return metric_samples(http_get(f"http://127.0.0.1:{port}/metrics")[1], name)


def test_a_renewed_server_certificate_serves_new_connections_and_open_streams_go_on(
    run: Processes, tmp_path: Path
) -> None:
    pki = ClusterPki(tmp_path / "pki")
    secret = SecretVolume(tmp_path / "aggregator-tls")
    secret.project({"tls.crt": pki.server.cert, "tls.key": pki.server.key, "ca.crt": pki.ca.cert})
    flags = ["--tls-cert", str(secret.path("tls.crt")), "--tls-key", str(secret.path("tls.key")),
             "--tls-client-ca", str(secret.path("ca.crt"))]  # fmt: skip
    reader_identity = pki.ca.issue("reader")
    port, metrics_port = start_aggregator(run, *flags, tls=pki.client_tls(reader_identity))
    (node,) = make_nodes(tmp_path, [(10, 3)])
    agent_flags = pki.client_flags(pki.ca.issue(node.name))
    _, agent_port = run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2", *agent_flags)
    reader = HitsReader(f"127.0.0.1:{port}", pki.client_tls(reader_identity))
    try:
        wait_until(reporting(reader, 1), what="x1 (the aggregator's baseline)")
        assert served_certificate(port, pki, reader_identity) == pki.server.der()

        renewed = pki.ca.issue("calico-accountant-aggregator", name="renewed", dns=[SERVER_NAME], server=True)
        secret.project({"tls.crt": renewed.cert, "tls.key": renewed.key, "ca.crt": pki.ca.cert})
        wait_until(lambda: served_certificate(port, pki, reader_identity) == renewed.der(), what="renewed")

        # The agent's stream, opened before the renewal, goes on: later snapshots acked and counted.
        node.write(2)
        wait_until(totals_reach(reader, counted([node], 2)[0]), what="x2 after the renewal")
        assert samples(agent_port, "calico_accountant_agent_reconnects_total")[()] == 0
        assert not any(samples(agent_port, "calico_accountant_agent_stream_errors_total").values())
        assert samples(agent_port, "calico_accountant_agent_snapshots_sent_total")[(("type", "full"),)] == 1
        assert samples(metrics_port, "calico_accountant_ingest_streams")[()] == 1
        done = cli("nodes", "--server", f"127.0.0.1:{port}", *pki.client_flags(reader_identity))
        assert done.returncode == 0 and node.name in done.stdout, done.stderr

        # Caught half-way (a new certificate, the old key): the renewed one stays served.
        third = pki.ca.issue("calico-accountant-aggregator", name="third", dns=[SERVER_NAME], server=True)
        secret.project({"tls.crt": third.cert, "tls.key": renewed.key, "ca.crt": pki.ca.cert})
        aggregator = run.started[0]
        wait_until(  # gRPC asks for the files at a new connection's handshake only
            lambda: (
                served_certificate(port, pki, reader_identity) == renewed.der()
                and "do not load as a pair" in aggregator.output()
            ),
            what="the half renewal noticed, the renewed certificate still served",
        )
        secret.project({"tls.crt": third.cert, "tls.key": third.key, "ca.crt": pki.ca.cert})
        wait_until(lambda: served_certificate(port, pki, reader_identity) == third.der(), what="completed")
        node.write(3)
        wait_until(totals_reach(reader, counted([node], 3)[0]), what="x3")
        assert samples(agent_port, "calico_accountant_agent_reconnects_total")[()] == 0
    finally:
        reader.close()


def test_an_agent_presents_its_renewed_certificate_from_its_next_connection(
    run: Processes, tmp_path: Path
) -> None:
    pki = ClusterPki(tmp_path / "pki")
    reader_identity = pki.ca.issue("reader")
    port, metrics_port = start_aggregator(run, *pki.server_flags(), tls=pki.client_tls(reader_identity))
    (node,) = make_nodes(tmp_path, [(8, 2)])
    expired = pki.ca.issue(
        node.name,
        name="expired",
        not_before=datetime.now(UTC) - timedelta(days=2),
        not_after=datetime.now(UTC) - timedelta(minutes=5),
    )
    secret = SecretVolume(tmp_path / "agent-tls")
    secret.project({"tls.crt": expired.cert, "tls.key": expired.key})
    flags = ["--tls-ca", str(pki.ca.cert), "--tls-server-name", SERVER_NAME,
             "--tls-cert", str(secret.path("tls.crt")), "--tls-key", str(secret.path("tls.key"))]  # fmt: skip
    agent: Process
    agent, agent_port = run.agent(node.name, port, [f"cat {node.path}"], "--interval", "0.2", *flags)
    reader = HitsReader(f"127.0.0.1:{port}", pki.client_tls(reader_identity))
    try:
        errors = "calico_accountant_agent_stream_errors_total"
        wait_until(
            lambda: samples(agent_port, errors).get((("code", "UNAVAILABLE"),), 0) >= 2,
            what="the expired certificate refused in the handshake, twice",
        )
        assert node.name not in reader.nodes()
        assert (
            samples(metrics_port, "calico_accountant_ingest_rejected_total")[(("reason", "identity"),)] == 0
        )

        renewed = pki.ca.issue(node.name, name="renewed")
        secret.project({"tls.crt": renewed.cert, "tls.key": renewed.key})
        wait_until(reporting(reader, 1), what="the renewed certificate accepted")
        assert agent.popen.poll() is None  # the same process: no restart
        node.write(2)
        wait_until(totals_reach(reader, counted([node], 2)[0]), what="x2")
    finally:
        reader.close()


def test_the_aggregator_will_not_start_with_unusable_tls_files(run: Processes, tmp_path: Path) -> None:
    pki = ClusterPki(tmp_path / "pki")
    other = pki.ca.issue("other", server=True)
    cert, key = ["--tls-cert", str(pki.server.cert)], ["--tls-key", str(pki.server.key)]
    for name, flags, message in (
        ("missing", ["--tls-cert", str(tmp_path / "nope.pem"), *key], "nope.pem: no such file"),
        ("mismatch", [*cert, "--tls-key", str(other.key)], "do not load as a pair"),
        ("no-key", cert, "both --tls-cert and --tls-key"),
        ("not-pem", [*cert, *key, "--tls-client-ca", str(tmp_path)], "--tls-client-ca"),
    ):
        process = run.aggregator(0, 0, *flags, name=name)
        assert process.popen.wait(30) == 2, process.output()
        assert message in process.output()
