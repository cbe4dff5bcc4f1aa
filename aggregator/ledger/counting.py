"""One whole counter applied to its node's part of the ledger: the per-counter rules of
:mod:`aggregator.ledger` (first snapshots, new keys, differences, resets, rule rewrites,
retired counters coming back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern

from aggregator.ledger.rows import RAW_MAX, CounterRows, shared_strings
from aggregator.ledger.state import FirstSnapshot, Increases, NodeState, ResetReason, interned_key
from calico_accountant.records import CounterRecord

__all__ = ["NodeLedger", "apply_record"]


@dataclass(slots=True)
class NodeLedger:
    """One node's part of the ledger."""

    state: NodeState
    counters: CounterRows = field(default_factory=CounterRows)
    chain_comments: dict[str, str] = field(default_factory=dict)
    key_rows: dict[int, int] = field(default_factory=dict)
    """The agent instance's key ids, each to its counter's row (:mod:`aggregator.ledger.keyed`;
    not checkpointed)."""


def apply_record(
    entry: NodeLedger,
    record: CounterRecord,
    first_snapshot: bool,
    counts_first: FirstSnapshot,
    increases: Increases,
) -> None:
    """Apply one whole counter to its node (the rules of :mod:`aggregator.ledger`); its
    increase, if any, is added to ``increases``."""
    packets, octets = record.packets, record.bytes
    if not (0 <= packets <= RAW_MAX and 0 <= octets <= RAW_MAX):  # comparisons: min(max()) cost ~0.7 us
        packets, octets = _clamped(packets), _clamped(octets)
    if record.chain_comment and record.key.chain:
        entry.chain_comments[record.key.chain] = record.chain_comment
    rows = entry.counters
    row = rows.row_of.get(record.key)
    if row is None:
        counted = not first_snapshot or counts_first is FirstSnapshot.COUNT
        total_packets, total_bytes = (packets, octets) if counted else (0, 0)
        entry.state.counters_known += 1
        key = interned_key(record.key)
        row = rows.add(
            key, packets, octets, record.rule_ids, total_packets, total_bytes, record.chain_comment,
            record.group_members,
        )  # fmt: skip
        increases.rows.append(row)
        increases.packets.append(total_packets)
        increases.bytes.append(total_bytes)
        increases.new_keys.add(row)
        if first_snapshot:
            increases.initial.add(row)
        return

    if rows.retired_at[row] is not None:
        rows.retired_at[row] = None
        entry.state.counters_retired -= 1
    # Values equal to the kept ones are not stored again: the kept copies are shared with
    # the node's other counters, the record's are one snapshot's own.
    if record.chain_comment and record.chain_comment != rows.chain_comment[row]:
        rows.chain_comment[row] = intern(record.chain_comment)
    if record.group_members and record.group_members != rows.group_members[row]:
        rows.group_members[row] = shared_strings(record.group_members)
    d_packets, d_bytes, reason = _difference(
        rows.rule_ids[row], rows.raw_packets[row], rows.raw_bytes[row], packets, octets, record.rule_ids
    )
    if reason is not None:
        entry.state.resets[reason.value] = entry.state.resets.get(reason.value, 0) + 1
        rows.rule_ids[row] = shared_strings(record.rule_ids)
    rows.raw_packets[row], rows.raw_bytes[row] = packets, octets
    if d_packets == 0 and d_bytes == 0:
        return
    rows.total_packets[row] += d_packets
    rows.total_bytes[row] += d_bytes
    increases.rows.append(row)
    increases.packets.append(d_packets)
    increases.bytes.append(d_bytes)


def _difference(
    kept_ids: tuple[str, ...],
    raw_packets: int,
    raw_bytes: int,
    packets: int,
    octets: int,
    rule_ids: tuple[str, ...],
) -> tuple[int, int, ResetReason | None]:
    """The increase since the last raw values, and the reset it implies, if any."""
    if rule_ids == kept_ids:
        if packets >= raw_packets and octets >= raw_bytes:
            return packets - raw_packets, octets - raw_bytes, None
        return packets, octets, ResetReason.DECREASED
    if not _any_same_position(kept_ids, rule_ids):
        return packets, octets, ResetReason.RULES_REWRITTEN
    return 0, 0, ResetReason.INEXACT


def _any_same_position(old: tuple[str, ...], new: tuple[str, ...]) -> bool:
    """Whether some rule the value is read from survived (a partial rewrite)."""
    if len(old) != len(new):
        return bool(set(old) & set(new))
    return any(a == b for a, b in zip(old, new, strict=True))


def _clamped(value: int) -> int:
    """``value`` within what a row's raw column holds (a peer may send anything)."""
    return min(max(value, 0), RAW_MAX)
