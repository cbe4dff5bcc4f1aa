"""The client side of the policy-hit API, for ``observe``, ``top`` and ``nodes``.

Everything a command-line user can get wrong turns into a :class:`ClientError` with a
sentence that says what to do: an unreachable server, a bad filter or duration, a
server that speaks another API version (checked once per connection through
``ServerStatus.api_version``) or something that is not an aggregator at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc

from calico_accountant.contract import DEFAULT_AGGREGATOR_ADDRESS, HITS_API_VERSION
from calico_accountant.records import Direction, Verdict
from calico_accountant.runtime.client_tls import ClientTls, client_tls_from_args, open_channel
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc

__all__ = [
    "ClientError",
    "HitsClient",
    "build_filter",
    "exclusions_from_args",
    "filter_from_args",
    "parse_duration",
    "parse_moment",
]

VERDICTS = tuple(verdict.value for verdict in Verdict)
DIRECTIONS = tuple(direction.value for direction in Direction)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""What the client accepts (a Snapshot of a large cluster is big); the server sends less."""


class ClientError(Exception):
    """A problem to show the user as one line, without a traceback."""


# --- arguments -------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``2d`` or plain seconds; :class:`ClientError` otherwise."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    position, total = 0, 0.0
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * scale[match.group(2)]
        position = match.end()
    if not cleaned or position != len(cleaned):
        raise ClientError(f"bad duration {text!r}: use e.g. 30s, 5m, 1h30m")
    return timedelta(seconds=total)


