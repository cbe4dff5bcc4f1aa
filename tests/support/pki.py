"""Throwaway certificate authorities and certificates for the TLS tests, as PEM files.

Made with the ``cryptography`` package (a dev dependency), not the openssl CLI: a test can
then ask for exactly the certificate it needs, including an expired one, in milliseconds
(P-256 keys).  Usage::

    ca = Authority(tmp_path / "pki")
    server = ca.issue("aggregator", dns=["aggregator.test"], ips=["127.0.0.1"], server=True)
    agent = ca.issue("node-1")                      # a client certificate, CN node-1
    old = ca.issue("node-1", name="expired", not_after=datetime.now(UTC) - timedelta(hours=1))

:func:`make_tls_material` is the fixed set the etcd tests use (a CA, a server certificate
for 127.0.0.1, a client certificate).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from calico_accountant.runtime.client_tls import ClientTls

__all__ = [
    "SERVER_NAME",
    "Authority",
    "ClusterPki",
    "Issued",
    "SecretVolume",
    "TlsMaterial",
    "make_tls_material",
    "served_certificate",
]

SERVER_NAME = "aggregator.test"
"""The only name in a :class:`ClusterPki` aggregator certificate: clients on 127.0.0.1 must
say ``--tls-server-name`` (the Service name in a real cluster)."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as written."""

    cert: Path
    key: Path
    serial: int

    def der(self) -> bytes:
        """The certificate in DER, to compare with what a TLS peer presented."""
        return x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(serialization.Encoding.DER)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Authority:
    """A self-signed CA whose certificate is ``<directory>/<name>.pem``."""

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self._subject = _name(name)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(self._subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert = directory / f"{name}.pem"
        self.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        common_name: str,
        *,
        name: str | None = None,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        server: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A leaf certificate written to ``<name>.pem`` and ``<name>.key`` (``name``
        defaults to the Common Name): a client certificate, or a server certificate with
        ``server`` (for ``dns`` and ``ips``).  Valid from an hour ago for a day unless told."""
        stem = name or common_name.replace(":", "_").replace("/", "_")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before or now - timedelta(hours=1))
            .not_valid_after(not_after or now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        alternative: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        alternative += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if alternative:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        issued = Issued(self.directory / f"{stem}.pem", self.directory / f"{stem}.key", serial)
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(issued.key, key)
        return issued


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files for a TLS etcd: a CA, a server cert for 127.0.0.1, and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_material(directory: Path) -> TlsMaterial:
    """A throwaway CA, a server certificate for 127.0.0.1 and localhost, a client certificate."""
    ca = Authority(directory, "ca")
    server = ca.issue("server", dns=["localhost"], ips=["127.0.0.1"], server=True)
    client = ca.issue("client")
    return TlsMaterial(ca.cert, server.cert, server.key, client.cert, client.key)


class ClusterPki:
    """The certificates of a mutual-TLS aggregator: one CA for the server and its clients,
    the aggregator's certificate for :data:`SERVER_NAME`, and client certificates on demand."""

    def __init__(self, directory: Path) -> None:
        self.ca = Authority(directory, "cluster-ca")
        self.server = self.ca.issue(
            "calico-accountant-aggregator", name="aggregator", dns=[SERVER_NAME], server=True
        )

    def server_flags(self) -> list[str]:
        """The aggregator's flags: its certificate, and every client needs one of the CA."""
        return ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key),
                "--tls-client-ca", str(self.ca.cert)]  # fmt: skip

    def client_tls(self, issued: Issued | None) -> ClientTls:
        """A client trusting the CA, presenting ``issued`` (None: no certificate)."""
        return ClientTls(
            ca=str(self.ca.cert),
            cert=str(issued.cert) if issued else None,
            key=str(issued.key) if issued else None,
            server_name=SERVER_NAME,
        )

    def client_flags(self, issued: Issued | None) -> list[str]:
        """The same as flags of ``calico-accountant agent``, ``nodes``, ``observe``."""
        tls = self.client_tls(issued)
        flags = ["--tls-ca", str(tls.ca), "--tls-server-name", SERVER_NAME]
        return flags + (["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if issued else [])


class SecretVolume:
    """A directory laid out the way the kubelet projects a Secret, and renewed the way it
    renews one: the files are symlinks through ``..data`` to a timestamped directory, and an
    update writes a new directory and swaps ``..data`` in one rename.  What cert-manager's
    renewal looks like to a process that reads ``tls.crt``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._versions = itertools.count(1)

    def path(self, name: str) -> Path:
        return self.directory / name

    def project(self, files: Mapping[str, bytes | Path]) -> None:
        """Make the volume hold exactly ``files`` (contents, or a file to copy)."""
        version = self.directory / f"..{next(self._versions)}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
        data = self.directory / "..data"
        previous = data.resolve() if data.is_symlink() else None
        staging = self.directory / "..data_tmp"
        staging.symlink_to(version.name)
        os.replace(staging, data)
        for name in files:
            link = self.directory / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if previous is not None:
            shutil.rmtree(previous)


def served_certificate(port: int, pki: ClusterPki, client: Issued) -> bytes:
    """The DER certificate a TLS server on 127.0.0.1:``port`` presents to a new connection
    (a handshake only, as ``client``, checked against the CA and :data:`SERVER_NAME`)."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
