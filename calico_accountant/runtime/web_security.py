"""Serving with a web configuration (:mod:`calico_accountant.runtime.web_config`): TLS and basic auth.

* :class:`ServerTls` builds the server's :class:`ssl.SSLContext` and rebuilds it when the
  certificate, key or client CA files change (:class:`~calico_accountant.runtime.reloading.FileBacked`),
  so cert-manager or a rotated Secret takes effect at the next connection, without a
  restart.  The handshake is done by the caller in the connection's own thread, never
  in the accepting one: a client that stalls mid-handshake must not stop others from
  connecting.
* :class:`BasicAuth` checks an ``Authorization: Basic`` header against bcrypt hashes.
  bcrypt is slow on purpose (tens to hundreds of milliseconds); a scrape every few
  seconds must not cost that much CPU each time, so a successful check is remembered,
  keyed by a digest of user, password and hash (never the password itself), as
  exporter-toolkit does.  An unknown user costs a bcrypt check too, so the time of a
  refusal does not tell which user names exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import cast

from calico_accountant.runtime.reloading import FileBacked
from calico_accountant.runtime.web_config import ClientAuth, TlsServerConfig

__all__ = ["REALM", "BasicAuth", "ServerTls", "server_context"]

log = logging.getLogger(__name__)

REALM = "calico-accountant"

_DUMMY_HASH = b"$2b$10$7se7u.COzFI2SDXOzt3x.exvy0fJhqOzLP7tqucM/qqHHBmDkxtRW"
"""A hash no password is known to match: checked against for an unknown user."""

_SAN_TYPES = {"DNS", "IP Address", "email", "URI"}


def server_context(config: TlsServerConfig) -> ssl.SSLContext:
    """A server context from ``config``'s files as they are now (raises if they are unusable)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = config.min_version
    context.maximum_version = config.max_version
    context.load_cert_chain(str(config.cert_file), str(config.key_file))
    if config.client_auth is not ClientAuth.NONE:
        assert config.client_ca_file is not None  # the parser requires it
        context.load_verify_locations(cafile=str(config.client_ca_file))
        context.verify_mode = (
            ssl.CERT_REQUIRED if config.client_auth is ClientAuth.REQUIRE_AND_VERIFY else ssl.CERT_OPTIONAL
        )
    return context


class ServerTls:
    """The TLS side of a server: :meth:`handshake` turns an accepted socket into a TLS one."""

    def __init__(self, config: TlsServerConfig, *, what: str = "TLS", check_interval: float = 1.0) -> None:
        self.config = config
        files = [config.cert_file, config.key_file]
        if config.client_ca_file is not None:
            files.append(config.client_ca_file)
        self.contexts = FileBacked(
            files, lambda: server_context(config), what=what, check_interval=check_interval, logger=log
        )

    def handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        """Wrap ``sock`` (server side, handshake done) with the current certificates.
        Raises :class:`ssl.SSLError` or :class:`OSError` for a failed handshake and
        :class:`PermissionError` for a client certificate without an allowed SAN."""
        conn = self.contexts.get().wrap_socket(sock, server_side=True)
        allowed = self.config.client_allowed_sans
        if allowed:
            names = cast("tuple[tuple[str, str], ...]", (conn.getpeercert() or {}).get("subjectAltName", ()))
            sans = {value for kind, value in names if kind in _SAN_TYPES}
            if not sans.intersection(allowed):
                conn.close()
                raise PermissionError(f"client certificate has no allowed SAN (it has {sorted(sans)})")
        return conn


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against ``users`` (user -> bcrypt hash)."""

    def __init__(self, users: Mapping[str, bytes], *, remembered: int = 64) -> None:
        self._users = dict(users)
        self._remembered = remembered
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        try:
            import bcrypt  # only with basic auth configured: keeps it out of every daemon's memory

            matches = bcrypt.checkpw(password, hashed or _DUMMY_HASH)
        except ValueError:  # a hash bcrypt cannot read; the parser should have refused it
            return False
        if not matches or hashed is None:
            return False
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > self._remembered:
                self._ok.popitem(last=False)
        return True


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password
