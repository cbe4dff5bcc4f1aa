"""How the policy-hit commands print hits and ages: the text of each field, compact
lines, flat JSON, protobuf JSON.  Tables are :mod:`calico_accountant_cli.hit_table`.

Names a cluster user controls (pods, policies, nodes) reach a terminal only through
:func:`~calico_accountant_cli.terminal.terminal_safe`.  Times print in the local time
zone unless ``utc`` (``observe --utc``); the JSON forms are always RFC 3339 in UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.terminal import Color, terminal_safe

__all__ = [
    "HIT_COLUMNS",
    "age_text",
    "format_batch_jsonpb",
    "format_hit_compact",
    "format_hit_json",
    "format_lost",
    "hit_cells",
    "policy_text",
    "rule_text",
    "time_text",
    "verdict_color",
    "workload_text",
]

HIT_COLUMNS = ("TIME", "NODE", "WORKLOAD", "DIRECTION", "VERDICT", "POLICY", "RULE", "PACKETS", "BYTES")
"""The table's columns, in order (the counts are right-aligned)."""


def workload_text(hit: hpb.Hit) -> str:
    if hit.pod:
        return f"{hit.namespace}/{hit.pod}" if hit.namespace else hit.pod
    if hit.endpoint != spb.ENDPOINT_WORKLOAD:
        forward = " forward" if hit.endpoint == spb.ENDPOINT_HOST_FORWARD else ""
        return f"host {hit.host_endpoint or hit.interface} ({hit.interface}{forward})"
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


def rule_text(hit: hpb.Hit) -> str:
    """``#2 deny`` for the hit of a policy rule (its 0-based index among the policy's
    verdict rules, as the ``rule`` label of the metrics), else ``-``."""
    if hit.HasField("rule"):
        return f"#{hit.rule.index} {hit.rule.action}".rstrip()
    return "-"


def time_text(hit: hpb.Hit, *, utc: bool = False) -> str:
    moment = hit.time.ToDatetime(tzinfo=UTC)
    if not utc:
        moment = moment.astimezone()
    return moment.strftime("%b %d %H:%M:%S.%f")[:-3]


def _direction(hit: hpb.Hit) -> str:
    return spb.Direction.Name(hit.direction).lower() if hit.direction else "-"


def hit_cells(hit: hpb.Hit, *, utc: bool = False) -> tuple[str, ...]:
    """One table row, each cell terminal-safe, in :data:`HIT_COLUMNS` order."""
    cells = (
        time_text(hit, utc=utc),
        hit.node,
        workload_text(hit),
        _direction(hit),
        hit.verdict or "-",
        policy_text(hit),
        rule_text(hit),
        str(hit.packets),
        str(hit.bytes),
    )
    return tuple(terminal_safe(cell) for cell in cells)


def verdict_color(verdict: str) -> Color | None:
    return {"deny": Color.RED, "accept": Color.GREEN, "pass": Color.YELLOW, "log": Color.BLUE}.get(verdict)


def format_hit_compact(hit: hpb.Hit, *, utc: bool = False, color: bool = False) -> str:
    """One line per hit, like ``hubble observe``'s compact form: ``Dec 05 10:04:01.250
    [node-a] shop/web-1 ingress DENY by shop/allow-web rule #0 deny: 3 packets, 180 bytes``."""
    verdict = terminal_safe(hit.verdict or "-").upper()
    tint = verdict_color(hit.verdict)
    if tint is not None:
        verdict = tint.wrap(verdict, color)
    rule = f" rule {rule_text(hit)}" if hit.HasField("rule") else ""
    text = terminal_safe(f"{time_text(hit, utc=utc)} [{hit.node}] {workload_text(hit)} {_direction(hit)} ")
    tail = terminal_safe(f" by {policy_text(hit)}{rule}: {hit.packets} packets, {hit.bytes} bytes")
    return text + verdict + tail


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
    if hit.HasField("rule"):
        record["rule"] = {"index": hit.rule.index, "action": hit.rule.action}
    if hit.profile:
        record["profile"] = hit.profile
    if hit.endpoint != spb.ENDPOINT_WORKLOAD:
        record["endpoint"] = spb.EndpointKind.Name(hit.endpoint).lower().removeprefix("endpoint_")
        record["host_endpoint"] = hit.host_endpoint
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
