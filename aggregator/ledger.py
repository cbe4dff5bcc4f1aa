"""Monotonic totals per node and counter, from the raw kernel values the agents report.

A pure state machine (no I/O, no clock: callers pass ``now``).  Agents report *raw*
iptables counters; those restart from zero whenever felix rewrites a rule, and a derived
deny (entered - accepted - next) restarts in a way that cannot always be told apart
from traffic.  The ledger turns the raw values into totals that never decrease and never
count a packet twice, and reports every increase so the hit API can stream it.

Which snapshots apply (:meth:`Ledger.check`, the one place this is decided):

* snapshots of one agent instance carry increasing sequence numbers, and the first one
  an instance sends is full.  A snapshot not newer than the last one applied from its
  instance, a delta that does not follow it, or a delta from an instance whose full
  snapshot was never applied is refused (counted; ingest asks the agent for a full
  resync).  A new instance (agent restart) starts over with a full snapshot;
* memory is bounded whatever the agents send: a snapshot that would take the ledger past
  its node cap, a node past its counter cap, or that names more distinct diagnostic
  codes than the cap, is refused whole (counted; nothing of it is kept).

Rules, per (node, :class:`~calico_accountant.records.CounterKey`):

* the node's first snapshot since this aggregator started (or since it forgot the node)
  seeds the baselines.  What it counts depends on :class:`FirstSnapshot`: the running
  aggregator takes it as the baseline only (``BASELINE``: totals start at zero, so a
  restart never makes a series jump to a lower non-zero value), while one-shot analysis
  of a dump counts the raw values (``COUNT``: kernel counters count since the rule was
  created).  Either way the increases are flagged ``initial``;
* a key never seen before on a known node: its raw value is its first increase (the rule
  is new, its counter started at zero);
* same ``rule_ids`` and raw ≥ last: the difference;
* same ``rule_ids`` and raw < last (packets or bytes): the counter was reset, add the raw;
* every rule id different (rule rewritten, interface recreated): a new counter, add the raw;
* some ids of a multi-rule derived counter changed (a POLICY_DENY's next rule was
  replaced): the interval cannot be computed exactly, so add nothing, take the raw as
  the new baseline and count it in ``inexact_resets``;
* a new agent instance (agent restart) changes nothing: kernel counters did not reset,
  identical raws add zero;
* a key missing from a full snapshot, or listed as removed in a delta, is *retired*: its
  totals stay (node and cluster sums keep them forever), it comes back to life with the
  rules above if it reappears, and :meth:`Ledger.expire` hands it over after a grace
  period so its per-workload series can be removed;
* a node that has had no stream and no snapshot for ``node_expiry`` seconds is forgotten
  whole (:meth:`Ledger.forget_nodes`): its counters are handed over so that its own
  series can leave while the cluster sums keep what it counted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from calico_accountant.records import CounterKey, CounterRecord

__all__ = [
    "CounterState",
    "ExpiredCounter",
    "FirstSnapshot",
    "ForgottenNode",
    "Increase",
    "Ledger",
    "Limits",
    "NodeRecord",
    "NodeState",
    "NodeUpdate",
    "Refusal",
    "RefusalProblem",
    "ResetReason",
]


class NodeUpdate(Protocol):
    """One whole node snapshot as the ledger applies it: what
    :func:`calico_accountant.wire.decode_snapshot` returns (``DecodedSnapshot``)."""

    @property
    def node(self) -> str: ...
    @property
    def agent_instance_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def read_time(self) -> datetime: ...
    @property
    def full(self) -> bool: ...
    @property
    def records(self) -> Sequence[CounterRecord]: ...
    @property
    def removed(self) -> Sequence[CounterKey]: ...
    @property
    def diagnostic_counts(self) -> Mapping[str, int]: ...
    @property
    def agent_version(self) -> str: ...
    @property
    def invalid_counters(self) -> int: ...


class FirstSnapshot(enum.Enum):
    """What a node's first snapshot (since start, or since the node was forgotten) adds."""

    BASELINE = "baseline"
    """Nothing: its raw values are the baseline later snapshots are differenced against."""
    COUNT = "count"
    """Its raw values: all traffic since each rule was created (for a one-shot report)."""


