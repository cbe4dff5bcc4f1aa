"""The checkpoint's bytes: versioned, checksummed, compact, and decoded all-or-nothing.

Layout: one header line of JSON (format name, format version, the writer's version, when,
the payload's length and SHA-256), a newline, then the payload: zlib-compressed JSON of
the nodes (state and counters), the series and the tombstones.  Decoding checks the
header, the length, the digest and every field's type and range before it returns
anything, so a checkpoint is either restored whole or refused with a reason
(:class:`CheckpointError`): never half-applied.

The payload is columnar enough to stay small (a counter is one JSON array, repeated
strings are left to zlib), and cheap to build from a consistent copy of the state.
"""

from __future__ import annotations

import enum
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.checkpoint.json_text import object_text
from aggregator.ledger.state import CounterState, NodeRecord, NodeState
from aggregator.series.views import FamilySeries
from calico_accountant.records import CounterKey, Direction, EndpointKind, Kind, RuleAction

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "CheckpointProblem",
    "decode",
    "encode",
]

FORMAT = "calico-accountant-checkpoint"
FORMAT_VERSION = 1
_MAX_U64 = 2**64 - 1
_ACTIONS = frozenset({"", *(action.value for action in RuleAction)})
# A restore decodes every counter of the cluster (millions): enum members by value through a
# dict (calling the enum is ~0.5 us a field) and keys built with ``tuple.__new__``.
_KINDS = {kind.value: kind for kind in Kind}
_DIRECTIONS = {direction.value: direction for direction in Direction}
_ENDPOINTS = {endpoint.value: endpoint for endpoint in EndpointKind}


class CheckpointProblem(enum.StrEnum):
    """Why a checkpoint was refused (the ``reason`` of its self-metric)."""

    FOREIGN = "foreign"
    """Not a checkpoint of this format version (another program, or an incompatible release)."""
    CORRUPT = "corrupt"
    """Truncated, altered, or not what it says it is."""


