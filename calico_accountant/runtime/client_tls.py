"""TLS for the aggregator's clients (the node agent and the CLI): flags, PEM files, channels.

Both clients take the same flags (``--tls-ca``, ``--tls-cert``, ``--tls-key``,
``--tls-server-name``, with ``CALICO_ACCOUNTANT_TLS_*`` defaults), so they are defined once
here.  Without any of them a client speaks plaintext, as before TLS existed.

The PEM files are read when a channel is opened, never cached: the agent opens a new
channel for every (re)connect, so a client certificate that cert-manager renewed is used
from the next connection on without a restart.  A file that is missing, unreadable or not
PEM is a :class:`TlsFileError` naming the flag and the path, not a handshake failure with
an OpenSSL error code.

gRPC is imported inside the functions that need it: the CLI registers every subcommand's
flags at start-up, and ``parse`` should not pay for gRPC.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calico_accountant.runtime.flags import ENV_PREFIX, FlagSet

if TYPE_CHECKING:
    import grpc
    import grpc.aio

__all__ = [
    "ClientTls",
    "TlsFileError",
    "add_client_tls_arguments",
    "client_tls_from_args",
    "file_error",
    "open_aio_channel",
    "open_channel",
    "read_pem",
]

ChannelOptions = Sequence[tuple[str, Any]]


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


def file_error(flag: str, path: str, error: OSError) -> TlsFileError:
    """The :class:`TlsFileError` for a file given with ``flag`` that could not be opened."""
    if isinstance(error, FileNotFoundError):
        return TlsFileError(f"{flag} {path}: no such file")
    return TlsFileError(f"{flag} {path}: cannot read it ({error.strerror or error})")


def read_pem(path: str, flag: str) -> bytes:
    """The bytes of a PEM file given with ``flag``, or :class:`TlsFileError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise file_error(flag, path, error) from None
    if b"-----BEGIN " not in data:
        raise TlsFileError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
    return data


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a client verifies the aggregator and proves who it is."""

    ca: str | None = None
    """CA bundle the server's certificate must chain to (None: the system's roots)."""
    cert: str | None = None
    """Client certificate (chain) presented to the server; with :attr:`key`."""
    key: str | None = None
    server_name: str | None = None
    """The name checked in the server's certificate instead of the target's host."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        if self.ca is None and self.cert is None:
            raise ValueError("TLS needs --tls-ca or a client certificate (--tls-cert and --tls-key)")

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, key, certificate) read now; :class:`TlsFileError` for a file that is not usable."""
        ca = read_pem(self.ca, "--tls-ca") if self.ca else None
        key = read_pem(self.key, "--tls-key") if self.key else None
        cert = read_pem(self.cert, "--tls-cert") if self.cert else None
        return ca, key, cert

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files as they are now."""
        import grpc

        ca, key, cert = self.read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def open_channel(target: str, tls: ClientTls | None, options: ChannelOptions = ()) -> grpc.Channel:
    """A synchronous channel: plaintext without ``tls``, else TLS with the files read now."""
    import grpc

    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])


def open_aio_channel(target: str, tls: ClientTls | None, options: ChannelOptions = ()) -> grpc.aio.Channel:
    """As :func:`open_channel`, for asyncio."""
    import grpc.aio

    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])


def add_client_tls_arguments(target: Any, environ: Mapping[str, str] | None = None) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name`` (environment
    ``CALICO_ACCOUNTANT_TLS_*``, for the daemons and the CLI alike) on a :class:`FlagSet`
    or a parser (then read from ``environ``, by default the process's)."""
    flags = target if isinstance(target, FlagSet) else FlagSet(target, environ=environ)
    group = flags.group("TLS to the aggregator (default: plaintext)")
    env = f"{ENV_PREFIX}TLS_"
    group.add(
        "--tls-ca",
        metavar="FILE",
        env=env + "CA",
        help="CA bundle the aggregator's certificate must chain to; turns TLS on",
    )
    group.add(
        "--tls-cert",
        metavar="FILE",
        env=env + "CERT",
        help="client certificate to present, read afresh at every connection",
    )
    group.add("--tls-key", metavar="FILE", env=env + "KEY", help="the client certificate's key")
    group.add(
        "--tls-server-name",
        metavar="NAME",
        env=env + "SERVER_NAME",
        help="name to check in the aggregator's certificate instead of the address's host",
    )


def client_tls_from_args(args: argparse.Namespace) -> ClientTls | None:
    """The TLS settings of parsed flags (None: plaintext); ValueError for a bad combination."""
    ca, cert, key = args.tls_ca or None, args.tls_cert or None, args.tls_key or None
    name = args.tls_server_name or None
    if ca is None and cert is None and key is None:
        if name:
            raise ValueError("--tls-server-name needs TLS: give --tls-ca (and --tls-cert/--tls-key)")
        return None
    return ClientTls(ca=ca, cert=cert, key=key, server_name=name)
