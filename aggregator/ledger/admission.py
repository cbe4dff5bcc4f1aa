"""Which snapshots the ledger accepts: in order for their agent instance, and within the
caps that bound its memory whatever the agents send (pure checks)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.ledger.state import NodeState, NodeUpdate
from calico_accountant.records import CounterKey

__all__ = ["Limits", "Refusal", "RefusalProblem", "check_limits", "check_sequence"]


class RefusalProblem(enum.StrEnum):
    """Why a snapshot is not applied."""

    NO_BASELINE = "no_baseline"
    """A delta from an agent instance none of whose (full) snapshots was applied."""
    GAP = "gap"
    """A delta that does not follow the last applied sequence of its instance."""
    NOT_NEWER = "not_newer"
    """Not newer than the last applied snapshot of its instance."""
    UNKNOWN_KEY_ID = "unknown_key_id"
    """Values or removals by a key id the node's table does not hold (after a restart of
    the aggregator, or a broken agent): a full snapshot defines every id again."""
    KEY_ID_CONFLICT = "key_id_conflict"
    """A key id defined again for another key: the table cannot be trusted."""
    TOO_MANY_NODES = "too_many_nodes"
    TOO_MANY_COUNTERS = "too_many_counters"
    TOO_MANY_DIAGNOSTIC_CODES = "too_many_diagnostic_codes"

    @property
    def is_sequence(self) -> bool:
        """Out of order (a full resync fixes it), as opposed to over a limit."""
        return self in (
            RefusalProblem.NO_BASELINE,
            RefusalProblem.GAP,
            RefusalProblem.NOT_NEWER,
            RefusalProblem.UNKNOWN_KEY_ID,
            RefusalProblem.KEY_ID_CONFLICT,
        )

    @property
    def is_key_ids(self) -> bool:
        """About key ids (:mod:`aggregator.ledger.keyed`), not the order of snapshots."""
        return self in (RefusalProblem.UNKNOWN_KEY_ID, RefusalProblem.KEY_ID_CONFLICT)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused snapshot: the problem and a sentence for the agent's log."""

    problem: RefusalProblem
    message: str


@dataclass(frozen=True, slots=True)
class Limits:
    """What the ledger holds at most, so that no agent (or impostor) can grow it without
    bound.  The node caps fit a 5,000-node cluster with big nodes several times over; the
    counter cap in all is what bounds memory, and is sized for ~1,000 nodes of 110 pods x 10
    policies (raise it with the memory: ``docs/performance.md``, "Sizing")."""

    max_nodes: int = 20_000
    max_counters_per_node: int = 1_000_000
    """Live and retired counters of one node (a 1000-pod node with 40 policies per pod
    has ~160k)."""
    max_counters: int = 5_000_000
    """Live and retired counters of all nodes together: what bounds the aggregator's memory
    when identities are not checked (about 1 KiB each with their series)."""
    max_diagnostic_codes: int = 64
    """Distinct parse diagnostic codes one node may report (the agent has about a dozen)."""


def check_limits(
    limits: Limits,
    update: NodeUpdate,
    state: NodeState | None,
    known: Mapping[CounterKey, object],
    nodes: int,
    everywhere: int,
) -> Refusal | None:
    """Whether ``update`` would take the ledger past a cap: ``state`` and ``known`` are the
    node's (None and empty for a node not seen yet), ``nodes`` and ``everywhere`` the
    ledger's node and counter counts."""
    if state is None and nodes >= limits.max_nodes:
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
    totals = state.diagnostic_totals if state is not None else {}
    if len(totals) + len(codes) > limits.max_diagnostic_codes:
        distinct = len(totals) + sum(1 for code in codes if code not in totals)
        if distinct > limits.max_diagnostic_codes:
            return Refusal(
                RefusalProblem.TOO_MANY_DIAGNOSTIC_CODES,
                f"{distinct} distinct diagnostic codes for one node; at most {limits.max_diagnostic_codes}",
            )
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
    return None


def check_sequence(state: NodeState | None, update: NodeUpdate) -> Refusal | None:
    """Whether ``update`` comes in order for its agent instance (``state``: the node's)."""
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