def parse_moment(text: str, now: datetime) -> datetime:
    """A point in time: a duration back from ``now`` (``5m``, ``1h30m``) or an RFC 3339
    time (``2026-05-01T12:00:00Z``; without an offset it is local time);
    :class:`ClientError` otherwise."""
    try:
        return now - parse_duration(text)
    except ClientError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ClientError(
            f"bad time {text!r}: use a duration back from now (30s, 5m, 1h30m) "
            "or an RFC 3339 time (2026-05-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def build_filter(
    *,
    nodes: Sequence[str] = (),
    namespaces: Sequence[str] = (),
    pods: Sequence[str] = (),
    apps: Sequence[str] = (),
    policies: Sequence[str] = (),
    verdicts: Sequence[str] = (),
    directions: Sequence[str] = (),
    min_packets: int = 0,
) -> hpb.HitFilter:
    """A ``HitFilter``, validated here so a typo is reported before any connection."""
    verdicts = [v.strip().lower() for v in verdicts]
    directions = [d.strip().lower() for d in directions]
    for verdict in verdicts:
        if verdict not in VERDICTS:
            raise ClientError(f"bad filter: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ClientError(f"bad filter: direction {direction!r} is not ingress or egress")
    if min_packets < 0:
        raise ClientError("bad filter: --min-packets must not be negative")
    for name, values in (("node", nodes), ("namespace", namespaces), ("pod", pods), ("app", apps)):
        if any(not v.strip() for v in values):
            raise ClientError(f"bad filter: empty --{name}")
    return hpb.HitFilter(
        node=list(nodes),
        namespace=list(namespaces),
        pod=list(pods),
        app=list(apps),
        policy=list(policies),
        verdict=verdicts,
        direction=directions,
        min_packets=min_packets,
    )


def filter_from_args(args: Any) -> hpb.HitFilter:
    """The filter of the filter flags (the ``--not``-ed ones are :func:`exclusions_from_args`)."""
    return build_filter(
        nodes=args.node,
        namespaces=args.namespace,
        pods=args.pod,
        apps=args.app,
        policies=args.policy,
        verdicts=args.verdict,
        directions=args.direction,
        min_packets=args.min_packets,
    )


def exclusions_from_args(args: Any) -> list[hpb.HitFilter]:
    """One filter per ``--not``-ed flag: a hit matching any of them is left out."""
    out = []
    for dest, value in getattr(args, "excluded", []):
        if dest == "min_packets":
            out.append(build_filter(min_packets=value))
        else:
            out.append(build_filter(**{_FILTER_FIELDS[dest]: [value]}))  # type: ignore[arg-type]
    return out


_FILTER_FIELDS = {
    "node": "nodes",
    "namespace": "namespaces",
    "pod": "pods",
    "app": "apps",
    "policy": "policies",
    "verdict": "verdicts",
    "direction": "directions",
}


# --- the client -------------------------------------------------------------------------------


class HitsClient:
    """A synchronous ``PolicyHits`` client with friendly errors and a version check."""

    def __init__(self, target: str, *, timeout: float = 10.0, tls: ClientTls | None = None) -> None:
        if not re.fullmatch(r"\[?[\w.\-:]+\]?:\d+", target.strip()):
            raise ClientError(
                f"bad server address {target!r}: use HOST:PORT, e.g. {DEFAULT_AGGREGATOR_ADDRESS}"
            )
        self.target = target.strip()
        self.timeout = timeout
        self.tls = tls
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ]
        try:
            self._channel = open_channel(self.target, tls, options)
        except ValueError as error:  # TlsFileError: a file named by a flag is not usable
            raise ClientError(str(error)) from None
        self._stub = hpb_grpc.PolicyHitsStub(self._channel)  # type: ignore[no-untyped-call]
        self._checked: hpb.ServerStatusResponse | None = None

    @classmethod
    def from_args(cls, args: Any) -> HitsClient:
        """The client ``--server``, ``--timeout`` and the TLS flags describe."""
        try:
            tls = client_tls_from_args(args)
        except ValueError as error:
            raise ClientError(str(error)) from None
        return cls(args.server, timeout=args.timeout, tls=tls)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> HitsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_status(self) -> hpb.ServerStatusResponse:
        """``ServerStatus``, checking that the server speaks our API version."""
        try:
            status: hpb.ServerStatusResponse = self._stub.ServerStatus(
                hpb.ServerStatusRequest(), timeout=self.timeout, wait_for_ready=True
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._friendly(error) from None
            # Waiting for the server hides why it never became ready; one call that does
            # not wait reports the connection's last error (refused, a TLS handshake).
            try:
                status = self._stub.ServerStatus(hpb.ServerStatusRequest(), timeout=2)
            except grpc.RpcError as last:
                raise self._friendly(last) from None
        if status.api_version != HITS_API_VERSION:
            raise ClientError(
                f"the server at {self.target} speaks policy-hit API version "
                f"{status.api_version or 'unknown'} "
                f"(calico-accountant {status.version or '?'}); "
                f"this client speaks version {HITS_API_VERSION}: "
                "use a matching calico-accountant"
            )
        self._checked = status
        return status

    def _ensure_checked(self) -> None:
        if self._checked is None:
            self.server_status()

    def _require(self, feature: str, what: str) -> None:
        """A server that would ignore ``what`` (it lacks ``feature``) is an error: it would
        answer a different question than the one asked."""
        status = self._checked or self.server_status()
        if feature not in status.features:
            raise ClientError(
                f"the aggregator at {self.target} (calico-accountant {status.version or '?'}) "
                f"does not support {what}; use a matching calico-accountant"
            )

    def watch(self, request: hpb.WatchRequest) -> Iterator[hpb.HitBatch]:
        self._ensure_checked()
        if any(request.HasField(name) for name in ("since_time", "until")) or request.first or request.last:
            self._require(
                "watch_window", "--last, --first, --since or --until (plain observe means --last 20)"
            )
        if request.exclude:
            self._require("exclude", "--not")
        try:
            yield from self._stub.Watch(request)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._friendly(error) from None

    def snapshot(self, hit_filter: hpb.HitFilter) -> hpb.SnapshotResponse:
        self._ensure_checked()  # (Snapshot's exclude is not used by the CLI yet)
        try:
            response: hpb.SnapshotResponse = self._stub.Snapshot(
                hpb.SnapshotRequest(filter=hit_filter), timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise self._friendly(error) from None
        return response

    def list_nodes(self) -> hpb.ListNodesResponse:
        self._ensure_checked()
        try:
            response: hpb.ListNodesResponse = self._stub.ListNodes(
                hpb.ListNodesRequest(), timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise self._friendly(error) from None
        return response

    def _friendly(self, error: grpc.RpcError) -> ClientError:
        code = error.code()
        details = error.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and _handshake_failed(details):
            if self.tls is None:
                return ClientError(
                    f"the aggregator at {self.target} closed the connection ({details.strip()}); "
                    "if it serves TLS, give --tls-ca (and --tls-cert/--tls-key)"
                )
            return ClientError(
                f"the TLS handshake with the aggregator at {self.target} failed ({details.strip()}); "
                "check --tls-ca, --tls-cert/--tls-key (a certificate of the aggregator's client CA, "
                "not expired) and --tls-server-name"
            )
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return ClientError(
                f"cannot reach the aggregator at {self.target} ({code.name.lower()}: {details.strip()}); "
                "is it running, and is --server (or $CALICO_ACCOUNTANT_SERVER) right?"
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return ClientError(
                f"the server at {self.target} does not offer the calico_accountant.v1 policy-hit API: "
                "it is not a calico-accountant aggregator, or an incompatible version"
            )
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return ClientError(f"the server rejected the request: {details}")
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return ClientError(f"the aggregator at {self.target} refused this client: {details}")
        return ClientError(f"the aggregator at {self.target} answered {code.name}: {details}")


def _handshake_failed(details: str) -> bool:
    """Whether an UNAVAILABLE came from TLS rather than an absent server (gRPC says which
    only in its text; a server that closes the socket during the handshake reads as a
    plain "Socket closed")."""
    text = details.lower()
    return any(word in text for word in ("ssl", "handshake", "certificate", "verification", "socket closed"))
