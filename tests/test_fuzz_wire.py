"""Fuzzing the aggregator's decoding of agent messages, without a server (CI-sized).

Whatever bytes arrive, protobuf either refuses them (``DecodeError``, which gRPC raises
before the servicer runs: see ``tests/test_fuzz_ingest.py`` for what the client then
sees) or they become a ``NodeSnapshot`` that ``decode_snapshot`` and
``ChunkAssembler.add`` turn into a snapshot or a :class:`~calico_accountant.wire.WireError`
that says why: nothing else may escape, and nothing invalid may be kept.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.wire.chunks import ChunkAssembler, split_snapshot
from tests.support.fuzzing import wire_problems
from tests.support.mutations import (
    absurd_snapshot,
    chunk_stream,
    huge_snapshot,
    mutate_message,
    random_message,
    valid_snapshot,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
randoms = st.randoms(use_true_random=False)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    assert wire_problems(data, ChunkAssembler())[1] == []


@FUZZ
@given(rng=randoms)
def test_random_protobuf_fields(rng: random.Random) -> None:
    assert wire_problems(random_message(rng), ChunkAssembler())[1] == []


@FUZZ
@given(rng=randoms)
def test_mutated_valid_snapshots(rng: random.Random) -> None:
    data = mutate_message(rng, valid_snapshot(rng).SerializeToString())
    assert wire_problems(data, ChunkAssembler())[1] == []


@FUZZ
@given(rng=randoms)
def test_absurd_values(rng: random.Random) -> None:
    assert wire_problems(absurd_snapshot(rng).SerializeToString(), ChunkAssembler())[1] == []


@settings(FUZZ, max_examples=15)
@given(rng=randoms)
def test_huge_repeated_fields_and_strings(rng: random.Random) -> None:
    assert wire_problems(huge_snapshot(rng, max_bytes=1 << 20).SerializeToString(), ChunkAssembler())[1] == []


@FUZZ
@given(rng=randoms, mutate=st.booleans())
def test_damaged_chunk_streams_through_one_assembler(rng: random.Random, mutate: bool) -> None:
    """One assembler, as one stream has: chunks reordered, dropped, repeated, renumbered,
    interleaved with another snapshot's or mutated; an error drops the partial snapshot and
    the next one starts clean."""
    assembler = ChunkAssembler()
    outcomes = []
    for chunk in chunk_stream(rng) + chunk_stream(rng, sequence=9):
        data = chunk.SerializeToString()
        if mutate and rng.random() < 0.3:
            data = mutate_message(rng, data)
        outcome, problems = wire_problems(data, assembler)
        assert problems == []
        outcomes.append(outcome)
    assert outcomes


def test_an_undamaged_chunk_stream_reassembles() -> None:
    """The oracle itself: a clean split goes through as pending chunks, then one snapshot."""
    snapshot = valid_snapshot(random.Random(0), counters=40)
    chunks = [c.SerializeToString() for c in split_snapshot(snapshot, 800)]
    assembler = ChunkAssembler()
    outcomes = [wire_problems(data, assembler) for data in chunks]
    assert len(chunks) > 2
    assert outcomes == [("chunk_pending", [])] * (len(chunks) - 1) + [("decoded", [])]
    assert not assembler.pending
