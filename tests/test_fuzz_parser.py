"""Fuzzing the parser: mutated real, sample and rendered dumps (CI-sized; ``bench/fuzz.py``
runs the same mutators by the hundred thousand).

The agent parses whatever ``iptables-save`` printed, however damaged, every few seconds,
for months.  So for any input: ``parse_node`` (both paths) and the agent's
``SteadyStateParser`` return instead of raising, every record they return can go on the
wire as is (well-formed key, counts in 0..2**64-1), the two paths agree, the steady-state
fast path agrees with a fresh parse, and a parse's memory stays proportional to its
input.  The oracles live in :mod:`tests.support.fuzzing`, the mutators in
:mod:`tests.support.mutations`.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_agent.parsing import parse_node
from tests.support.felix_render import node_models, render
from tests.support.fuzzing import parser_problems, peak_traced, steady_problems
from tests.support.mutations import (
    huge_line,
    mutate_counters,
    mutate_dump,
    sample_dumps,
    seed_dumps,
)

SEEDS = seed_dumps()
DUMPS = dict(SEEDS)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
seeds = st.sampled_from(sorted(DUMPS))
"""Seed names, not their bytes: a failing example then prints short."""
randoms = st.randoms(use_true_random=False)


def test_the_seed_corpus_is_real_and_varied() -> None:
    """The mutations start from the CLI's sample dumps, the real dumps users posted and
    rendered tables of every layout; each seed parses cleanly on its own."""
    names = [name for name, _ in SEEDS]
    assert len(sample_dumps()) >= 8 and len(SEEDS) >= 30
    assert any(name.endswith(".save") for name in names) and any("issue" in name for name in names)
    for _, data in SEEDS:
        assert parser_problems(data) == []


@FUZZ
@given(seed=seeds, rng=randoms)
def test_mutated_dumps_never_raise_and_give_wire_ready_records(seed: str, rng: random.Random) -> None:
    data = mutate_dump(rng, DUMPS[seed], corpus=SEEDS, max_huge=20_000)
    assert parser_problems(data) == []


@FUZZ
@given(model=node_models(max_endpoints=3, max_policies=5), rng=randoms)
def test_mutated_rendered_tables_never_raise(model: object, rng: random.Random) -> None:
    data = render(model).text.encode()  # type: ignore[arg-type]
    assert parser_problems(mutate_dump(rng, data, max_huge=5_000)) == []


@FUZZ
@given(seed=seeds, rng=randoms)
def test_steady_state_reads_of_changed_counters_match_a_fresh_parse(seed: str, rng: random.Random) -> None:
    """Only the counters change (the fast path), some of them to absurd numbers."""
    assert (
        steady_problems(
            DUMPS[seed], mutate_counters(rng, DUMPS[seed], interesting=rng.choice((0.0, 0.05, 0.5)))
        )
        == []
    )


@settings(FUZZ, max_examples=100)
@given(seed=seeds, rng=randoms)
def test_steady_state_reads_of_a_damaged_dump_match_a_fresh_parse(seed: str, rng: random.Random) -> None:
    assert steady_problems(DUMPS[seed], mutate_dump(rng, DUMPS[seed], corpus=SEEDS)) == []


@settings(FUZZ, max_examples=60)
@given(seed=seeds, rng=randoms)
def test_parse_memory_is_proportional_to_the_input(seed: str, rng: random.Random) -> None:
    """A parse's peak allocation stays under 32 bytes per input byte (plus a constant):
    measured at 6-13 on these inputs, huge lines included.  Without such a bound, a
    damaged dump could take the agent past its memory limit."""
    data = huge_line(rng, mutate_dump(rng, DUMPS[seed], corpus=SEEDS), max_huge=400_000)
    for columnar in (True, False):
        peak = peak_traced(lambda: parse_node([("fuzz", data)], columnar=columnar))  # noqa: B023
        assert peak <= 32 * len(data) + 64 * 1024, (peak, len(data), columnar)
