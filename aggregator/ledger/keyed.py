"""Counters by key id in the ledger (the dictionary encoding of
:mod:`calico_accountant.wire.keyed`).

Per node the ledger keeps ``id -> row`` (:mod:`aggregator.ledger.rows`) for the ids its agent
instance defined (``Counter.key_id``), so a changed counter sent by id is found with one int
lookup: no key is built, hashed or compared.  The table is rebuilt from each full snapshot (a resync,
reconnect, a new agent instance or aggregator: every id is defined again), grows with the
ids a delta defines, loses the ids a delta removes, and goes with the node.  It is not
checkpointed: after a restore it is empty, and a delta naming ids is refused with a
resync request (the agent then sends a full snapshot).

The rules are the ledger's (:mod:`aggregator.ledger`): an id's values are the counter's raw
values with its rule ids unchanged, so only "the difference" and "decreased: a reset" apply,
and a retired counter comes back to life.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aggregator.ledger.admission import Limits, Refusal, RefusalProblem
from aggregator.ledger.rows import CounterRows, row_number
from aggregator.ledger.state import Increases, NodeState, NodeUpdate, ResetReason
from calico_accountant.records import CounterRecord

__all__ = ["apply_values", "check_key_ids", "define_ids"]

_DECREASED = ResetReason.DECREASED.value


def check_key_ids(
    table: Mapping[int, int], rows: CounterRows, update: NodeUpdate, limits: Limits
) -> Refusal | None:
    """Whether ``update``'s ids can be trusted against ``table`` (the node's, whose counters
    are ``rows``): every id it sends values for or removes is known or defined by it,
    none is defined again for another key, and the table stays within the node's counter
    cap and within the node's counters plus this snapshot's definitions (an agent frees the
    ids of vanished keys: a table that keeps growing is a peer defining ids without end)."""
    key_ids, values, removed_ids = update.key_ids, update.values, update.removed_ids
    known = len(rows)
    if not key_ids and not len(values) and not removed_ids:
        return None
    defined = [key_id for key_id in key_ids if key_id]
    base = 0 if update.full else len(table)
    allowed = min(limits.max_counters_per_node, (0 if update.full else known) + len(update.records))
    if base + len(defined) > allowed:
        new = sum(1 for key_id in set(defined) if key_id not in table) if base else len(set(defined))
        if base + new > allowed:
            return Refusal(
                RefusalProblem.TOO_MANY_COUNTERS,
                f"{base + new} key ids for one node with at most {allowed} counters "
                f"(cap {limits.max_counters_per_node})",
            )
    if update.full:
        return None
    for record, key_id in zip(update.records, key_ids, strict=True) if key_ids else ():
        holder = table.get(key_id) if key_id else None
        if holder is not None and rows.keys[holder] != record.key:
            return Refusal(
                RefusalProblem.KEY_ID_CONFLICT,
                f"key id {key_id} defined again for another key; send a full snapshot",
            )
    for what, ids in (("values", values.ids), ("removed_ids", removed_ids)):
        if not all(map(table.__contains__, ids)):
            also = set(defined)
            unknown = [key_id for key_id in ids if key_id not in table and key_id not in also]
            if unknown:
                return Refusal(
                    RefusalProblem.UNKNOWN_KEY_ID,
                    f"{what} name {len(unknown)} key ids this aggregator does not know "
                    f"(e.g. {unknown[0]}); send a full snapshot",
                )
    return None


def define_ids(
    table: dict[int, int], rows: CounterRows, records: Sequence[CounterRecord], key_ids: Sequence[int]
) -> None:
    """Enter the ids ``records`` (just applied) define: each names its record's row (the
    ids as shared int objects, :func:`~aggregator.ledger.rows.row_number`)."""
    row_of = rows.row_of
    for record, key_id in zip(records, key_ids, strict=True):
        if key_id:
            table[row_number(key_id)] = row_of[record.key]


def apply_values(
    node_state: NodeState,
    rows: CounterRows,
    table: Mapping[int, int],
    ids: Sequence[int],
    packets: Sequence[int],
    octets: Sequence[int],
    increases: Increases,
) -> None:
    """Apply raw values by id (all known: :func:`check_key_ids`); their increases are added
    to ``increases``.
    The same arithmetic as the ledger's for a record with unchanged rule ids.  The values are
    the wire's ``uint64`` fields: they fit the rows' 64-bit columns
    (:data:`~aggregator.ledger.rows.RAW_MAX`)."""
    add_row, add_packets, add_bytes = increases.rows.append, increases.packets.append, increases.bytes.append
    decreased = revived = 0
    retired_at = rows.retired_at
    raws_p, raws_b, totals_p, totals_b = (
        rows.raw_packets,
        rows.raw_bytes,
        rows.total_packets,
        rows.total_bytes,
    )
    for key_id, raw_packets, raw_bytes in zip(ids, packets, octets, strict=True):
        row = table[key_id]
        if retired_at[row] is not None:
            retired_at[row] = None
            revived += 1
        last_packets, last_bytes = raws_p[row], raws_b[row]
        if raw_packets >= last_packets and raw_bytes >= last_bytes:
            d_packets, d_bytes = raw_packets - last_packets, raw_bytes - last_bytes
        else:  # the counter restarted: all of the raw value is new
            d_packets, d_bytes = raw_packets, raw_bytes
            decreased += 1
        raws_p[row], raws_b[row] = raw_packets, raw_bytes
        if d_packets or d_bytes:
            totals_p[row] += d_packets
            totals_b[row] += d_bytes
            add_row(row)
            add_packets(d_packets)
            add_bytes(d_bytes)
    if decreased:
        node_state.resets[_DECREASED] = node_state.resets.get(_DECREASED, 0) + decreased
    node_state.counters_retired -= revived