class ResetReason(enum.StrEnum):
    """Why a counter's raw value could not simply be differenced."""

    DECREASED = "decreased"
    RULES_REWRITTEN = "rules_rewritten"
    INEXACT = "inexact"


class RefusalProblem(enum.StrEnum):
    """Why a snapshot is not applied."""

    NO_BASELINE = "no_baseline"
    """A delta from an agent instance none of whose (full) snapshots was applied."""
    GAP = "gap"
    """A delta that does not follow the last applied sequence of its instance."""
    NOT_NEWER = "not_newer"
    """Not newer than the last applied snapshot of its instance."""
    TOO_MANY_NODES = "too_many_nodes"
    TOO_MANY_COUNTERS = "too_many_counters"
    TOO_MANY_DIAGNOSTIC_CODES = "too_many_diagnostic_codes"

    @property
    def is_sequence(self) -> bool:
        """Out of order (a full resync fixes it), as opposed to over a limit."""
        return self in (RefusalProblem.NO_BASELINE, RefusalProblem.GAP, RefusalProblem.NOT_NEWER)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused snapshot: the problem and a sentence for the agent's log."""

    problem: RefusalProblem
    message: str


@dataclass(frozen=True, slots=True)
class Limits:
    """What the ledger holds at most, so that no agent (or impostor) can grow it without
    bound.  The defaults fit a 5,000-node cluster with big nodes several times over."""

    max_nodes: int = 20_000
    max_counters_per_node: int = 1_000_000
    """Live and retired counters of one node (a 1000-pod node with 40 policies per pod
    has ~160k)."""
    max_counters: int = 5_000_000
    """Live and retired counters of all nodes together: what bounds the aggregator's memory
    when identities are not checked (about 1 KiB each with their series)."""
    max_diagnostic_codes: int = 64
    """Distinct parse diagnostic codes one node may report (the agent has about a dozen)."""


@dataclass(frozen=True, slots=True)
class Increase:
    """How much one counter grew in one update.

    Zero increases are reported once for every key the ledger sees for the first time,
    so that series exist for policies that never matched; the hit API skips them.
    """

    node: str
    key: CounterKey
    packets: int
    bytes: int
    initial: bool = False
    """Counted from the node's first snapshot since the aggregator started: traffic since
    the rule was created, not traffic since the previous read."""
    new_key: bool = False


@dataclass(slots=True)
class CounterState:
    """The ledger's memory of one counter.  Treat as read-only outside this module."""

    key: CounterKey
    raw_packets: int
    raw_bytes: int
    rule_ids: tuple[str, ...]
    total_packets: int
    total_bytes: int
    chain_comment: str = ""
    group_members: tuple[str, ...] = ()
    retired_at: float | None = None
    """When the key vanished from its node's snapshots; None while live."""

    @property
    def live(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True, slots=True)
class ExpiredCounter:
    """A retired counter whose grace period ended: the ledger forgot it."""

    node: str
    state: CounterState


@dataclass(frozen=True, slots=True)
class ForgottenNode:
    """A node that stopped reporting long ago: the ledger forgot it and its counters."""

    node: str
    counters: tuple[CounterState, ...]


