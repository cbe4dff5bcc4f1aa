"""One whole counter applied to its node's part of the ledger: the per-counter rules of
:mod:`aggregator.ledger` (first snapshots, new keys, differences, resets, rule rewrites,
retired counters coming back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern

from aggregator.ledger.state import (
    CounterState,
    FirstSnapshot,
    Increase,
    NodeState,
    ResetReason,
    interned_key,
    interned_strings,
)
from calico_accountant.records import CounterKey, CounterRecord

__all__ = ["NodeLedger", "apply_record"]


@dataclass(slots=True)
class NodeLedger:
    """One node's part of the ledger."""

    state: NodeState
    counters: dict[CounterKey, CounterState] = field(default_factory=dict)
    chain_comments: dict[str, str] = field(default_factory=dict)
    key_ids: dict[int, CounterState] = field(default_factory=dict)
    """The agent instance's key ids (:mod:`aggregator.ledger.keyed`; not checkpointed)."""


def apply_record(
    entry: NodeLedger, record: CounterRecord, first_snapshot: bool, counts_first: FirstSnapshot
) -> Increase | None:
    """Apply one whole counter to its node (the rules of :mod:`aggregator.ledger`)."""
    packets = max(record.packets, 0)
    octets = max(record.bytes, 0)
    if record.chain_comment and record.key.chain:
        entry.chain_comments[record.key.chain] = record.chain_comment
    state = entry.counters.get(record.key)
    if state is None:
        counted = not first_snapshot or counts_first is FirstSnapshot.COUNT
        total_packets, total_bytes = (packets, octets) if counted else (0, 0)
        entry.state.counters_known += 1
        key = interned_key(record.key)
        entry.counters[key] = CounterState(
            key=key,
            raw_packets=packets,
            raw_bytes=octets,
            rule_ids=interned_strings(record.rule_ids),
            total_packets=total_packets,
            total_bytes=total_bytes,
            chain_comment=intern(record.chain_comment),
            group_members=interned_strings(record.group_members),
        )
        return Increase(entry.state.node, key, total_packets, total_bytes, first_snapshot, new_key=True)

    if state.retired_at is not None:
        state.retired_at = None
        entry.state.counters_retired -= 1
    # Values equal to the kept ones are not stored again: the kept copies are interned
    # (shared with the node's other counters), the record's are one snapshot's own.
    if record.chain_comment and record.chain_comment != state.chain_comment:
        state.chain_comment = intern(record.chain_comment)
    if record.group_members and record.group_members != state.group_members:
        state.group_members = interned_strings(record.group_members)
    d_packets, d_bytes, reason = _difference(state, packets, octets, record.rule_ids)
    if reason is not None:
        entry.state.resets[reason.value] = entry.state.resets.get(reason.value, 0) + 1
        state.rule_ids = interned_strings(record.rule_ids)
    state.raw_packets, state.raw_bytes = packets, octets
    if d_packets == 0 and d_bytes == 0:
        return None
    state.total_packets += d_packets
    state.total_bytes += d_bytes
    return Increase(entry.state.node, record.key, d_packets, d_bytes)


def _difference(
    state: CounterState, packets: int, octets: int, rule_ids: tuple[str, ...]
) -> tuple[int, int, ResetReason | None]:
    """The increase since ``state``'s last raw value, and the reset it implies, if any."""
    if rule_ids == state.rule_ids:
        if packets >= state.raw_packets and octets >= state.raw_bytes:
            return packets - state.raw_packets, octets - state.raw_bytes, None
        return packets, octets, ResetReason.DECREASED
    if not _any_same_position(state.rule_ids, rule_ids):
        return packets, octets, ResetReason.RULES_REWRITTEN
    return 0, 0, ResetReason.INEXACT


def _any_same_position(old: tuple[str, ...], new: tuple[str, ...]) -> bool:
    """Whether some rule the value is read from survived (a partial rewrite)."""
    if len(old) != len(new):
        return bool(set(old) & set(new))
    return any(a == b for a, b in zip(old, new, strict=True))
