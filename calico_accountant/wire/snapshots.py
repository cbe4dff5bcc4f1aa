"""A snapshot message from records, and a whole snapshot decoded into the aggregator's input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import MAX_CODE_LENGTH, MAX_NAME_LENGTH, WireError
from calico_accountant.wire.counters import (
    fast_key,
    fast_record,
    invalid_reason,
    key_to_counter,
    record_to_counter,
)
from calico_accountant.wire.keyed import EMPTY_COLUMNS, KeyedColumns, check_definitions, decode_values

__all__ = [
    "DATAPLANE_NAMES",
    "DecodedSnapshot",
    "SourceInfo",
    "build_snapshot",
    "dataplane_name",
    "decode_snapshot",
]

DATAPLANE_NAMES: dict[int, str] = {
    pb.IPTABLES_LEGACY: "iptables-legacy",
    pb.IPTABLES_NFT: "iptables-nft",
    pb.NFTABLES: "nftables",
    pb.DATAPLANE_OTHER: "other",
}
"""``Dataplane`` values as the agent's metrics and ``calico-accountant nodes`` name them:
``nftables`` is felix's native nftables mode, the ``iptables-*`` ones its iptables backends."""


def dataplane_name(value: int) -> str:
    """The name of a ``Dataplane`` value (``unspecified`` for 0 or an unknown value)."""
    return DATAPLANE_NAMES.get(value, "unspecified")


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One table a snapshot was read from (mirrors ``TableSource``)."""

    dataplane: int
    """A ``Dataplane`` enum value."""
    family: int
    command: str
    rules: int


@dataclass(frozen=True, slots=True)
class DecodedSnapshot:
    """One whole (reassembled, validated) snapshot as the aggregator applies it.

    ``full`` updates replace the node's counter set; delta updates upsert ``records``
    and delete ``removed``.
    """

    node: str
    agent_instance_id: str
    sequence: int
    read_time: datetime
    full: bool
    records: tuple[CounterRecord, ...]
    removed: tuple[CounterKey, ...]
    diagnostic_counts: Mapping[str, int]
    diagnostics: tuple[Diagnostic, ...] = ()
    sources: tuple[SourceInfo, ...] = ()
    agent_version: str = ""
    invalid_counters: int = 0
    """Counters dropped because they did not validate (counted, not fatal)."""
    invalid_reasons: Mapping[str, int] = field(default_factory=dict)
    key_ids: Sequence[int] = ()
    """The ``key_id`` of each of ``records`` (0: none), or empty when none has one."""
    values: KeyedColumns = EMPTY_COLUMNS
    """Changed counters by key id (``NodeSnapshot.values``; deltas only)."""
    removed_ids: Sequence[int] = ()
    """Vanished keys by id."""

    @property
    def size(self) -> int:
        """Counters it carries, whole or by id (what an apply costs is about this)."""
        return len(self.records) + len(self.values)


def build_snapshot(
    *,
    node: str,
    agent_instance_id: str,
    sequence: int,
    read_time: datetime,
    full: bool,
    records: Iterable[CounterRecord],
    removed: Iterable[CounterKey] = (),
    sources: Iterable[SourceInfo] = (),
    diagnostic_counts: Mapping[str, int] | None = None,
    diagnostics: Iterable[Diagnostic] = (),
    agent_version: str = "",
    key_ids: Sequence[int] = (),
    values: KeyedColumns = EMPTY_COLUMNS,
    removed_ids: Sequence[int] = (),
) -> pb.NodeSnapshot:
    """One unchunked snapshot message; ``key_ids`` (when given, one per record, 0 for
    none), ``values`` and ``removed_ids`` are the dictionary encoding (:mod:`.keyed`)."""
    counters = [record_to_counter(r) for r in records]
    if key_ids:
        if len(key_ids) != len(counters):
            raise ValueError(f"{len(key_ids)} key ids for {len(counters)} records")
        for counter, key_id in zip(counters, key_ids, strict=True):
            if key_id:
                counter.key_id = key_id
    snapshot = pb.NodeSnapshot(
        node=node,
        agent_instance_id=agent_instance_id,
        sequence=sequence,
        full=full,
        agent_version=agent_version,
        counters=counters,
        removed_ids=removed_ids,
        removed=[key_to_counter(k) for k in removed],
        sources=[
            pb.TableSource(dataplane=s.dataplane, family=s.family, command=s.command, rules=s.rules)  # type: ignore[arg-type]
            for s in sources
        ],
        diagnostics=[
            pb.Diagnostic(code=d.code, message=d.message, line=d.line, source=d.source) for d in diagnostics
        ],
    )
    snapshot.read_time.FromDatetime(read_time.astimezone(UTC))
    if len(values):
        snapshot.values.ids.extend(values.ids)
        snapshot.values.packets.extend(values.packets)
        snapshot.values.bytes.extend(values.bytes)
    for code, count in (diagnostic_counts or {}).items():
        snapshot.diagnostic_counts[code] = count
    return snapshot


def decode_snapshot(snapshot: pb.NodeSnapshot) -> DecodedSnapshot:
    """A whole snapshot as a :class:`DecodedSnapshot`.

    Structural problems (no node, no instance id, sequence 0) raise :class:`WireError`:
    the snapshot cannot be placed.  A counter that does not validate is skipped and
    counted in ``invalid_counters``, so one bad counter does not cost a node its data.
    Dictionary-encoded parts of the wrong shape (:func:`.keyed.decode_values`), or an id
    defined for two keys, are structural too.
    """
    if not snapshot.node:
        raise WireError("snapshot without a node name")
    if not snapshot.agent_instance_id:
        raise WireError("snapshot without an agent_instance_id")
    for what, name in (("node name", snapshot.node), ("agent_instance_id", snapshot.agent_instance_id)):
        if len(name) > MAX_NAME_LENGTH or not name.isprintable() or any(c.isspace() for c in name):
            raise WireError(f"{what} must be at most {MAX_NAME_LENGTH} printable characters without spaces")
    if snapshot.sequence == 0:
        raise WireError("snapshot sequence must start at 1")
    # Kept per node for as long as the node is known: a peer must not make them megabytes.
    if len(snapshot.agent_version) > MAX_NAME_LENGTH:
        raise WireError(f"agent_version longer than {MAX_NAME_LENGTH} characters")
    if any(len(code) > MAX_CODE_LENGTH for code in snapshot.diagnostic_counts):
        raise WireError(f"a diagnostic code longer than {MAX_CODE_LENGTH} characters")
    if not snapshot.HasField("read_time"):
        raise WireError("snapshot without a read_time")
    try:
        read_time = snapshot.read_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise WireError(f"read_time out of range: {error}") from None
    reasons: dict[str, int] = {}
    values, removed_ids = decode_values(snapshot)
    records: list[CounterRecord] = []
    key_ids: list[int] = []
    append, append_id = records.append, key_ids.append
    for counter in snapshot.counters:
        record = fast_record(counter)
        if record is None:
            reason = invalid_reason(counter)
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            append(record)
            append_id(counter.key_id)
    if any(key_ids):
        check_definitions(records, key_ids)
    else:
        key_ids = []
    removed: list[CounterKey] = []
    for counter in snapshot.removed:
        key = fast_key(counter)
        if key is None:
            reason = invalid_reason(counter)
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            removed.append(key)
    return DecodedSnapshot(
        node=snapshot.node,
        agent_instance_id=snapshot.agent_instance_id,
        sequence=snapshot.sequence,
        read_time=read_time,
        full=snapshot.full,
        records=tuple(records),
        removed=tuple(removed),
        diagnostic_counts=dict(snapshot.diagnostic_counts),
        diagnostics=tuple(
            Diagnostic(code=d.code, message=d.message, line=d.line, source=d.source)
            for d in snapshot.diagnostics
        ),
        sources=tuple(
            SourceInfo(dataplane=int(s.dataplane), family=s.family, command=s.command, rules=s.rules)
            for s in snapshot.sources
        ),
        agent_version=snapshot.agent_version,
        invalid_counters=sum(reasons.values()),
        invalid_reasons=reasons,
        key_ids=key_ids,
        values=values,
        removed_ids=removed_ids,
    )
