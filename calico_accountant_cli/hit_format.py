"""How the policy-hit commands print hits and ages: table rows, flat JSON, protobuf JSON.

Names a cluster user controls (pods, policies, nodes) reach a terminal only through
:func:`~calico_accountant_cli.terminal.terminal_safe`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.terminal import terminal_safe

__all__ = [
    "ROW_HEADER",
    "age_text",
    "format_batch_jsonpb",
    "format_hit_json",
    "format_hit_row",
    "format_lost",
    "policy_text",
    "workload_text",
]


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
    if hit.kind == spb.ENDPOINT_ADMIN_DROP:
        return "(endpoint admin down)"
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