class CheckpointError(ValueError):
    def __init__(self, problem: CheckpointProblem, detail: str) -> None:
        super().__init__(f"{problem.value} checkpoint: {detail}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything an aggregator needs to continue exactly where another one stopped."""

    created: float
    written_by: str
    nodes: Sequence[NodeRecord]
    series: Sequence[FamilySeries]
    tombstones: Sequence[FamilySeries]


# -- encoding ------------------------------------------------------------------------------


def _counter_row(state: CounterState) -> list[Any]:
    """16 fields, and a 17th (the endpoint kind) only for host endpoint counters: a
    checkpoint without them stays readable by aggregators that predate host endpoints."""
    key = state.key
    row = [
        key.kind.value,
        key.family,
        key.direction.value,
        key.interface,
        key.chain,
        key.tier,
        key.rule_index,
        key.action,
        state.raw_packets,
        state.raw_bytes,
        list(state.rule_ids),
        state.total_packets,
        state.total_bytes,
        state.chain_comment,
        list(state.group_members),
        state.retired_at,
    ]
    if key.endpoint is not EndpointKind.WORKLOAD:
        row.append(key.endpoint.value)
    return row


def _node_text(record: NodeRecord) -> str:
    state = record.state
    fields = {
        "node": state.node,
        "instance_id": state.instance_id,
        "sequence": state.sequence,
        "read_time": state.read_time,
        "received_at": state.received_at,
        "agent_version": state.agent_version,
        "snapshots": state.snapshots,
        "diagnostic_counts": state.diagnostic_counts,
        "diagnostic_totals": state.diagnostic_totals,
        "resets": state.resets,
        "sequence_gaps": state.sequence_gaps,
        "out_of_order": state.out_of_order,
        "invalid_counters": state.invalid_counters,
        "limit_refusals": state.limit_refusals,
        "chain_comments": dict(record.chain_comments),
    }
    return object_text(fields, large={"counters": [_counter_row(counter) for counter in record.counters]})


def _family_text(family: FamilySeries) -> str:
    values = [[list(labels), value[0], value[1]] for labels, value in family.values.items()]
    return object_text(
        {"family": family.family, "labels": list(family.label_names)}, large={"values": values}
    )


def encode(checkpoint: Checkpoint, *, level: int = 1) -> bytes:
    """The checkpoint's bytes (zlib ``level`` 1 by default: the writer runs every few
    seconds, and level 1 gets most of the size for a fraction of the time).  The JSON is
    written in slices (:mod:`.json_text`): one ``json.dumps`` of a million series held the
    GIL for up to a second."""
    body = (
        '{"nodes":['
        + ",".join(map(_node_text, checkpoint.nodes))
        + '],"series":['
        + ",".join(map(_family_text, checkpoint.series))
        + '],"tombstones":['
        + ",".join(map(_family_text, checkpoint.tombstones))
        + "]}"
    )
    payload = zlib.compress(body.encode(), level)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "written_by": checkpoint.written_by,
        "created": checkpoint.created,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


# -- decoding ------------------------------------------------------------------------------


def decode(data: bytes) -> Checkpoint:
    """The checkpoint in ``data``; :class:`CheckpointError` when it is not one of ours or
    not intact."""
    head, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(head) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(CheckpointProblem.FOREIGN, "no calico-accountant checkpoint header")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            CheckpointProblem.FOREIGN,
            f"format version {header.get('version')!r}, this aggregator reads {FORMAT_VERSION} "
            f"(written by calico-accountant {header.get('written_by', '?')})",
        )
    if header.get("bytes") != len(payload) or header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise CheckpointError(
            CheckpointProblem.CORRUPT, "payload length or SHA-256 does not match its header"
        )
    try:
        body = json.loads(zlib.decompress(payload))
        return Checkpoint(
            created=_number(header.get("created")),
            written_by=_text(header.get("written_by", "")),
            nodes=[_node(row) for row in _list(body["nodes"])],
            series=[_family(row) for row in _list(body["series"])],
            tombstones=[_family(row) for row in _list(body["tombstones"])],
        )
    except (ValueError, TypeError, KeyError, IndexError, zlib.error, RecursionError) as error:
        raise CheckpointError(CheckpointProblem.CORRUPT, f"{type(error).__name__}: {error}") from None


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _count(value: object) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_U64:
        raise ValueError(f"expected a counter, got {value!r}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _texts(value: object) -> tuple[str, ...]:
    """A list of strings as a tuple (the types checked in C: no Python call per string)."""
    values = tuple(_list(value))
    if not set(map(type, values)) <= {str}:
        raise TypeError(f"expected strings, got {values!r:.200}")
    return values


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError("expected an object of counts")
    return {_text(k): _count(v) for k, v in value.items()}


def _counter(row: object) -> CounterState:
    fields = _list(row)
    if len(fields) not in (16, 17):
        raise ValueError(f"a counter has 16 or 17 fields, not {len(fields)}")
    endpoint = _ENDPOINTS[_text(fields[16])] if len(fields) == 17 else EndpointKind.WORKLOAD
    family, rule_index, action = fields[1], fields[6], _text(fields[7])
    if family not in (4, 6) or type(rule_index) is not int or rule_index < -1 or action not in _ACTIONS:
        raise ValueError(f"bad counter key fields {fields[:8]!r}")
    key = tuple.__new__(
        CounterKey,
        (
            _KINDS[_text(fields[0])],
            family,
            _DIRECTIONS[_text(fields[2])],
            _text(fields[3]),
            _text(fields[4]),
            _text(fields[5]),
            rule_index,
            action,
            endpoint,
        ),
    )
    retired = fields[15]
    return CounterState(
        key=key,
        raw_packets=_count(fields[8]),
        raw_bytes=_count(fields[9]),
        rule_ids=_texts(fields[10]),
        total_packets=_count(fields[11]),
        total_bytes=_count(fields[12]),
        chain_comment=_text(fields[13]),
        group_members=_texts(fields[14]),
        retired_at=None if retired is None else _number(retired),
    )


def _node(row: object) -> NodeRecord:
    if not isinstance(row, dict):
        raise TypeError("a node is an object")
    state = NodeState(
        node=_text(row["node"]),
        instance_id=_text(row["instance_id"]),
        sequence=_count(row["sequence"]),
        read_time=_number(row["read_time"]),
        received_at=_number(row["received_at"]),
        agent_version=_text(row["agent_version"]),
        snapshots=_count(row["snapshots"]),
        diagnostic_counts=_counts(row["diagnostic_counts"]),
        diagnostic_totals=_counts(row["diagnostic_totals"]),
        resets=_counts(row["resets"]),
        sequence_gaps=_count(row["sequence_gaps"]),
        out_of_order=_count(row["out_of_order"]),
        invalid_counters=_count(row["invalid_counters"]),
        limit_refusals=_count(row["limit_refusals"]),
    )
    comments = row["chain_comments"]
    if not isinstance(comments, dict):
        raise TypeError("chain_comments is an object")
    return NodeRecord(
        state,
        tuple(_counter(counter) for counter in _list(row["counters"])),
        {_text(k): _text(v) for k, v in comments.items()},
    )


def _family(row: object) -> FamilySeries:
    if not isinstance(row, dict):
        raise TypeError("a family is an object")
    names = _texts(row["labels"])
    values: dict[tuple[str, ...], tuple[int, int]] = {}
    for entry in _list(row["values"]):
        labels, packets, octets = _list(entry)
        label_values = _texts(labels)
        if len(label_values) != len(names):
            raise ValueError(f"{row['family']}: {len(label_values)} label values for {len(names)} labels")
        values[label_values] = (_count(packets), _count(octets))
    return FamilySeries(_text(row["family"]), names, values)
