"""The ledger: monotonic totals across every kind of counter reset, nothing counted twice."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.ledger.admission import RefusalProblem
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.rows import RAW_MAX
from calico_accountant.records import CounterRecord
from tests.support.accounting import accept, deny, no_policy_drop, snapshot

NODE = "node-a"


def totals(ledger: Ledger, node: str = NODE) -> dict[object, tuple[int, int]]:
    return {key: (s.total_packets, s.total_bytes) for key, s in ledger.counters(node).items()}


def test_first_snapshot_counts_kernel_counts_as_totals() -> None:
    ledger = Ledger()
    records = [accept("cali1", "cali-pi-a", 7), no_policy_drop("cali1", 3)]
    increases = ledger.apply(snapshot(NODE, records), now=0)
    assert {(i.key, i.packets, i.bytes) for i in increases} == {(r.key, r.packets, r.bytes) for r in records}
    assert all(i.initial and i.new_key for i in increases)
    assert totals(ledger) == {r.key: (r.packets, r.bytes) for r in records}


def test_growth_is_the_difference() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 7)]), now=0)
    increases = ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 10)], sequence=2), now=1)
    assert [(i.packets, i.bytes, i.initial) for i in increases] == [(3, 300, False)]
    assert list(totals(ledger).values()) == [(10, 1000)]


def test_unchanged_counters_report_nothing() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 7)]), now=0)
    assert ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 7)], sequence=2), now=1) == []


def test_decrease_with_same_rules_is_a_reset_and_counts_the_new_raw() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 50)]), now=0)
    increases = ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 4)], sequence=2), now=1)
    assert [(i.packets, i.bytes) for i in increases] == [(4, 400)]
    assert list(totals(ledger).values()) == [(54, 5400)]
    assert ledger.node(NODE).resets == {"decreased": 1}  # type: ignore[union-attr]


def test_bytes_decreasing_alone_is_also_a_reset() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 5, 5000)]), now=0)
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 6, 60)], sequence=2), now=1)
    assert list(totals(ledger).values()) == [(11, 5060)]


def test_rewritten_rule_counts_the_new_raw_even_when_larger() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 5, ids=("old",))]), now=0)
    increases = ledger.apply(
        snapshot(NODE, [accept("cali1", "cali-pi-a", 9, ids=("new",))], sequence=2), now=1
    )
    assert [i.packets for i in increases] == [9]
    assert list(totals(ledger).values()) == [(14, 1400)]
    assert ledger.node(NODE).resets == {"rules_rewritten": 1}  # type: ignore[union-attr]


def test_derived_deny_with_some_rules_rewritten_adds_nothing_and_rebaselines() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [deny("cali1", "cali-pi-a", 20, ids=("j", "r", "n"))]), now=0)
    # the next rule was replaced: the interval's denials cannot be computed exactly
    increases = ledger.apply(
        snapshot(NODE, [deny("cali1", "cali-pi-a", 25, ids=("j", "r", "n2"))], sequence=2), 1
    )
    assert increases == []
    assert list(totals(ledger).values()) == [(20, 2000)]
    assert ledger.node(NODE).inexact_resets == 1  # type: ignore[union-attr]
    # the new raw is the baseline from now on
    increases = ledger.apply(
        snapshot(NODE, [deny("cali1", "cali-pi-a", 31, ids=("j", "r", "n2"))], sequence=3), 2
    )
    assert [i.packets for i in increases] == [6]
    assert list(totals(ledger).values()) == [(26, 2600)]


def test_derived_deny_with_all_rules_rewritten_is_a_plain_reset() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [deny("cali1", "cali-pi-a", 20, ids=("j", "r", "n"))]), now=0)
    ledger.apply(snapshot(NODE, [deny("cali1", "cali-pi-a", 2, ids=("j2", "r2", "n2"))], sequence=2), now=1)
    assert list(totals(ledger).values()) == [(22, 2200)]
    assert ledger.node(NODE).inexact_resets == 0  # type: ignore[union-attr]


def test_agent_restart_with_the_same_raws_adds_nothing() -> None:
    ledger = Ledger()
    records = [accept("cali1", "cali-pi-a", 7), deny("cali1", "cali-pi-a", 2)]
    ledger.apply(snapshot(NODE, records, instance="one", sequence=5), now=0)
    assert ledger.apply(snapshot(NODE, records, instance="two", sequence=1), now=1) == []
    assert totals(ledger) == {r.key: (r.packets, r.bytes) for r in records}
    # and the new instance's sequence numbers are accepted from 1
    increases = ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 8)], instance="two", sequence=2), 2)
    assert [i.packets for i in increases] == [1]


def test_full_snapshot_retires_missing_keys_but_keeps_their_totals() -> None:
    ledger = Ledger()
    a, b = accept("cali1", "cali-pi-a", 7), accept("cali2", "cali-pi-a", 9)
    ledger.apply(snapshot(NODE, [a, b]), now=0)
    ledger.apply(snapshot(NODE, [a], sequence=2), now=10)
    states = ledger.counters(NODE)
    assert states[a.key].live and not states[b.key].live
    assert states[b.key].retired_at == 10
    assert states[b.key].total_packets == 9
    node = ledger.node(NODE)
    assert node is not None and (node.counters_live, node.counters_retired) == (1, 1)
    ledger.apply(snapshot(NODE, [a, b], sequence=3), now=11)  # b is back
    assert (node.counters_live, node.counters_retired) == (2, 0)


def test_retired_key_reappearing_with_same_rules_is_not_counted_twice() -> None:
    ledger = Ledger()
    a = accept("cali1", "cali-pi-a", 7)
    ledger.apply(snapshot(NODE, [a]), now=0)
    ledger.apply(snapshot(NODE, [], sequence=2), now=1)  # e.g. a read that omitted it
    increases = ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 12)], sequence=3), now=2)
    assert [i.packets for i in increases] == [5]
    assert ledger.counters(NODE)[a.key].live


def test_delta_removals_retire_and_new_keys_count_their_raw() -> None:
    ledger = Ledger()
    a = accept("cali1", "cali-pi-a", 7)
    ledger.apply(snapshot(NODE, [a]), now=0)
    fresh = accept("cali3", "cali-pi-b", 4)
    increases = ledger.apply(snapshot(NODE, [fresh], sequence=2, full=False, removed=[a.key]), now=1)
    assert [(i.key, i.packets, i.initial, i.new_key) for i in increases] == [(fresh.key, 4, False, True)]
    assert not ledger.counters(NODE)[a.key].live
    assert ledger.counters(NODE)[fresh.key].total_packets == 4


def test_out_of_order_snapshot_is_ignored_and_gaps_are_counted() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 7)], sequence=3), now=0)
    assert ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 1)], sequence=2), now=1) == []
    assert list(totals(ledger).values()) == [(7, 700)]
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 9)], sequence=6, full=False), now=2)
    state = ledger.node(NODE)
    assert state is not None and state.out_of_order == 1 and state.sequence_gaps == 1


def test_diagnostic_totals_survive_agent_restarts() -> None:
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [], diagnostics={"garbled_line": 3}), now=0)
    ledger.apply(snapshot(NODE, [], sequence=2, diagnostics={"garbled_line": 5}), now=1)
    ledger.apply(snapshot(NODE, [], instance="agent-2", diagnostics={"garbled_line": 2}), now=2)
    assert ledger.node(NODE).diagnostic_totals == {"garbled_line": 7}  # type: ignore[union-attr]


def test_expire_hands_over_retired_counters_after_the_grace_period() -> None:
    ledger = Ledger(retired_grace=60)
    a, b = accept("cali1", "cali-pi-a", 7), accept("cali2", "cali-pi-a", 9)
    ledger.apply(snapshot(NODE, [a, b]), now=0)
    ledger.apply(snapshot(NODE, [a], sequence=2), now=10)
    assert ledger.expire(now=69) == []
    expired = ledger.expire(now=70)
    assert [(e.node, e.state.key, e.state.total_packets) for e in expired] == [(NODE, b.key, 9)]
    assert b.key not in ledger.counters(NODE)
    node = ledger.node(NODE)
    assert node is not None and (node.counters_live, node.counters_retired) == (1, 0)


def test_staleness_and_connection() -> None:
    ledger = Ledger(stale_after=30)
    ledger.set_connected(NODE, True)
    assert ledger.is_stale(NODE, now=0)  # connected but nothing received yet
    ledger.apply(snapshot(NODE, []), now=100)
    assert not ledger.is_stale(NODE, now=130)
    assert ledger.is_stale(NODE, now=131)
    assert ledger.node(NODE).connected  # type: ignore[union-attr]


def test_values_outside_64_bits_are_clamped_not_fatal() -> None:
    """A record (not the wire, whose fields are uint64) may carry any int: it is kept within
    what a row's 64-bit raw column holds, the first time and after."""
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", -5, 2**70)]), now=0)
    state = ledger.counters(NODE)[accept("cali1", "cali-pi-a", 0).key]
    assert (state.raw_packets, state.raw_bytes) == (0, RAW_MAX)
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 2**65, -1)], sequence=2), now=1)
    state = ledger.counters(NODE)[accept("cali1", "cali-pi-a", 0).key]
    assert (state.raw_packets, state.raw_bytes) == (RAW_MAX, 0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Ledger(stale_after=0)


# -- property: totals equal the true increments, whatever resets happen ----------------------


@dataclass
class _Kernel:
    """One simulated kernel counter: its value, its rule ids, and what really happened."""

    packets: int = 0
    generation: int = 0
    true_total: int = 0
    reported: int = 0
    """The value of the last snapshot that carried this counter."""


_STEP = st.one_of(
    st.tuples(st.just("traffic"), st.integers(0, 1000)),
    st.tuples(st.just("zeroed"), st.integers(0, 1000)),  # counter zeroed, then some traffic
    st.tuples(st.just("rewritten"), st.integers(0, 5000)),  # felix rewrote the rule
    st.tuples(st.just("restart"), st.just(0)),  # agent restarted, same raws resent
    st.tuples(st.just("omitted"), st.integers(0, 1000)),  # traffic, but one read left the record out
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 2), _STEP), max_size=60))
def test_totals_never_decrease_and_equal_the_true_increments(
    steps: list[tuple[int, tuple[str, int]]],
) -> None:
    ledger = Ledger()
    kernels = [_Kernel(packets=5 * i, true_total=5 * i, reported=5 * i) for i in range(3)]
    instance, sequence = 0, 1

    def records(omit: int = -1) -> list[CounterRecord]:
        return [
            accept(f"cali{i}", "cali-pi-a", k.packets, ids=(f"gen{k.generation}",))
            for i, k in enumerate(kernels)
            if i != omit
        ]

    ledger.apply(snapshot(NODE, records(), instance=f"i{instance}", sequence=sequence), now=0)
    previous = totals(ledger)
    for now, (which, (event, amount)) in enumerate(steps, start=1):
        kernel = kernels[which]
        omit = -1
        if event in ("traffic", "omitted"):
            kernel.packets += amount
            kernel.true_total += amount
            omit = which if event == "omitted" else -1
        elif event == "zeroed":
            # A reset with the same rule ids is only detectable as a decrease from the last
            # value the ledger saw.  Traffic between that read and a reset is lost to any
            # sampler, so it is not part of the truth either.
            if kernel.reported > 0:
                kernel.true_total -= kernel.packets - kernel.reported
                kernel.packets = min(amount, kernel.reported - 1)
                kernel.true_total += kernel.packets
        elif event == "rewritten":
            kernel.true_total -= kernel.packets - kernel.reported
            kernel.generation += 1
            kernel.packets = amount
            kernel.true_total += amount
        else:
            instance, sequence = instance + 1, 0
        sequence += 1
        ledger.apply(snapshot(NODE, records(omit), instance=f"i{instance}", sequence=sequence), now=now)
        for index, reported in enumerate(kernels):
            if index != omit:
                reported.reported = reported.packets
        current = totals(ledger)
        for key, (packets, octets) in current.items():
            assert packets >= previous[key][0] and octets >= previous[key][1]
        previous = current
    sequence += 1
    ledger.apply(snapshot(NODE, records(), instance=f"i{instance}", sequence=sequence), now=len(steps) + 1)
    assert [ledger.counters(NODE)[r.key].total_packets for r in records()] == [k.true_total for k in kernels]
    assert all(state.live for state in ledger.counters(NODE).values())


