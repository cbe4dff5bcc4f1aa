"""The aggregator's TLS server credentials, re-read when the files change.

cert-manager renews a certificate well before it expires and the kubelet swaps the new
files into the mounted Secret; the aggregator must serve the new certificate without a
restart (a restart would cost every agent a reconnect and a full snapshot).  gRPC's
``dynamic_ssl_server_credentials`` asks a fetcher before *every* new connection's
handshake whether the configuration changed; :class:`CertificateFiles` answers by
comparing the files' identity (device, inode, size, mtime) with those it last loaded,
which costs three ``stat`` calls per connection.  Connections already open keep the
certificate they were made with: an agent's stream is not dropped by a renewal.

A renewal caught half-way (the certificate written, the key not yet) does not load: the
pair is checked with :mod:`ssl` first, the old configuration stays, and the next
connection after the files change again tries anew.  Nothing here raises into gRPC: a
fetcher that raised would fail the handshake of the client that happened to trigger it.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc

from calico_accountant.runtime.client_tls import TlsFileError, file_error, read_pem

__all__ = ["CertificateFiles", "ServerTls", "server_credentials"]

log = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The PEM files of the aggregator's gRPC port (``--tls-cert``, ``--tls-key``,
    ``--tls-client-ca``)."""

    cert: str
    key: str
    client_ca: str | None = None
    """Every client must present a certificate chaining to this CA; None: none asked for."""

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """(flag, path) of every file."""
        files = (("--tls-cert", self.cert), ("--tls-key", self.key))
        return files if self.client_ca is None else (*files, ("--tls-client-ca", self.client_ca))


class CertificateFiles:
    """Loads :class:`ServerTls` files into gRPC configurations, again whenever they change.

    :meth:`fetch` is called from gRPC's own threads, hence the lock.
    """

    def __init__(self, tls: ServerTls) -> None:
        self.tls = tls
        self._lock = threading.Lock()
        self._signature = self._stat()
        self.initial = self._load()
        """The configuration at start-up; :class:`TlsFileError` if the files are not usable."""
        self.reloads = 0
        self._problem = ""
        """The last problem logged (each is logged once, not at every connection)."""

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and load, else None (keep the current)."""
        with self._lock:
            try:
                signature = self._stat()
                if signature == self._signature:
                    return None
                self._signature = signature  # a set that fails is retried when it changes again
                configuration = self._load()
                if self._stat() != signature:
                    raise TlsFileError("the files changed while they were read")
            except TlsFileError as error:
                if str(error) != self._problem:  # once per problem, not once per connection
                    self._problem = str(error)
                    log.warning("TLS files not reloaded, serving the previous certificate: %s", error)
                return None
            self._problem = ""
            self.reloads += 1
            log.info("TLS certificate reloaded from %s (reload %d)", self.tls.cert, self.reloads)
            return configuration

    def _stat(self) -> Signature:
        signature = []
        for flag, path in self.tls.files:
            try:
                s = os.stat(path)
            except OSError as error:
                raise file_error(flag, path, error) from None
            signature.append((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns))
        return tuple(signature)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        tls = self.tls
        cert, key = read_pem(tls.cert, "--tls-cert"), read_pem(tls.key, "--tls-key")
        ca = read_pem(tls.client_ca, "--tls-client-ca") if tls.client_ca else None
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            check.load_cert_chain(tls.cert, tls.key)
        except ssl.SSLError as error:
            raise TlsFileError(
                f"--tls-cert {tls.cert} and --tls-key {tls.key} do not load as a pair: {error}"
            ) from None
        if tls.client_ca:
            try:
                check.load_verify_locations(cafile=tls.client_ca)
            except ssl.SSLError as error:
                raise TlsFileError(f"--tls-client-ca {tls.client_ca} does not load: {error}") from None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port`` that follow the files; with a client CA, a
    client without a certificate of that CA fails the handshake."""
    files = CertificateFiles(tls)
    # gRPC documents None as "unchanged"; its type stubs do not.
    fetch = cast("Callable[[], grpc.ServerCertificateConfiguration]", files.fetch)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, fetch, require_client_authentication=tls.client_ca is not None
    )
