"""Dictionary-encoded counters: an id per counter key, so that a changed counter whose key
the aggregator already has travels as three numbers in packed columns.

Why: a delta carried every changed counter's whole key as strings, and decoding one such
``Counter`` (upb field access, ~3.3 us) plus building and hashing its key was most of what
the aggregator spent per changed counter.  Packed columns decode with three C-level
``list()`` copies, and the aggregator finds the counter by its id.

The agent's side (:class:`KeyIds`, :func:`encode_delta`): every key gets an id, stable for
the agent instance, sent with the whole ``Counter`` (``key_id``) in every full snapshot and
whenever the key is new or its rule ids, chain comment or group members changed; a
counter whose only change is its value goes in ``NodeSnapshot.values``.  Ids are freed
when their key vanishes (sent in ``removed_ids``) and never reused within an instance.

The aggregator's side (:func:`decode_values`, :func:`check_definitions`): the shape of the
columns is checked here (equal lengths, no id 0, no id twice); whether it knows the ids
is the ledger's question (:mod:`aggregator.ledger.keyed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from calico_accountant.records import CounterKey, CounterRecord
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.delta import Delta, compute_delta

__all__ = [
    "EMPTY_COLUMNS",
    "MAX_KEY_ID",
    "KeyIds",
    "KeyedColumns",
    "KeyedDelta",
    "check_definitions",
    "decode_values",
    "encode_delta",
    "encode_read",
]

MAX_KEY_ID = 2**32 - 1
"""``key_id`` is a uint32; an agent renumbers at a full snapshot before reaching this."""


@dataclass(frozen=True, slots=True)
class KeyedColumns:
    """Values by key id (``KeyedValues``): three sequences of equal length."""

    ids: Sequence[int]
    packets: Sequence[int]
    bytes: Sequence[int]

    def __len__(self) -> int:
        return len(self.ids)


EMPTY_COLUMNS = KeyedColumns((), (), ())


class KeyIds:
    """The agent's id per counter key, for one agent instance (a new instance starts a
    new table: the aggregator drops the old one when the instance changes)."""

    def __init__(self, first: int = 1) -> None:
        self._ids: dict[CounterKey, int] = {}
        self._next = first

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, key: CounterKey) -> int | None:
        return self._ids.get(key)

    def assign(self, key: CounterKey) -> int:
        """``key``'s id, a new one if it has none."""
        known = self._ids.get(key)
        if known is not None:
            return known
        if self._next > MAX_KEY_ID:
            raise OverflowError("key ids exhausted; renumber at the next full snapshot")
        assigned = self._ids[key] = self._next
        self._next += 1
        return assigned

    def drop(self, key: CounterKey) -> int | None:
        """Free ``key``'s id (the key vanished); the id is not reused."""
        return self._ids.pop(key, None)

    def for_full(self, records: Sequence[CounterRecord]) -> list[int]:
        """Ids for a full snapshot of ``records``: kept for known keys, new ones for the
        others, and keys not in ``records`` forgotten (the aggregator rebuilds its table from
        a full snapshot).  Renumbers from 1 when the ids ran high: a full snapshot may."""
        old = self._ids
        if self._next > MAX_KEY_ID // 2:
            old, self._next = {}, 1
        self._ids = {}
        out: list[int] = []
        for record in records:
            key = record.key
            known = self._ids.get(key) or old.get(key)
            if known is None:
                known = self._next
                self._next += 1
            self._ids[key] = known
            out.append(known)
        return out


@dataclass(frozen=True, slots=True)
class KeyedDelta:
    """A delta in the dictionary encoding: whole counters (with their ids) for new keys and
    changed non-value fields, value columns for the rest, vanished keys by id."""

    defined: tuple[CounterRecord, ...]
    defined_ids: tuple[int, ...]
    values: KeyedColumns
    removed_ids: tuple[int, ...]
    removed: tuple[CounterKey, ...]
    """Vanished keys without an id (none when every key was sent with one)."""


