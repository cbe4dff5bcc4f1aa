"""TLS settings without processes: flags to settings, file errors, reloading, trust decisions."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from aggregator.cli import add_arguments as add_aggregator_arguments
from aggregator.cli import config_from_args as aggregator_config
from aggregator.trust.access import AccessRules, NodeIdentityTemplate
from aggregator.trust.credentials import CertificateFiles, ServerTls
from aggregator.trust.identity import Credential, identify_by_certificate, no_identity
from aggregator.trust.port import port_trust
from calico_accountant.runtime.client_tls import (
    ClientTls,
    TlsFileError,
    add_client_tls_arguments,
    client_tls_from_args,
)
from calico_accountant_cli.hits_client import ClientError, HitsClient
from node_agent.agent import add_arguments as add_agent_arguments
from node_agent.agent import config_from_args as agent_config
from tests.support.pki import Authority, Issued


def parse(add: Any, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "pki")


@pytest.fixture
def server(ca: Authority) -> Issued:
    return ca.issue("aggregator", dns=["aggregator.test"], server=True)


# --- clients --------------------------------------------------------------------------------


def test_without_tls_flags_clients_speak_plaintext() -> None:
    assert client_tls_from_args(parse(add_client_tls_arguments)) is None


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--tls-cert", "c.pem"], "go together"),
        (["--tls-key", "k.pem", "--tls-ca", "ca.pem"], "go together"),
        (["--tls-server-name", "aggregator"], "needs TLS"),
    ],
)
def test_client_flag_combinations_that_cannot_work(argv: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        client_tls_from_args(parse(add_client_tls_arguments, *argv))


def test_client_tls_from_the_environment() -> None:
    parser = argparse.ArgumentParser()
    add_client_tls_arguments(
        parser, {"CALICO_ACCOUNTANT_TLS_CA": "/ca.pem", "CALICO_ACCOUNTANT_TLS_SERVER_NAME": "agg"}
    )
    tls = client_tls_from_args(parser.parse_args([]))
    assert tls == ClientTls(ca="/ca.pem", server_name="agg")
    assert tls.options() == [("grpc.ssl_target_name_override", "agg")]


def test_file_errors_name_the_flag_and_the_path(tmp_path: Path, ca: Authority) -> None:
    with pytest.raises(TlsFileError, match=r"--tls-ca .*missing\.pem: no such file"):
        ClientTls(ca=str(tmp_path / "missing.pem")).read()
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(TlsFileError, match=r"--tls-cert .*junk\.pem: not a PEM file"):
        ClientTls(ca=str(ca.cert), cert=str(tmp_path / "junk.pem"), key=str(ca.cert)).read()
    with pytest.raises(TlsFileError, match=r"--tls-key .*: cannot read it"):
        ClientTls(cert=str(ca.cert), key=str(tmp_path)).read()


def test_the_agent_takes_the_tls_flags_and_fails_early_on_a_missing_file(
    tmp_path: Path, ca: Authority
) -> None:
    agent = ca.issue("node-1")
    flags = ["--node", "node-1", "--tls-ca", str(ca.cert), "--tls-cert", str(agent.cert)]
    config = agent_config(parse(add_agent_arguments, *flags, "--tls-key", str(agent.key)))
    assert config.tls == ClientTls(ca=str(ca.cert), cert=str(agent.cert), key=str(agent.key))
    assert agent_config(parse(add_agent_arguments, "--node", "n")).tls is None
    with pytest.raises(ValueError, match=r"--tls-key .*gone\.key: no such file"):
        agent_config(parse(add_agent_arguments, *flags, "--tls-key", str(tmp_path / "gone.key")))


def test_the_cli_client_turns_file_problems_into_one_line(tmp_path: Path) -> None:
    args = argparse.Namespace(
        server="127.0.0.1:1", timeout=1.0, tls_ca=str(tmp_path / "ca.pem"), tls_cert=None, tls_key=None,
        tls_server_name=None,
    )  # fmt: skip
    with pytest.raises(ClientError, match=r"--tls-ca .*ca\.pem: no such file"):
        HitsClient.from_args(args)
    args.tls_ca, args.tls_cert = None, "c.pem"
    with pytest.raises(ClientError, match="go together"):
        HitsClient.from_args(args)


# --- the aggregator -------------------------------------------------------------------------


def test_aggregator_flags_make_tls_and_access_rules(ca: Authority, server: Issued) -> None:
    config = aggregator_config(
        parse(
            add_aggregator_arguments,
            *("--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert)),
            *("--node-identity-template", "system:node:{node}", "--api-client-identities", "grafana, kiali"),
        )
    )
    assert config.tls == ServerTls(str(server.cert), str(server.key), str(ca.cert))
    assert config.access.template == NodeIdentityTemplate("system:node:{node}")
    assert config.access.api_clients == frozenset({"grafana", "kiali"})
    plain = aggregator_config(parse(add_aggregator_arguments))
    assert plain.tls is None and plain.access == AccessRules()
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        aggregator_config(parse(add_aggregator_arguments, "--tls-client-ca", str(ca.cert)))


def test_enforcement_follows_verified_identities(ca: Authority, server: Issued) -> None:
    plaintext = port_trust(None, AccessRules())
    assert plaintext.credentials is None and plaintext.identify is no_identity
    assert not plaintext.access.enforce
    encrypted_only = port_trust(ServerTls(str(server.cert), str(server.key)), AccessRules())
    assert encrypted_only.credentials is not None and not encrypted_only.access.enforce
    mutual = port_trust(ServerTls(str(server.cert), str(server.key), str(ca.cert)), AccessRules())
    assert mutual.identify is identify_by_certificate and mutual.access.enforce
    with pytest.raises(ValueError, match="needs verified identities"):
        port_trust(None, AccessRules(api_clients=frozenset({"grafana"})))


def test_an_api_client_that_is_also_a_node_identity_is_warned_about(
    ca: Authority, server: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    tls = ServerTls(str(server.cert), str(server.key), str(ca.cert))
    with caplog.at_level(logging.WARNING, logger="aggregator.trust.port"):
        port_trust(tls, AccessRules(api_clients=frozenset({"grafana"})))
    assert "also names node 'grafana'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aggregator.trust.port"):
        port_trust(
            tls,
            AccessRules(template=NodeIdentityTemplate("system:node:{node}"), api_clients=frozenset({"g"})),
        )
    assert not caplog.text


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def test_a_certificate_identity_comes_from_the_auth_context() -> None:
    context: Any = _Context(
        {"x509_common_name": [b"system:node:n1"], "x509_subject_alternative_name": [b"n1.nodes.example"]}
    )
    identity = identify_by_certificate(context)
    assert identity is not None and identity.credential is Credential.CERTIFICATE
    assert identity.names == ("system:node:n1", "n1.nodes.example")
    assert identify_by_certificate(_Context({})) is None  # type: ignore[arg-type]


# --- reloading ------------------------------------------------------------------------------


def test_server_files_reload_when_they_change_and_only_then(
    ca: Authority, server: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    files = CertificateFiles(ServerTls(str(server.cert), str(server.key), str(ca.cert)))
    assert files.fetch() is None and files.reloads == 0
    renewed = ca.issue("aggregator", name="renewed", server=True)
    os.replace(renewed.cert, server.cert)  # the certificate first, its key not yet
    with caplog.at_level(logging.WARNING, logger="aggregator.trust.credentials"):
        assert files.fetch() is None
        assert files.fetch() is None  # the same broken set: not tried, nor logged, again
        os.replace(renewed.key, server.key)
        assert files.fetch() is not None and files.reloads == 1
        assert files.fetch() is None
        server.key.unlink()
        assert files.fetch() is None and files.fetch() is None
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "do not load as a pair" in messages[0]
    assert "--tls-key" in messages[1] and "no such file" in messages[1]


def test_unusable_server_files_are_refused_at_start(ca: Authority, server: Issued) -> None:
    other = ca.issue("other", server=True)
    with pytest.raises(TlsFileError, match="do not load as a pair"):
        CertificateFiles(ServerTls(str(server.cert), str(other.key)))
    with pytest.raises(TlsFileError, match=r"--tls-client-ca .*: not a PEM file"):
        bogus = server.cert.parent / "bogus-ca.pem"
        bogus.write_text("not a CA\n")
        CertificateFiles(ServerTls(str(server.cert), str(server.key), str(bogus)))
