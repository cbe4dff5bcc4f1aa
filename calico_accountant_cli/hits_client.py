"""The client side of the policy-hit API, for ``observe``, ``top`` and ``nodes``.

Everything a command-line user can get wrong turns into a :class:`ClientError` with a
sentence that says what to do: an unreachable server, a bad filter or duration, a
server that speaks another API version (checked once per connection through
``ServerStatus.api_version``) or something that is not an aggregator at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import json_format

from calico_accountant.contract import DEFAULT_AGGREGATOR_ADDRESS, HITS_API_VERSION
from calico_accountant.records import Direction, Verdict
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.terminal import terminal_safe

__all__ = [
    "ClientError",
    "HitsClient",
    "build_filter",
    "filter_from_args",
    "format_hit_json",
    "format_hit_row",
    "format_lost",
    "parse_duration",
    "policy_text",
    "workload_text",
]

#: The API version this client speaks (``calico_accountant.v1``).
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


# --- the client -------------------------------------------------------------------------------


class HitsClient:
    """A synchronous ``PolicyHits`` client with friendly errors and a version check."""

    def __init__(self, target: str, *, timeout: float = 10.0) -> None:
        if not re.fullmatch(r"\[?[\w.\-:]+\]?:\d+", target.strip()):
            raise ClientError(
                f"bad server address {target!r}: use HOST:PORT, e.g. {DEFAULT_AGGREGATOR_ADDRESS}"
            )
        self.target = target.strip()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ],
        )
        self._stub = hpb_grpc.PolicyHitsStub(self._channel)  # type: ignore[no-untyped-call]
        self._checked: hpb.ServerStatusResponse | None = None

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
            raise self._friendly(error) from None
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

    def watch(self, request: hpb.WatchRequest) -> Iterator[hpb.HitBatch]:
        self._ensure_checked()
        try:
            yield from self._stub.Watch(request)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._friendly(error) from None

    def snapshot(self, hit_filter: hpb.HitFilter) -> hpb.SnapshotResponse:
        self._ensure_checked()
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
        return ClientError(f"the aggregator at {self.target} answered {code.name}: {details}")


# --- formatting -----------------------------------------------------------------------------


def workload_text(hit: hpb.Hit) -> str:
    if hit.pod:
        return f"{hit.namespace}/{hit.pod}" if hit.namespace else hit.pod
    return f"{hit.node} (all workloads)" if hit.kind == spb.POLICY_RULE else hit.interface or "-"


def policy_text(hit: hpb.Hit) -> str:
    if hit.HasField("policy"):
        policy = hit.policy
        name = f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name
        prefix = f"{policy.tier}:" if policy.tier and policy.tier != "default" else ""
        return prefix + name
    if hit.kind == spb.NO_POLICY_DROP:
        return "(no policy)"
    if hit.kind == spb.NO_PROFILE_DROP:
        return "(no profile)"
    if hit.profile:
        return f"profile {hit.profile}"
    return "-"


def _time_text(hit: hpb.Hit) -> str:
    moment = hit.time.ToDatetime(tzinfo=UTC)
    return moment.strftime("%b %d %H:%M:%S.%f")[:-3]


ROW_HEADER = (
    f"{'TIME':<19} {'NODE':<16} {'WORKLOAD':<36} {'DIR':<7} {'VERDICT':<7} {'POLICY':<36} PACKETS BYTES"
)


def format_hit_row(hit: hpb.Hit) -> str:
    direction = spb.Direction.Name(hit.direction).lower() if hit.direction else "-"
    return terminal_safe(
        f"{_time_text(hit):<19} {hit.node:<16} {workload_text(hit):<36} {direction:<7} {hit.verdict:<7} "
        f"{policy_text(hit):<36} {hit.packets} {hit.bytes}"
    )


def format_lost(lost: int) -> str:
    return f"EVENTS LOST: {lost} hits were dropped because this client fell behind"


def format_hit_json(hit: hpb.Hit) -> str:
    """One hit as a flat JSON object (the ``-o json`` form)."""
    record: dict[str, Any] = {
        "time": hit.time.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "node": hit.node,
        "namespace": hit.namespace,
        "pod": hit.pod,
        "app": hit.app,
        "interface": hit.interface,
        "direction": spb.Direction.Name(hit.direction).lower() if hit.direction else "",
        "verdict": hit.verdict,
        "kind": spb.CounterKind.Name(hit.kind).lower(),
        "packets": hit.packets,
        "bytes": hit.bytes,
    }
    if hit.HasField("policy"):
        record["policy"] = json_format.MessageToDict(hit.policy, preserving_proto_field_name=True)
    if hit.profile:
        record["profile"] = hit.profile
    return json.dumps(record, separators=(",", ":"), sort_keys=False)


def format_batch_jsonpb(batch: hpb.HitBatch) -> str:
    """The ``-o jsonpb`` form: each message in protobuf's JSON mapping, one per line."""
    return json.dumps(
        json_format.MessageToDict(batch, preserving_proto_field_name=True), separators=(",", ":")
    )


def age_text(moment: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