def encode_delta(ids: KeyIds, previous: Mapping[CounterKey, CounterRecord], delta: Delta) -> KeyedDelta:
    """``delta`` (against ``previous``, what the aggregator acknowledged) encoded by id.
    A counter goes in the columns only when its key has an id and its rule ids, chain
    comment and group members equal the acknowledged ones."""
    defined: list[CounterRecord] = []
    defined_ids: list[int] = []
    column_ids: list[int] = []
    packets: list[int] = []
    octets: list[int] = []
    for record in delta.changed:
        key = record.key
        before = previous.get(key)
        known = ids.get(key)
        if (
            known is not None
            and before is not None
            and before.rule_ids == record.rule_ids
            and before.chain_comment == record.chain_comment
            and before.group_members == record.group_members
        ):
            column_ids.append(known)
            packets.append(record.packets)
            octets.append(record.bytes)
        else:
            defined.append(record)
            defined_ids.append(ids.assign(key))
    removed_ids: list[int] = []
    removed: list[CounterKey] = []
    for key in delta.removed:
        gone = ids.drop(key)
        if gone is None:
            removed.append(key)
        else:
            removed_ids.append(gone)
    return KeyedDelta(
        tuple(defined),
        tuple(defined_ids),
        KeyedColumns(column_ids, packets, octets),
        tuple(removed_ids),
        tuple(removed),
    )


def encode_read(
    ids: KeyIds,
    acked: Mapping[CounterKey, CounterRecord] | None,
    current: Mapping[CounterKey, CounterRecord],
    *,
    by_id: bool,
) -> KeyedDelta:
    """What an agent sends for the read ``current``: a full snapshot (``acked`` None), every
    counter with its key id; else a delta against ``acked``, by id when ``by_id`` (the
    aggregator advertised key ids), whole counters without ids when not."""
    if acked is None:
        records = tuple(current.values())
        return KeyedDelta(records, tuple(ids.for_full(records)), EMPTY_COLUMNS, (), ())
    delta = compute_delta(acked, current)
    if by_id:
        return encode_delta(ids, acked, delta)
    return KeyedDelta(delta.changed, (), EMPTY_COLUMNS, (), delta.removed)


def decode_values(snapshot: pb.NodeSnapshot) -> tuple[KeyedColumns, list[int]]:
    """The value columns and removed ids of ``snapshot``, shape-checked: :class:`WireError`
    for columns of unequal length, id 0, an id twice, or values in a full snapshot."""
    removed_ids = list(snapshot.removed_ids)
    if not snapshot.HasField("values") and not removed_ids:
        return EMPTY_COLUMNS, removed_ids
    values = snapshot.values
    ids, packets, octets = list(values.ids), list(values.packets), list(values.bytes)
    if len(ids) != len(packets) or len(ids) != len(octets):
        raise WireError(
            f"value columns of unequal length: {len(ids)} ids, {len(packets)} packets, {len(octets)} bytes"
        )
    if snapshot.full and (ids or removed_ids):
        raise WireError("a full snapshot with values or removed keys by id (it must send whole counters)")
    for what, column in (("values", ids), ("removed_ids", removed_ids)):
        if column and (min(column) == 0 or len(set(column)) != len(column)):
            raise WireError(f"{what}: key id 0 or an id listed twice")
    return KeyedColumns(ids, packets, octets), removed_ids


def check_definitions(records: Sequence[CounterRecord], key_ids: Sequence[int]) -> None:
    """:class:`WireError` when one snapshot defines an id for two different keys."""
    defined = [key_id for key_id in key_ids if key_id]
    if len(set(defined)) == len(defined):
        return
    keys: dict[int, CounterKey] = {}
    for record, key_id in zip(records, key_ids, strict=True):
        if key_id and keys.setdefault(key_id, record.key) != record.key:
            raise WireError(f"key id {key_id} defined twice with different keys")
