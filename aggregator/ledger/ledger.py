"""The ledger: monotonic totals per node and counter (the rules: :mod:`aggregator.ledger`)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping
from types import MappingProxyType

from aggregator.ledger.admission import Limits, Refusal, RefusalProblem, check_limits, check_sequence
from aggregator.ledger.counting import NodeLedger, apply_record
from aggregator.ledger.keyed import apply_values, check_key_ids, define_ids
from aggregator.ledger.rows import CounterRows
from aggregator.ledger.state import (
    ApplyStep,
    CounterState,
    ExpiredCounter,
    FirstSnapshot,
    ForgottenNode,
    Increase,
    Increases,
    NodeRecord,
    NodeState,
    NodeUpdate,
    RoutingColumns,
    copy_state,
    interned_key,
)
from aggregator.ledger.views import CounterView
from calico_accountant.records import CounterKey

__all__ = ["VALUES_PER_RECORD", "Ledger"]

VALUES_PER_RECORD = 4
"""Values by key id applied in one step of :meth:`Ledger.applying` per whole record of its
``chunk``: about the same time under the caller's lock."""


class Ledger:
    """Monotonic totals for every node; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        stale_after: float = 120.0,
        retired_grace: float = 600.0,
        node_expiry: float = 3600.0,
        limits: Limits | None = None,
        first_snapshot: FirstSnapshot = FirstSnapshot.COUNT,
    ) -> None:
        if stale_after <= 0 or retired_grace < 0 or node_expiry <= 0:
            raise ValueError("stale_after and node_expiry must be > 0 and retired_grace >= 0")
        self.stale_after = stale_after
        self.retired_grace = retired_grace
        self.node_expiry = node_expiry
        self.limits = limits or Limits()
        self.first_snapshot = first_snapshot
        self._nodes: dict[str, NodeLedger] = {}
        self._counters = 0
        """Counters held on every node (each snapshot's check compares it with the cap: a sum
        over 5,000 nodes for every snapshot cost ~0.5 ms)."""

    # -- reading ---------------------------------------------------------------------

    def node_names(self) -> list[str]:
        return sorted(self._nodes)

    def node(self, node: str) -> NodeState | None:
        entry = self._nodes.get(node)
        return entry.state if entry else None

    def nodes(self) -> list[NodeState]:
        return [self._nodes[name].state for name in sorted(self._nodes)]

    def counters(self, node: str) -> Mapping[CounterKey, CounterState]:
        """The node's counters, each copied out of its row when read."""
        entry = self._nodes.get(node)
        return CounterView(entry.counters if entry else CounterRows())

    def chain_comments(self, node: str) -> Mapping[str, str]:
        """Felix's identity comment per policy chain, as last seen on the node."""
        entry = self._nodes.get(node)
        return MappingProxyType(entry.chain_comments) if entry else MappingProxyType({})

    def rows(self) -> Iterator[tuple[str, int, CounterState]]:
        """Every counter the ledger remembers (live and retired), with its node and row."""
        for name, entry in self._nodes.items():
            for row, state in entry.counters.states():
                yield name, row, state

    def node_rows(self, node: str) -> Iterator[tuple[int, CounterState]]:
        """The node's counters with their rows, in row order (as a checkpoint keeps them)."""
        entry = self._nodes.get(node)
        return entry.counters.states() if entry is not None else iter(())

    def routing_columns(self, node: str) -> RoutingColumns:
        """The node's keys, chain comments and group members by row, for routing every
        counter at once (a rebuild) without a copy of each row."""
        entry = self._nodes.get(node)
        rows = entry.counters if entry is not None else CounterRows()
        return RoutingColumns(rows.keys, rows.chain_comment, rows.group_members)

    def counter_at(self, node: str, row: int) -> CounterState | None:
        """A copy of the counter in ``row`` of ``node``, None when the row holds none."""
        entry = self._nodes.get(node)
        if entry is None or row >= len(entry.counters.keys) or entry.counters.keys[row] is None:
            return None
        return entry.counters.state(row)

    def is_stale(self, node: str, now: float) -> bool:
        state = self.node(node)
        return state is None or state.stale(now, self.stale_after)

    # -- writing ---------------------------------------------------------------------

    def set_connected(self, node: str, connected: bool) -> None:
        """The ingest stream of ``node`` opened or closed."""
        self._entry(node).state.connected = connected

    def check(self, update: NodeUpdate) -> Refusal | None:
        """Whether ``update`` may be applied now (None) or why not; changes nothing."""
        entry = self._nodes.get(update.node)
        return (
            check_limits(
                self.limits,
                update,
                entry.state if entry is not None else None,
                entry.counters.row_of if entry is not None else {},
                len(self._nodes),
                self._counters,
            )
            or check_sequence(entry.state if entry is not None else None, update)
            or check_key_ids(
                entry.key_rows if entry is not None else {},
                entry.counters if entry is not None else CounterRows(),
                update,
                self.limits,
            )
        )

    def apply(self, update: NodeUpdate, now: float) -> list[Increase]:
        """Apply one snapshot; returns the increases.  A snapshot :meth:`check` refuses
        changes nothing but the node's refusal counts (and a node over a limit is not
        even created)."""
        increases: list[Increase] = []
        for step in self.applying(update, now):
            increases.extend(step.increases)  # read per step: its rows name its keys until then
        return increases

    def applying(
        self, update: NodeUpdate, now: float, chunk: int | None = None
    ) -> Generator[ApplyStep, None, Refusal | None]:
        """:meth:`apply` in steps of at most ``chunk`` records, or ``chunk`` x
        :data:`VALUES_PER_RECORD` values by key id (all at once when None),
        each step's increases yielded (:class:`~aggregator.ledger.state.ApplyStep`): a
        caller that holds a lock only per step lets others read and write between steps
        (:class:`aggregator.accountant.Accountant`).  A refused snapshot yields no step: the
        generator returns the :class:`~aggregator.ledger.admission.Refusal` (what
        :meth:`check` says; a caller need not check first, and a delta's ids are looked up
        once less).

        Between steps the node is half-applied, and seen from outside it is as if the
        snapshot were not applied yet: its sequence, agent instance and snapshot count
        change only in the last step, so a checkpoint taken between steps restores to the
        previous sequence (the agent's next delta then asks for a full resync, which is
        differenced against the raw values kept, exactly).  Its ``received_at`` is set in
        the first step, so :meth:`forget_nodes` never forgets a node being applied.  The
        caller must not apply another snapshot of the same node before the last step."""
        refusal = self.check(update)
        if refusal is not None and not refusal.problem.is_sequence:
            entry = self._nodes.get(update.node)
            if entry is not None:
                entry.state.limit_refusals += 1
            return refusal
        entry = self._nodes.get(update.node)
        first_snapshot = entry is None or entry.state.snapshots == 0
        if entry is None:
            entry = self._entry(update.node)
        node_state = entry.state
        if refusal is not None:
            if refusal.problem is RefusalProblem.NOT_NEWER:
                node_state.out_of_order += 1
            else:
                node_state.sequence_gaps += 1
            return refusal
        node_state.received_at = now
        records, key_ids, values = update.records, update.key_ids, update.values
        # A full snapshot defines every id afresh; the new table replaces the old at the end.
        table = {} if update.full else entry.key_rows
        rows = entry.counters
        step = chunk if chunk is not None and chunk > 0 else max(1, len(records) + len(values))
        seen: set[CounterKey] = set()
        increases = _step_increases(update.node, rows)
        started = False
        for begin in range(0, len(records), step):
            if started:  # the previous step's, before the next one starts
                yield ApplyStep(increases, last=False)
                increases = _step_increases(update.node, rows)
            started = True
            known = node_state.counters_known
            for record in records[begin : begin + step]:
                seen.add(record.key)
                apply_record(entry, record, first_snapshot, self.first_snapshot, increases)
            self._counters += node_state.counters_known - known
            if key_ids:
                ids = key_ids[begin : begin + step]
                define_ids(table, rows, records[begin : begin + step], ids)
        value_step = step * VALUES_PER_RECORD  # a value by id costs a fraction of a record
        for begin in range(0, len(values), value_step):
            if started:
                yield ApplyStep(increases, last=False)
                increases = _step_increases(update.node, rows)
            started = True
            end = begin + value_step
            ids, packets, octets = values.ids[begin:end], values.packets[begin:end], values.bytes[begin:end]
            apply_values(node_state, rows, table, ids, packets, octets, increases)
        if update.removed or update.removed_ids:  # a counter changed by id is not removed either
            keys = rows.keys
            seen.update(keys[table[key_id]] for key_id in values.ids)  # type: ignore[misc]  # held rows
        same_instance = node_state.instance_id == update.agent_instance_id and node_state.snapshots > 0
        self._update_diagnostics(node_state, update.diagnostic_counts, same_instance)
        node_state.instance_id = update.agent_instance_id
        node_state.sequence = update.sequence
        node_state.read_time = update.read_time.timestamp()
        node_state.invalid_counters += update.invalid_counters
        node_state.received_at = now
        node_state.agent_version = update.agent_version or node_state.agent_version
        node_state.snapshots += 1
        if update.sources:
            node_state.dataplanes = tuple(sorted({source.dataplane for source in update.sources}))
        retired_at = rows.retired_at
        if update.full:
            for key, row in rows.row_of.items():
                if retired_at[row] is None and key not in seen:
                    retired_at[row] = now
                    node_state.counters_retired += 1
        for key in update.removed:
            gone = rows.row_of.get(key)
            if gone is not None and retired_at[gone] is None and key not in seen:
                retired_at[gone] = now
                node_state.counters_retired += 1
        for key_id in update.removed_ids:
            gone = table.pop(key_id, None)
            if gone is not None and retired_at[gone] is None and rows.keys[gone] not in seen:
                retired_at[gone] = now
                node_state.counters_retired += 1
        entry.key_rows = table
        yield ApplyStep(increases, last=True)
        return None

    def expire(self, now: float) -> list[ExpiredCounter]:
        """Forget counters retired for longer than the grace period, and return them.
        Looks only at nodes with retired counters: housekeeping calls this every 30 s on the
        event loop, and a sweep of every counter took ~0.9 s at 500 nodes (2.3 M counters)."""
        expired: list[ExpiredCounter] = []
        for name, entry in self._nodes.items():
            if not entry.state.counters_retired:
                continue
            rows = entry.counters
            gone = [
                row
                for row, retired in enumerate(rows.retired_at)
                if retired is not None and now - retired >= self.retired_grace
            ]
            if not gone:
                continue
            expired.extend(ExpiredCounter(name, row, rows.remove(row)) for row in gone)
            if entry.key_rows:  # an id must not keep (or reach) a forgotten counter's row
                freed = set(gone)
                entry.key_rows = {i: row for i, row in entry.key_rows.items() if row not in freed}
            entry.state.counters_retired -= len(gone)
            entry.state.counters_known -= len(gone)
            self._counters -= len(gone)
        return expired

    def export(self) -> list[NodeRecord]:
        """Every node with its counters, copied (for a checkpoint)."""
        return [
            NodeRecord(
                copy_state(entry.state, connected=entry.state.connected),
                entry.counters.frozen(),
                dict(entry.chain_comments),
            )
            for entry in self._nodes.values()
        ]

    def restore(self, nodes: Iterable[NodeRecord]) -> None:
        """Replace everything with ``nodes`` (a checkpoint's): every node starts
        disconnected, and its agent's next snapshot is differenced against the restored
        raw values (or refused as out of sequence, when it is not newer)."""
        restored: dict[str, NodeLedger] = {}
        for record in nodes:
            state = copy_state(record.state, connected=False)
            rows = CounterRows()
            for counter in record.counters:
                twice = rows.row_of.get(counter.key)
                if twice is not None:  # a checkpoint lists each key once; the last one counts
                    rows.remove(twice)
                rows.add(
                    interned_key(counter.key), counter.raw_packets, counter.raw_bytes, counter.rule_ids,
                    counter.total_packets, counter.total_bytes, counter.chain_comment,
                    counter.group_members, counter.retired_at,
                )  # fmt: skip
            state.counters_known = len(rows)
            state.counters_retired = sum(1 for retired in rows.retired_at if retired is not None)
            restored[state.node] = NodeLedger(state, rows, dict(record.chain_comments))
        self._nodes = restored
        self._counters = sum(len(entry.counters) for entry in restored.values())

    def forget_nodes(self, now: float) -> list[ForgottenNode]:
        """Forget every node without a stream that sent nothing for ``node_expiry``
        seconds, and return them with their counters."""
        gone = [
            name
            for name, entry in self._nodes.items()
            if not entry.state.connected and now - entry.state.received_at >= self.node_expiry
        ]
        return [forgotten for name in gone if (forgotten := self.forget(name)) is not None]

    def forget(self, node: str) -> ForgottenNode | None:
        """Forget ``node`` now, whatever its state (it moved to another shard), and return
        it with its counters; None when unknown."""
        entry = self._nodes.pop(node, None)
        if entry is not None:
            self._counters -= len(entry.counters)
        return ForgottenNode(node, entry.counters.frozen()) if entry is not None else None

    # -- internals -------------------------------------------------------------------

    def _entry(self, node: str) -> NodeLedger:
        entry = self._nodes.get(node)
        if entry is None:
            entry = self._nodes[node] = NodeLedger(NodeState(node))
        return entry

    @staticmethod
    def _update_diagnostics(state: NodeState, counts: Mapping[str, int], same_instance: bool) -> None:
        """Diagnostic counts restart with each agent instance; the totals must not."""
        for code, value in counts.items():
            last = state.diagnostic_counts.get(code, 0) if same_instance else 0
            increase = value - last if value >= last else value
            if increase > 0:
                state.diagnostic_totals[code] = state.diagnostic_totals.get(code, 0) + increase
            else:
                state.diagnostic_totals.setdefault(code, 0)
        state.diagnostic_counts = dict(counts)


def _step_increases(node: str, rows: CounterRows) -> Increases:
    """An empty step of ``node``, whose rows are ``rows``."""
    return Increases(node, rows.keys, rows.chain_comment, rows.group_members)
