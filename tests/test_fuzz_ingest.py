"""Fuzzing the ingest service over real loopback gRPC (CI-sized; ``bench/fuzz.py --target
ingest`` runs the same streams by the ten thousand).

An aggregator faces every agent of a cluster, and anything that can reach its port.
Whatever a stream carries (random bytes, mutated snapshots, absurd values, messages at or
past the size caps, damaged chunk sequences, valid snapshots out of order), the stream
must end with acknowledgements or a status that says what was wrong (INVALID_ARGUMENT,
RESOURCE_EXHAUSTED, ...), never UNKNOWN or INTERNAL; nothing may be logged with a
traceback; the aggregator's state must stay within its caps; and afterwards a genuine
agent's snapshots for a fresh node must still be applied and counted exactly.

The messages are sent as raw bytes (a channel method without serializers), so that
what reaches the server is exactly what the mutators made.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fuzzing import IngestHarness
from tests.support.mutations import STREAM_KINDS, ingest_stream, random_message

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
randoms = st.randoms(use_true_random=False)


@pytest.fixture(scope="module")
def harness() -> Iterator[IngestHarness]:
    harness = IngestHarness()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(autouse=True)
def _errors_of_this_test_only(harness: IngestHarness) -> None:
    """One aggregator serves the module; each test answers for its own log records."""
    harness.errors.records.clear()


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
    ]


def _assert_alive_and_clean(harness: IngestHarness, caplog: pytest.LogCaptureFixture) -> None:
    assert _tracebacks(caplog) == []
    assert harness.errors.summary() == []
    assert harness.state_problems() == []
    assert harness.genuine_problems() == []


def test_a_genuine_agent_is_counted_exactly(harness: IngestHarness, caplog: pytest.LogCaptureFixture) -> None:
    """The oracle itself, before any fuzzing."""
    _assert_alive_and_clean(harness, caplog)


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_streams_get_acks_or_a_clear_status(
    harness: IngestHarness, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING)

    @settings(FUZZ, max_examples=8 if kind in ("huge", "pending") else FUZZ.max_examples)
    @given(rng=randoms)
    def stream(rng: random.Random) -> None:
        messages = ingest_stream(rng, kind, max_huge=6 << 20, pending_bytes=harness.PENDING_BYTES)
        outcome = harness.stream(messages)
        assert outcome.problems == []
        assert _tracebacks(caplog) == []

    stream()
    _assert_alive_and_clean(harness, caplog)


@settings(FUZZ, max_examples=60)
@given(data=st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_arbitrary_bytes_as_messages(harness: IngestHarness, data: list[bytes]) -> None:
    assert harness.stream(data).problems == []
    assert harness.errors.summary() == []


def test_many_streams_in_a_row_leave_nothing_open(harness: IngestHarness) -> None:
    """Each stream's admission (16 per peer at most) is given back, or the 17th would fail."""
    rng = random.Random(7)
    for _ in range(200):
        assert harness.stream([random_message(rng)]).code.name != "RESOURCE_EXHAUSTED"
    assert harness.state_problems() == []
