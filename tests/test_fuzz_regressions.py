"""The bugs the fuzzing found, each pinned by its minimal input.

The inputs came from the mutators of :mod:`tests.support.mutations` (run by the
``tests/test_fuzz_*.py`` properties and by ``bench/fuzz.py``; see ``bench/README.md``,
"Fuzzing"); each test's docstring says what went wrong before the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from aggregator.ingest.servicer import PARSE_INLINE_BELOW
from aggregator.ledger.admission import RefusalProblem
from aggregator.ledger.ledger import Ledger
from calico_accountant.records import Kind
from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import WireError
from calico_accountant.wire.snapshots import build_snapshot, decode_snapshot
from node_agent.iptables_save import comments_of
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.accounting import snapshot
from tests.support.fuzzing import IngestHarness

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def _codes(dump: str, columnar: bool = True) -> dict[str, int]:
    return parse_node([("node", dump)], columnar=columnar).diagnostic_counts()


# --- parser ------------------------------------------------------------------------------


@pytest.mark.timeout(5)
def test_a_comment_flag_right_before_the_target_does_not_loop() -> None:
    """``--comment`` with no value before ``-j``: ``comments_of`` searched again from the
    start of the rule, forever, appending to its result (the agent's memory grew until the
    kernel killed it).  Planning asks for the comments of every drop rule naming "if no"
    and of the first rules of every policy chain."""
    assert comments_of("-A cali-tw-cali1 -m comment --comment -j DROP") == [""]
    assert comments_of('-A c -m comment --comment "a b" -m comment --comment') == ["a b", ""]
    dump = (
        "*filter\n:cali-tw-cali1 - [0:0]\n"
        '[5:300] -A cali-tw-cali1 -m comment --comment "Drop if no policies passed packet"'
        " -m comment --comment -j DROP\nCOMMIT\n"
    )
    for columnar in (True, False):
        result = parse_node([("node", dump)], columnar=columnar)
        assert [(r.key.kind, r.key.interface, r.packets) for r in result.records] == [
            (Kind.NO_POLICY_DROP, "cali1", 5)
        ]


_TABLE = (
    "*filter\n:cali-tw-cali1 - [0:0]\n:cali-pi-_p - [0:0]\n"
    '[1:60] -A cali-tw-cali1 -m comment --comment "cali:AAAAAAAAAAAAAAAA" -j cali-pi-_p\n'
    '[{counter}] -A cali-tw-cali1 -m comment --comment "cali:BBBBBBBBBBBBBBBB" -m comment'
    ' --comment "Drop if no policies passed packet" -j DROP\n'
    "COMMIT\n"
)


@pytest.mark.parametrize(
    "counter", ["9" * 5000 + ":1", "1:" + "9" * 5000, "1_000:5", "\u0663:5", "5 :5", "5:\u00b2", "+5:5"]
)
def test_counters_that_are_not_plain_ascii_digits_are_bad_counters(counter: str) -> None:
    """Over 4300 digits ``int()`` raises (the columnar path and the steady-state fast path
    let it escape); ``1_000``, ``٣`` and a trailing space it silently accepts."""
    dump = _TABLE.format(counter=counter)
    for columnar in (True, False):
        assert _codes(dump, columnar) == {"bad_counter": 1}
    good = _TABLE.format(counter="7:420")
    steady = SteadyStateParser()
    for text in (good, dump, good, dump):
        assert steady.parse([("node", text)]).diagnostic_counts() == _codes(text)


@pytest.mark.parametrize("counters", ["\u00b2 5", "5 " + "9" * 5000, "1_0 5"])
def test_inline_counters_that_are_not_ascii_digits_are_bad_counters(counters: str) -> None:
    """``str.isdigit`` accepts ``²``, which ``int()`` then refused: a ``ValueError`` out of
    ``parse_node`` for ``iptables -S -v`` style input."""
    dump = (
        "-P INPUT ACCEPT\n-N cali-tw-cali1\n"
        f'-A cali-tw-cali1 -m comment --comment "Drop if no policies passed packet" -c {counters} -j DROP\n'
    )
    assert parse_node([("node", dump)], family=4).diagnostic_counts() == {"bad_counter": 1}


def test_a_bare_endpoint_chain_prefix_gives_no_records() -> None:
    """``cali-fw-`` alone (a damaged name) named no interface: its drop record had an empty
    one, which the aggregator refuses as invalid at every snapshot."""
    dump = (
        "*filter\n:cali-fw- - [0:0]\n:cali-fw-cali1 - [0:0]\n"
        '[3:180] -A cali-fw- -m comment --comment "cali:AAAAAAAAAAAAAAAA" -m comment'
        ' --comment "Drop if no policies passed packet" -j DROP\n'
        '[4:240] -A cali-fw-cali1 -m comment --comment "cali:BBBBBBBBBBBBBBBB" -m comment'
        ' --comment "Drop if no policies passed packet" -j DROP\n'
        "COMMIT\n"
    )
    for columnar in (True, False):
        records = parse_node([("node", dump)], columnar=columnar).records
        assert [(r.key.interface, r.packets) for r in records] == [("cali1", 4)]


@pytest.mark.timeout(5)
def test_a_huge_oddly_quoted_line_is_garbled_in_linear_time() -> None:
    """A 1 MiB rule line with an unclosed quote went to ``shlex.split``, whose time grows
    with the square of a token's length: ~10 s per parse, every read.  Found by the long
    fuzz run (``bench/fuzz.py``, parser, seed 1, input 23079)."""
    line = '[1:1] -A cali-pi-_x -m comment --comment "' + "\ufffd" * (1 << 20) + " -j DROP"
    dump = f"*filter\n:cali-pi-_x - [0:0]\n{line}\nCOMMIT\n"
    for columnar in (True, False):
        assert _codes(dump, columnar) == {"garbled_line": 1}


# --- aggregator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness() -> Iterator[IngestHarness]:
    harness = IngestHarness()
    try:
        yield harness
    finally:
        harness.close()


def test_undecodable_bytes_end_the_stream_invalid_argument(
    harness: IngestHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """gRPC deserialized before the servicer ran: the ``DecodeError`` escaped it, the
    client saw UNKNOWN and gRPC logged a traceback for every such message.  The servicer
    parses now, small messages on the loop and large ones in its worker thread: both ways."""
    caplog.set_level(logging.WARNING)
    large = b"\xff" * (PARSE_INLINE_BELOW + 1)
    for data in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x08" * 11, large):
        outcome = harness.stream([data])
        assert outcome.code.name == "INVALID_ARGUMENT", outcome
        assert outcome.details.startswith("a message that is not a NodeSnapshot")
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert harness.genuine_problems() == []


def test_diagnostic_codes_a_node_keeps_are_capped_across_snapshots() -> None:
    """Each snapshot within the cap (64 codes), but new codes every time: the node's totals
    kept them all (12,800 codes after 200 snapshots, one series each in /metrics)."""
    ledger = Ledger()
    first = {f"a{i}": 1 for i in range(40)}
    assert ledger.apply(snapshot("n1", [], diagnostics=first), now=0) == []
    assert ledger.check(snapshot("n1", [], sequence=2, diagnostics=first)) is None
    more = {f"b{i}": 1 for i in range(40)}
    refusal = ledger.check(snapshot("n1", [], sequence=2, diagnostics=more))
    assert refusal is not None and refusal.problem is RefusalProblem.TOO_MANY_DIAGNOSTIC_CODES
    assert "80 distinct diagnostic codes" in refusal.message
    ledger.apply(snapshot("n1", [], sequence=2, diagnostics=more), now=1)
    assert len(ledger.node("n1").diagnostic_totals) == 40  # type: ignore[union-attr]


def _snapshot(**fields: object) -> pb.NodeSnapshot:
    message = build_snapshot(
        node="n1", agent_instance_id="i1", sequence=1, read_time=T0, full=True, records=[]
    )
    for name, value in fields.items():
        if name == "diagnostic_counts":
            message.diagnostic_counts.update(value)  # type: ignore[call-overload]
        else:
            setattr(message, name, value)
    return message


def test_strings_the_aggregator_keeps_per_node_are_bounded() -> None:
    with pytest.raises(WireError, match="diagnostic code longer than 128"):
        decode_snapshot(_snapshot(diagnostic_counts={"x" * 129: 1}))
    with pytest.raises(WireError, match="agent_version longer than 253"):
        decode_snapshot(_snapshot(agent_version="v" * 254))
    assert decode_snapshot(_snapshot(diagnostic_counts={"x" * 128: 1}, agent_version="v" * 253)).node == "n1"


def test_a_policy_rule_counter_with_an_interface_is_invalid() -> None:
    """Policy rule counters are per node: with an interface, two of them for one rule would
    feed the same series."""
    message = _snapshot()
    message.counters.add(
        kind=pb.POLICY_RULE,
        family=4,
        direction=pb.INGRESS,
        interface="cali1",
        chain="cali-pi-_p",
        action="deny",
    )
    message.counters.add(
        kind=pb.POLICY_RULE, family=4, direction=pb.INGRESS, chain="cali-pi-_p", action="deny"
    )
    decoded = decode_snapshot(message)
    assert [r.key.interface for r in decoded.records] == [""]
    assert list(decoded.invalid_reasons) == [
        "policy_rule with an interface (its counters are per node, not per workload)"
    ]
