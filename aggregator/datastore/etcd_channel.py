"""One gRPC channel to an etcd cluster, for everything the aggregator keeps there.

The endpoints of an :class:`~aggregator.datastore.spec.EtcdSpec` are tried in turn: a
caller whose request failed calls :meth:`EtcdChannel.rotate` and the next request goes
to the next endpoint.  TLS files are read when a channel is opened, so a rotated client
certificate is used from the next connection on.
"""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
import grpc.aio

from aggregator.datastore.spec import EtcdSpec

__all__ = ["CHANNEL_OPTIONS", "EtcdChannel"]

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class EtcdChannel:
    def __init__(self, spec: EtcdSpec) -> None:
        if not spec.endpoints:
            raise ValueError("etcd needs at least one endpoint")
        if spec.tls is not None:
            for path in (spec.tls.ca, spec.tls.cert, spec.tls.key):
                if path is not None and not path.is_file():
                    raise ValueError(f"etcd TLS file not found: {path}")
        self.spec = spec
        self._index = 0
        self._channel: grpc.aio.Channel | None = None

    @property
    def target(self) -> str:
        return self.spec.endpoints[self._index].target

    def get(self) -> grpc.aio.Channel:
        """The open channel (opened to the current endpoint on first use)."""
        if self._channel is None:
            tls = self.spec.tls
            if tls is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            else:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=tls.ca.read_bytes() if tls.ca else None,
                    private_key=tls.key.read_bytes() if tls.key else None,
                    certificate_chain=tls.cert.read_bytes() if tls.cert else None,
                )
                self._channel = grpc.aio.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
        return self._channel

    async def rotate(self) -> None:
        """Drop the channel; the next :meth:`get` connects to the next endpoint."""
        await self.close()
        self._index = (self._index + 1) % len(self.spec.endpoints)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close(None)