@settings(max_examples=100, deadline=None)
@given(
    chunk=st.integers(1, 7),
    raws=st.lists(st.lists(st.integers(0, 50), min_size=6, max_size=6), min_size=1, max_size=5),
    dropped=st.lists(st.integers(0, 5), max_size=5),
)
def test_applying_in_steps_is_exactly_applying_whole(
    chunk: int, raws: list[list[int]], dropped: list[int]
) -> None:
    """The steps of :meth:`Ledger.applying` (a lock released between them) change
    nothing about what is counted: same increases, same totals, same retirements."""
    whole, stepped = Ledger(), Ledger()
    for sequence, values in enumerate(raws, start=1):
        gone = dropped[sequence - 1] if sequence - 1 < len(dropped) else -1
        records = [accept(f"cali{i}", "cali-pi-a", v) for i, v in enumerate(values) if i != gone]
        update = snapshot(NODE, records, sequence=sequence)
        expected = whole.apply(update, now=sequence)
        steps = list(stepped.applying(update, now=sequence, chunk=chunk))
        assert len(steps) == max(1, -(-len(records) // chunk))
        assert [i for step in steps for i in step.increases] == expected
        assert [step.last for step in steps] == [False] * (len(steps) - 1) + [True]
        assert totals(stepped) == totals(whole)
        assert {k: s.retired_at for k, s in stepped.counters(NODE).items()} == {
            k: s.retired_at for k, s in whole.counters(NODE).items()
        }
        assert stepped.node(NODE) == whole.node(NODE)


def test_between_steps_the_node_is_still_at_its_previous_sequence() -> None:
    """A checkpoint taken between steps restores to the previous sequence (the agent's next
    delta then asks for a full resync), and the node is not forgotten meanwhile."""
    ledger = Ledger(node_expiry=10)
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 1)]), now=0)
    records = [accept(f"cali{i}", "cali-pi-a", 5) for i in range(4)]
    steps = ledger.applying(snapshot(NODE, records, sequence=2), now=100, chunk=2)
    next(steps)
    state = ledger.node(NODE)
    assert state is not None and state.sequence == 1 and state.snapshots == 1
    assert ledger.forget_nodes(now=105) == []
    assert list(steps) and ledger.node(NODE).sequence == 2  # type: ignore[union-attr]


def test_a_refused_snapshot_yields_no_step_and_returns_why() -> None:
    """The generator of a refused snapshot ends at once with the refusal :meth:`check`
    gives (the accountant raises it without checking twice), and counts it."""
    ledger = Ledger()
    ledger.apply(snapshot(NODE, [accept("cali1", "cali-pi-a", 1)]), now=0)
    gap = snapshot(NODE, [accept("cali1", "cali-pi-a", 2)], sequence=3, full=False)
    expected = ledger.check(gap)
    assert expected is not None and expected.problem is RefusalProblem.GAP
    steps = ledger.applying(gap, now=1)
    with pytest.raises(StopIteration) as ended:
        next(steps)
    assert ended.value.value == expected
    assert ledger.node(NODE).sequence_gaps == 1  # type: ignore[union-attr]
    applied = ledger.applying(
        snapshot(NODE, [accept("cali1", "cali-pi-a", 3)], sequence=2, full=False), now=2
    )
    assert [step.last for step in applied] == [True]