@dataclass(slots=True)
class NodeState:
    """What the aggregator knows about one node's agent."""

    node: str
    instance_id: str = ""
    sequence: int = 0
    read_time: float = 0.0
    received_at: float = 0.0
    connected: bool = False
    agent_version: str = ""
    snapshots: int = 0
    diagnostic_counts: dict[str, int] = field(default_factory=dict)
    """As last reported by the current agent instance."""
    diagnostic_totals: dict[str, int] = field(default_factory=dict)
    """Monotonic across agent restarts (what the ``_total`` metric exports)."""
    resets: dict[str, int] = field(default_factory=dict)
    """Counter resets seen, per :class:`ResetReason` value."""
    sequence_gaps: int = 0
    """Deltas refused because they did not follow the previous sequence of their instance
    (or no full snapshot of it was applied); a full resync follows."""
    out_of_order: int = 0
    """Snapshots refused because their sequence was not newer than the last applied one."""
    invalid_counters: int = 0
    """Counters the wire decoder dropped because they did not validate."""
    limit_refusals: int = 0
    """Snapshots refused whole because they would exceed a :class:`Limits` cap."""
    counters_known: int = 0
    """Counters ever seen on the node and not yet forgotten (live + retired)."""
    counters_retired: int = 0

    @property
    def counters_live(self) -> int:
        return self.counters_known - self.counters_retired

    @property
    def inexact_resets(self) -> int:
        return self.resets.get(ResetReason.INEXACT.value, 0)

    def stale(self, now: float, timeout: float) -> bool:
        """No snapshot received for longer than ``timeout`` seconds (or never)."""
        return self.snapshots == 0 or now - self.received_at > timeout


