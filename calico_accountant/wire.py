"""Counter records <-> the v1 wire messages, pure.

Both ends of the ingest stream use this module, so the encoding, the "what changed"
rule and the chunking rule live once:

* :func:`record_to_counter` / :func:`counter_to_record` convert one counter (the
  decoding side validates, because it reads what another process sent);
* :func:`compute_delta` says which counters changed or vanished between two reads;
* :func:`build_snapshot` + :func:`split_snapshot` make the messages of one snapshot, in
  chunks that each fit a message size limit;
* :class:`ChunkAssembler` puts chunks back together and :func:`decode_snapshot` turns a
  whole snapshot into a :class:`DecodedSnapshot`, the aggregator's input.

No I/O and no clocks here: times are passed in.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from calico_accountant.records import CounterKey, CounterRecord, Diagnostic, Direction, Kind, RuleAction
from calico_accountant.v1 import snapshot_pb2 as pb

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_CHUNKS",
    "ChunkAssembler",
    "DecodedSnapshot",
    "Delta",
    "SourceInfo",
    "WireError",
    "build_snapshot",
    "compute_delta",
    "counter_to_key",
    "counter_to_record",
    "decode_snapshot",
    "index_records",
    "key_to_counter",
    "record_to_counter",
    "split_snapshot",
]

#: The message size both sides configure explicitly (gRPC's default is 4 MiB; we stay
#: under it so a default-configured peer still talks to us).  Snapshots are chunked to
#: a budget below this.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: Upper bound on chunks per snapshot the assembler accepts: a peer that announces
#: more is either broken or hostile, and would make us buffer without end.
MAX_CHUNKS = 4096

_KIND_TO_PB: dict[Kind, pb.CounterKind] = {
    Kind.POLICY_ACCEPT: pb.POLICY_ACCEPT,
    Kind.POLICY_DENY: pb.POLICY_DENY,
    Kind.NO_POLICY_DROP: pb.NO_POLICY_DROP,
    Kind.PROFILE_ACCEPT: pb.PROFILE_ACCEPT,
    Kind.NO_PROFILE_DROP: pb.NO_PROFILE_DROP,
    Kind.POLICY_RULE: pb.POLICY_RULE,
}
_PB_TO_KIND: dict[int, Kind] = {int(v): k for k, v in _KIND_TO_PB.items()}
_DIRECTION_TO_PB: dict[Direction, pb.Direction] = {Direction.INGRESS: pb.INGRESS, Direction.EGRESS: pb.EGRESS}
_PB_TO_DIRECTION: dict[int, Direction] = {int(v): k for k, v in _DIRECTION_TO_PB.items()}
_ACTIONS = frozenset(a.value for a in RuleAction)

#: Longest strings a valid snapshot carries.  Real values are far shorter (a Linux
#: interface name has at most 15 characters, a felix chain name 28 in iptables and 256 in
#: nftables, felix truncates comments at 256); anything longer is hostile or broken, and
#: would make the aggregator keep megabytes per counter.
MAX_NAME_LENGTH = 253
"""Node names (a Kubernetes node name is a DNS subdomain) and agent instance ids."""
MAX_INTERFACE_LENGTH = 64
MAX_CHAIN_LENGTH = 256
MAX_COMMENT_LENGTH = 512
MAX_RULE_IDS = 16
MAX_GROUP_MEMBERS = 256
MAX_CODE_LENGTH = 128
"""Diagnostic codes (the agent's are short identifiers such as ``deny_not_exact``); the
aggregator keeps each code a node reported, and exports it as a label."""

#: Bytes a repeated message field adds around each element: one tag byte plus a length
#: varint (at most 5 bytes for any length we could send).
_ELEMENT_OVERHEAD = 6


class WireError(ValueError):
    """A message that cannot be used as sent (bad chunking, missing node, ...)."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One table a snapshot was read from (mirrors ``TableSource``)."""

    dataplane: int
    """A ``Dataplane`` enum value."""
    family: int
    command: str
    rules: int


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed between two reads of a node: counters whose value or evidence
    changed (or are new), and keys that vanished."""

    changed: tuple[CounterRecord, ...]
    removed: tuple[CounterKey, ...]

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed


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


# --- one counter -------------------------------------------------------------------


def key_to_counter(key: CounterKey) -> pb.Counter:
    """The key fields only, as sent in ``NodeSnapshot.removed``."""
    return pb.Counter(
        kind=_KIND_TO_PB[key.kind],
        family=key.family,
        direction=_DIRECTION_TO_PB[key.direction],
        interface=key.interface,
        chain=key.chain,
        tier=key.tier,
        rule_index=key.rule_index,
        action=key.action,
    )


def record_to_counter(record: CounterRecord) -> pb.Counter:
    """One record as a wire counter (all fields; empty ones left unset, which is the
    same on the wire and twice as fast to build)."""
    key = record.key
    counter = pb.Counter(
        kind=_KIND_TO_PB[key.kind],
        family=key.family,
        direction=_DIRECTION_TO_PB[key.direction],
        interface=key.interface,
        chain=key.chain,
        tier=key.tier,
        rule_index=key.rule_index,
        packets=record.packets,
        bytes=record.bytes,
        rule_ids=record.rule_ids,
    )
    if key.action:
        counter.action = key.action
    if record.chain_comment:
        counter.chain_comment = record.chain_comment
    if record.group_members:
        counter.group_members.extend(record.group_members)
    return counter


def counter_to_key(counter: pb.Counter) -> CounterKey:
    """The key of a wire counter; :class:`WireError` says why it is not a valid key."""
    key = _fast_key(counter)
    if key is None:
        raise WireError(_invalid_reason(counter))
    return key


def counter_to_record(counter: pb.Counter) -> CounterRecord:
    """A wire counter back as a record (validated, see :func:`counter_to_key`)."""
    record = _fast_record(counter)
    if record is None:
        raise WireError(_invalid_reason(counter))
    return record


# The decoding hot path: a 1000-pod node sends ~130k counters, so keys and records are
# built positionally (``_make``) after one pass of cheap checks; the slow, explanatory
# :func:`_invalid_reason` runs only for a counter that fails them.
_make_key = CounterKey._make
_make_record = CounterRecord._make
_RULE_KIND = int(pb.POLICY_RULE)


def _fast_key(counter: pb.Counter) -> CounterKey | None:
    kind_number = counter.kind
    kind = _PB_TO_KIND.get(kind_number)
    direction = _PB_TO_DIRECTION.get(counter.direction)
    family = counter.family
    rule_index = counter.rule_index
    action = counter.action
    chain = counter.chain
    interface = counter.interface
    if kind is None or direction is None or (family != 4 and family != 6):
        return None
    if (
        len(interface) > MAX_INTERFACE_LENGTH
        or len(chain) > MAX_CHAIN_LENGTH
        or len(counter.tier) > MAX_CHAIN_LENGTH
    ):
        return None
    if kind_number == _RULE_KIND:
        if rule_index < 0 or action not in _ACTIONS or not chain or interface:
            return None
    elif rule_index != -1 or action or not interface:
        return None
    return _make_key((kind, family, direction, interface, chain, counter.tier, rule_index, action))


def _fast_record(counter: pb.Counter) -> CounterRecord | None:
    key = _fast_key(counter)
    if key is None:
        return None
    members = counter.group_members
    rule_ids = counter.rule_ids
    if (
        len(rule_ids) > MAX_RULE_IDS
        or len(members) > MAX_GROUP_MEMBERS
        or len(counter.chain_comment) > MAX_COMMENT_LENGTH
        or any(len(text) > MAX_CHAIN_LENGTH for text in rule_ids)
        or any(len(text) > MAX_CHAIN_LENGTH for text in members)
    ):
        return None
    return _make_record(
        (
            key,
            counter.packets,
            counter.bytes,
            tuple(rule_ids),
            counter.chain_comment,
            tuple(members) if members else (),
        )
    )


def _invalid_reason(counter: pb.Counter) -> str:
    """Why :func:`_fast_key` refused ``counter``, in words for the log and the ack."""
    kind = _PB_TO_KIND.get(int(counter.kind))
    if kind is None:
        return f"unknown counter kind {int(counter.kind)}"
    if _PB_TO_DIRECTION.get(int(counter.direction)) is None:
        return f"unknown direction {int(counter.direction)}"
    if counter.family not in (4, 6):
        return f"family must be 4 or 6, not {counter.family}"
    for name, value, limit in (
        ("interface", counter.interface, MAX_INTERFACE_LENGTH),
        ("chain", counter.chain, MAX_CHAIN_LENGTH),
        ("tier", counter.tier, MAX_CHAIN_LENGTH),
        ("chain_comment", counter.chain_comment, MAX_COMMENT_LENGTH),
    ):
        if len(value) > limit:
            return f"{name} longer than {limit} characters"
    if len(counter.rule_ids) > MAX_RULE_IDS or len(counter.group_members) > MAX_GROUP_MEMBERS:
        return f"more than {MAX_RULE_IDS} rule_ids or {MAX_GROUP_MEMBERS} group_members"
    if any(len(text) > MAX_CHAIN_LENGTH for text in (*counter.rule_ids, *counter.group_members)):
        return f"a rule id or group member longer than {MAX_CHAIN_LENGTH} characters"
    if kind is Kind.POLICY_RULE:
        if counter.rule_index < 0:
            return f"policy_rule needs rule_index >= 0, not {counter.rule_index}"
        if counter.action not in _ACTIONS:
            return f"policy_rule action {counter.action!r} is not one of {sorted(_ACTIONS)}"
        if counter.interface:
            return "policy_rule with an interface (its counters are per node, not per workload)"
        return "policy_rule without a chain"
    if counter.rule_index != -1 or counter.action:
        return f"{kind.value} carries rule_index/action, which only policy_rule may"
    return f"{kind.value} without an interface"


# --- what changed ------------------------------------------------------------------


def index_records(records: Iterable[CounterRecord]) -> dict[CounterKey, CounterRecord]:
    """Records by key (a later duplicate wins, as it would on the aggregator)."""
    return {record.key: record for record in records}


def compute_delta(
    previous: Mapping[CounterKey, CounterRecord], current: Mapping[CounterKey, CounterRecord]
) -> Delta:
    """Counters of ``current`` that differ from ``previous`` in any field (value,
    rule ids, comment, members) or are new, and keys of ``previous`` gone from
    ``current``.  Values are absolute, so applying a delta twice is harmless."""
    # The agent's usual case: the same keys in the same order (the steady-state parser
    # keeps its plan), the records of unmoved counters the very same objects.  One C-level
    # pass then does it, without hashing 100k keys twice.
    if len(previous) == len(current) and list(previous) == list(current):
        current_records = list(current.values())
        moved = map(operator.ne, previous.values(), current_records)
        return Delta(changed=tuple(itertools.compress(current_records, moved)), removed=())
    changed = tuple(record for key, record in current.items() if previous.get(key) != record)
    removed = tuple(key for key in previous if key not in current)
    return Delta(changed=changed, removed=removed)


# --- messages ----------------------------------------------------------------------


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
) -> pb.NodeSnapshot:
    """One unchunked snapshot message."""
    snapshot = pb.NodeSnapshot(
        node=node,
        agent_instance_id=agent_instance_id,
        sequence=sequence,
        full=full,
        agent_version=agent_version,
        counters=[record_to_counter(r) for r in records],
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
    for code, count in (diagnostic_counts or {}).items():
        snapshot.diagnostic_counts[code] = count
    return snapshot


def split_snapshot(snapshot: pb.NodeSnapshot, max_bytes: int) -> list[pb.NodeSnapshot]:
    """``snapshot`` as chunks that each serialize to at most ``max_bytes``.

    Every chunk repeats the identity (node, instance, sequence, read time, full); the
    first also carries sources, diagnostics and the agent version.  Counters and
    removed keys are packed greedily in order.  A snapshot that fits is returned
    as is (``chunk_count`` 0).  :class:`WireError` if one counter alone cannot fit.
    """
    if snapshot.ByteSize() <= max_bytes:
        return [snapshot]

    def header(first: bool) -> pb.NodeSnapshot:
        chunk = pb.NodeSnapshot(
            node=snapshot.node,
            agent_instance_id=snapshot.agent_instance_id,
            sequence=snapshot.sequence,
            full=snapshot.full,
        )
        chunk.read_time.CopyFrom(snapshot.read_time)
        if first:
            chunk.sources.extend(snapshot.sources)
            chunk.diagnostics.extend(snapshot.diagnostics)
            chunk.diagnostic_counts.update(snapshot.diagnostic_counts)
            chunk.agent_version = snapshot.agent_version
        return chunk

    # Room for chunk_index/chunk_count varints (2 x (1 tag + 5)).
    index_overhead = 12
    chunks: list[pb.NodeSnapshot] = []
    current = header(first=True)
    used = current.ByteSize() + index_overhead

    def place(counter: pb.Counter, removed: bool) -> None:
        nonlocal current, used
        size = counter.ByteSize() + _ELEMENT_OVERHEAD
        if used + size > max_bytes and (len(current.counters) or len(current.removed)):
            chunks.append(current)
            current = header(first=False)
            used = current.ByteSize() + index_overhead
        if used + size > max_bytes:
            raise WireError(f"one counter ({size} bytes) does not fit a {max_bytes}-byte message")
        (current.removed if removed else current.counters).append(counter)
        used += size

    for counter in snapshot.counters:
        place(counter, removed=False)
    for counter in snapshot.removed:
        place(counter, removed=True)
    chunks.append(current)
    if len(chunks) > MAX_CHUNKS:
        raise WireError(f"snapshot needs {len(chunks)} chunks, more than the {MAX_CHUNKS} a peer accepts")
    for index, chunk in enumerate(chunks):
        chunk.chunk_index = index
        chunk.chunk_count = len(chunks)
    return chunks


class ChunkAssembler:
    """Reassembles the chunks of one stream into whole snapshots.

    Chunks of a snapshot must arrive in order and uninterrupted (one stream is one
    ordered channel, and the sender sends a snapshot's chunks back to back); anything
    else is a :class:`WireError` and the partial snapshot is dropped.
    """

    def __init__(self, max_counters: int = 5_000_000) -> None:
        self._parts: list[pb.NodeSnapshot] = []
        self._counters = 0
        self._max_counters = max_counters

    @property
    def pending(self) -> bool:
        """A snapshot has been started but not finished."""
        return bool(self._parts)

    def reset(self) -> None:
        """Drop an unfinished snapshot's chunks now (a refused stream's frames may outlive
        it in a reference cycle, which only the cyclic garbage collector frees)."""
        self._parts = []
        self._counters = 0

    def add(self, chunk: pb.NodeSnapshot) -> pb.NodeSnapshot | None:
        """Feed one message; returns the whole snapshot when this completes one."""
        count = chunk.chunk_count
        if count <= 1 and not self._parts:
            if chunk.chunk_index != 0:
                raise WireError(f"unchunked snapshot with chunk_index {chunk.chunk_index}")
            return chunk
        try:
            return self._add_chunk(chunk)
        except WireError:
            self._parts = []
            self._counters = 0
            raise

    def _add_chunk(self, chunk: pb.NodeSnapshot) -> pb.NodeSnapshot | None:
        count = chunk.chunk_count
        if count > MAX_CHUNKS:
            raise WireError(f"chunk_count {count} exceeds {MAX_CHUNKS}")
        if not self._parts:
            if chunk.chunk_index != 0:
                raise WireError(f"snapshot {chunk.sequence} starts at chunk {chunk.chunk_index}, not 0")
        else:
            first = self._parts[0]
            expected = len(self._parts)
            if count <= 1:
                raise WireError(
                    f"unchunked snapshot {chunk.sequence} while snapshot {first.sequence} is "
                    f"incomplete ({expected}/{first.chunk_count} chunks)"
                )
            if (chunk.sequence, chunk.agent_instance_id, chunk.node, count) != (
                first.sequence,
                first.agent_instance_id,
                first.node,
                first.chunk_count,
            ):
                raise WireError(
                    f"chunk of snapshot {chunk.sequence} interleaved with snapshot {first.sequence} "
                    f"({expected}/{first.chunk_count} chunks)"
                )
            if chunk.chunk_index != expected:
                raise WireError(
                    f"snapshot {chunk.sequence}: chunk {chunk.chunk_index} where {expected} was due"
                )
        self._counters += len(chunk.counters) + len(chunk.removed)
        if self._counters > self._max_counters:
            raise WireError(f"snapshot {chunk.sequence} exceeds {self._max_counters} counters")
        self._parts.append(chunk)
        if len(self._parts) < count:
            return None
        whole = pb.NodeSnapshot()
        whole.CopyFrom(self._parts[0])
        for part in self._parts[1:]:
            whole.counters.extend(part.counters)
            whole.removed.extend(part.removed)
        whole.chunk_index = 0
        whole.chunk_count = 0
        self._parts = []
        self._counters = 0
        return whole


def decode_snapshot(snapshot: pb.NodeSnapshot) -> DecodedSnapshot:
    """A whole snapshot as a :class:`DecodedSnapshot`.

    Structural problems (no node, no instance id, sequence 0) raise :class:`WireError`:
    the snapshot cannot be placed.  A counter that does not validate is skipped and
    counted in ``invalid_counters``, so one bad counter does not cost a node its data.
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
    records: list[CounterRecord] = []
    append = records.append
    for counter in snapshot.counters:
        record = _fast_record(counter)
        if record is None:
            reason = _invalid_reason(counter)
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            append(record)
    removed: list[CounterKey] = []
    for counter in snapshot.removed:
        key = _fast_key(counter)
        if key is None:
            reason = _invalid_reason(counter)
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
    )
