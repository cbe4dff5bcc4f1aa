"""Reads of a node that change in every way the ledger has a rule for, and the snapshot
messages an agent sends for them, with and without key ids: what the key-id tests compare.

A read differs from the one before by counters that grew, counters that restarted from zero
(felix rewrote a rule in place), rule ids replaced wholly or partly, a chain comment
changed, keys that vanished, keys that came back and new keys; the messages come from
:func:`calico_accountant.wire.keyed.encode_read`, as the agent's streamer builds them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from calico_accountant.records import CounterKey, CounterRecord
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.keyed import KeyIds, encode_read
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.accounting import accept, deny, no_policy_drop, policy_rule

__all__ = ["Read", "agent_messages", "evolving_reads"]

Read = dict[CounterKey, CounterRecord]
T0 = datetime(2026, 12, 5, tzinfo=UTC)


def _universe(size: int) -> list[CounterRecord]:
    """``size`` pods' worth of counters of every shape (group members, comments, rules)."""
    out: list[CounterRecord] = []
    for pod in range(size):
        iface = f"cali{pod:011x}"
        out.append(accept(iface, f"cali-pi-_p{pod % 3}", 1, ids=(f"a{pod}",)))
        out.append(deny(iface, f"cali-pi-_p{pod % 3}", 1, ids=(f"j{pod}", f"r{pod}", f"n{pod}")))
        out.append(accept(iface, "cali-pi-_g1", 1, ids=(f"g{pod}",), members=("cali-pi-_p0", "cali-pi-_p1")))
        out.append(no_policy_drop(iface, 1))
    out.extend(policy_rule(f"cali-pi-_p{p}", 0, "allow", 1, comment=f"Policy p{p}") for p in range(3))
    return out


def evolving_reads(rng: random.Random, reads: int, size: int = 4) -> list[Read]:
    """``reads`` successive reads of one node (raw values, as the agent sends them)."""
    universe = _universe(size)
    live = {record.key: record for record in universe if rng.random() < 0.8}
    out: list[Read] = [dict(live)]
    for _ in range(reads - 1):
        current: Read = {}
        for record in universe:
            before = live.get(record.key)
            if before is None:
                if rng.random() < 0.3:  # new, or back after it vanished
                    current[record.key] = record._replace(
                        packets=rng.randint(0, 5), bytes=rng.randint(0, 500)
                    )
                continue
            event = rng.random()
            if event < 0.08:
                continue  # vanished
            if event < 0.16:  # restarted from zero (rule rewritten in place)
                current[record.key] = before._replace(packets=rng.randint(0, 2), bytes=rng.randint(0, 200))
            elif event < 0.22:  # every rule id replaced, or only some
                ids = tuple(
                    f"{i}x{rng.randrange(1000)}" if rng.random() < 0.6 else i for i in before.rule_ids
                )
                current[record.key] = before._replace(rule_ids=ids, packets=before.packets + 1)
            elif event < 0.26 and before.chain_comment:  # felix's comment is the chain's: one per chain
                current[record.key] = before._replace(chain_comment=f"Policy {record.key.chain} v{len(out)}")
            elif event < 0.6:
                grow = rng.randint(0, 50)
                current[record.key] = before._replace(
                    packets=before.packets + grow, bytes=before.bytes + 100 * grow + rng.randint(0, 99)
                )
            else:
                current[record.key] = before  # unchanged
        live = current
        out.append(dict(current))
    return out


def agent_messages(
    reads: list[Read],
    *,
    by_id: bool,
    node: str = "node-k",
    instance: str = "agent-k",
    resync_at: frozenset[int] = frozenset(),
    ids: KeyIds | None = None,
) -> list[pb.NodeSnapshot]:
    """The messages an agent sends for ``reads`` on one stream, each acknowledged: the
    first full, then deltas (by id when ``by_id``), a full one again at each index in
    ``resync_at`` (the aggregator asked for a resync)."""
    table = ids if ids is not None else KeyIds()
    acked: Mapping[CounterKey, CounterRecord] | None = None
    out: list[pb.NodeSnapshot] = []
    for index, read in enumerate(reads):
        if index in resync_at:
            acked = None
        encoded = encode_read(table, acked, read, by_id=by_id)
        out.append(
            build_snapshot(
                node=node,
                agent_instance_id=instance,
                sequence=index + 1,
                read_time=T0 + timedelta(seconds=10 * index),
                full=acked is None,
                records=encoded.defined,
                key_ids=encoded.defined_ids,
                values=encoded.values,
                removed=encoded.removed,
                removed_ids=encoded.removed_ids,
            )
        )
        acked = read
    return out