@dataclass(slots=True)
class _NodeLedger:
    state: NodeState
    counters: dict[CounterKey, CounterState] = field(default_factory=dict)
    chain_comments: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node's part of the ledger, copied out (what a checkpoint keeps): nothing in it
    changes when the ledger does."""

    state: NodeState
    counters: tuple[CounterState, ...]
    chain_comments: Mapping[str, str]


def _copy_state(state: NodeState, *, connected: bool) -> NodeState:
    copied = replace(state, connected=connected)
    copied.diagnostic_counts = dict(state.diagnostic_counts)
    copied.diagnostic_totals = dict(state.diagnostic_totals)
    copied.resets = dict(state.resets)
    return copied


def _copy_counter(state: CounterState) -> CounterState:
    return CounterState(
        state.key,
        state.raw_packets,
        state.raw_bytes,
        state.rule_ids,
        state.total_packets,
        state.total_bytes,
        state.chain_comment,
        state.group_members,
        state.retired_at,
    )


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
        self._nodes: dict[str, _NodeLedger] = {}

    # -- reading ---------------------------------------------------------------------

    def node_names(self) -> list[str]:
        return sorted(self._nodes)

    def node(self, node: str) -> NodeState | None:
        entry = self._nodes.get(node)
        return entry.state if entry else None

    def nodes(self) -> list[NodeState]:
        return [self._nodes[name].state for name in sorted(self._nodes)]

    def counters(self, node: str) -> Mapping[CounterKey, CounterState]:
        entry = self._nodes.get(node)
        return MappingProxyType(entry.counters) if entry else MappingProxyType({})

    def chain_comments(self, node: str) -> Mapping[str, str]:
        """Felix's identity comment per policy chain, as last seen on the node."""
        entry = self._nodes.get(node)
        return MappingProxyType(entry.chain_comments) if entry else MappingProxyType({})

    def items(self) -> Iterator[tuple[str, CounterState]]:
        """Every counter the ledger remembers (live and retired), with its node."""
        for name, entry in self._nodes.items():
            for state in entry.counters.values():
                yield name, state

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
        limits = self.limits
        if entry is None and len(self._nodes) >= limits.max_nodes:
            return Refusal(
                RefusalProblem.TOO_MANY_NODES, f"the aggregator tracks {limits.max_nodes} nodes already"
            )
        codes = update.diagnostic_counts
        if len(codes) > limits.max_diagnostic_codes:
            return Refusal(
                RefusalProblem.TOO_MANY_DIAGNOSTIC_CODES,
                f"{len(codes)} diagnostic codes; at most {limits.max_diagnostic_codes}",
            )
        # The node's totals keep every code it ever reported: new codes count against the cap
        # too, or snapshots of 64 new codes each would grow them without bound.
        totals = entry.state.diagnostic_totals if entry is not None else {}
        if len(totals) + len(codes) > limits.max_diagnostic_codes:
            distinct = len(totals) + sum(1 for code in codes if code not in totals)
            if distinct > limits.max_diagnostic_codes:
                return Refusal(
                    RefusalProblem.TOO_MANY_DIAGNOSTIC_CODES,
                    f"{distinct} distinct diagnostic codes for one node; "
                    f"at most {limits.max_diagnostic_codes}",
                )
        known = entry.counters if entry is not None else {}
        everywhere = sum(len(other.counters) for other in self._nodes.values())
        if (
            len(known) + len(update.records) > limits.max_counters_per_node
            or everywhere + len(update.records) > limits.max_counters
        ):  # only then count the new keys exactly
            new = sum(1 for record in update.records if record.key not in known)
            if len(known) + new > limits.max_counters_per_node:
                return Refusal(
                    RefusalProblem.TOO_MANY_COUNTERS,
                    f"{len(known) + new} counters for one node; at most {limits.max_counters_per_node}",
                )
            if everywhere + new > limits.max_counters:
                return Refusal(
                    RefusalProblem.TOO_MANY_COUNTERS,
                    f"{everywhere + new} counters in all; at most {limits.max_counters}",
                )
        return self._check_sequence(entry, update)

    @staticmethod
    def _check_sequence(entry: _NodeLedger | None, update: NodeUpdate) -> Refusal | None:
        state = entry.state if entry is not None else None
        same_instance = (
            state is not None and state.snapshots > 0 and state.instance_id == update.agent_instance_id
        )
        if not same_instance:
            if update.full:
                return None
            return Refusal(
                RefusalProblem.NO_BASELINE,
                "no full snapshot of this agent instance was applied yet; send a full one",
            )
        assert state is not None
        if update.sequence <= state.sequence:
            return Refusal(
                RefusalProblem.NOT_NEWER, f"sequence went back: {update.sequence} after {state.sequence}"
            )
        if not update.full and update.sequence != state.sequence + 1:
            return Refusal(RefusalProblem.GAP, f"sequence gap: got {update.sequence} after {state.sequence}")
        return None

    def apply(self, update: NodeUpdate, now: float) -> list[Increase]:
        """Apply one snapshot; returns the increases.  A snapshot :meth:`check` refuses
        changes nothing but the node's refusal counts (and a node over a limit is not
        even created)."""
        refusal = self.check(update)
        if refusal is not None and not refusal.problem.is_sequence:
            entry = self._nodes.get(update.node)
            if entry is not None:
                entry.state.limit_refusals += 1
            return []
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
            return []
        same_instance = node_state.instance_id == update.agent_instance_id and node_state.snapshots > 0
        self._update_diagnostics(node_state, update.diagnostic_counts, same_instance)
        node_state.instance_id = update.agent_instance_id
        node_state.sequence = update.sequence
        node_state.read_time = update.read_time.timestamp()
        node_state.invalid_counters += update.invalid_counters
        node_state.received_at = now
        node_state.agent_version = update.agent_version or node_state.agent_version
        node_state.snapshots += 1

        increases: list[Increase] = []
        seen: set[CounterKey] = set()
        for record in update.records:
            seen.add(record.key)
            increase = self._apply_record(entry, record, first_snapshot)
            if increase is not None:
                increases.append(increase)
        if update.full:
            for key, state in entry.counters.items():
                if key not in seen and state.retired_at is None:
                    state.retired_at = now
                    node_state.counters_retired += 1
        for key in update.removed:
            gone = entry.counters.get(key)
            if gone is not None and gone.retired_at is None and key not in seen:
                gone.retired_at = now
                node_state.counters_retired += 1
        return increases

    def expire(self, now: float) -> list[ExpiredCounter]:
        """Forget counters retired for longer than the grace period, and return them."""
        expired: list[ExpiredCounter] = []
        for name, entry in self._nodes.items():
            gone = [
                key
                for key, state in entry.counters.items()
                if state.retired_at is not None and now - state.retired_at >= self.retired_grace
            ]
            if not gone:
                continue
            for key in gone:
                expired.append(ExpiredCounter(name, entry.counters.pop(key)))
            entry.state.counters_retired -= len(gone)
            entry.state.counters_known -= len(gone)
        return expired

    def export(self) -> list[NodeRecord]:
        """Every node with its counters, copied (for a checkpoint)."""
        return [
            NodeRecord(
                _copy_state(entry.state, connected=entry.state.connected),
                tuple(_copy_counter(state) for state in entry.counters.values()),
                dict(entry.chain_comments),
            )
            for entry in self._nodes.values()
        ]

    def restore(self, nodes: Iterable[NodeRecord]) -> None:
        """Replace everything with ``nodes`` (a checkpoint's): every node starts
        disconnected, and its agent's next snapshot is differenced against the restored
        raw values (or refused as out of sequence, when it is not newer)."""
        restored: dict[str, _NodeLedger] = {}
        for record in nodes:
            state = _copy_state(record.state, connected=False)
            counters = {counter.key: _copy_counter(counter) for counter in record.counters}
            state.counters_known = len(counters)
            state.counters_retired = sum(1 for counter in counters.values() if counter.retired_at is not None)
            restored[state.node] = _NodeLedger(state, counters, dict(record.chain_comments))
        self._nodes = restored

    def forget_nodes(self, now: float) -> list[ForgottenNode]:
        """Forget every node without a stream that sent nothing for ``node_expiry``
        seconds, and return them with their counters."""
        gone = [
            name
            for name, entry in self._nodes.items()
            if not entry.state.connected and now - entry.state.received_at >= self.node_expiry
        ]
        return [ForgottenNode(name, tuple(self._nodes.pop(name).counters.values())) for name in gone]

    # -- internals -------------------------------------------------------------------

    def _entry(self, node: str) -> _NodeLedger:
        entry = self._nodes.get(node)
        if entry is None:
            entry = self._nodes[node] = _NodeLedger(NodeState(node))
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

    def _apply_record(
        self, entry: _NodeLedger, record: CounterRecord, first_snapshot: bool
    ) -> Increase | None:
        packets = max(record.packets, 0)
        octets = max(record.bytes, 0)
        if record.chain_comment and record.key.chain:
            entry.chain_comments[record.key.chain] = record.chain_comment
        state = entry.counters.get(record.key)
        if state is None:
            counted = not first_snapshot or self.first_snapshot is FirstSnapshot.COUNT
            total_packets, total_bytes = (packets, octets) if counted else (0, 0)
            entry.state.counters_known += 1
            entry.counters[record.key] = CounterState(
                key=record.key,
                raw_packets=packets,
                raw_bytes=octets,
                rule_ids=record.rule_ids,
                total_packets=total_packets,
                total_bytes=total_bytes,
                chain_comment=record.chain_comment,
                group_members=record.group_members,
            )
            return Increase(
                entry.state.node, record.key, total_packets, total_bytes, first_snapshot, new_key=True
            )

        if state.retired_at is not None:
            state.retired_at = None
            entry.state.counters_retired -= 1
        if record.chain_comment:
            state.chain_comment = record.chain_comment
        if record.group_members:
            state.group_members = record.group_members
        d_packets, d_bytes, reason = _difference(state, packets, octets, record.rule_ids)
        if reason is not None:
            entry.state.resets[reason.value] = entry.state.resets.get(reason.value, 0) + 1
        state.raw_packets, state.raw_bytes, state.rule_ids = packets, octets, record.rule_ids
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
