"""The bugs the fuzzing found, each pinned by its minimal input.

The inputs came from the mutators of :mod:`tests.support.mutations` (run by the
``tests/test_fuzz_*.py`` properties and by ``bench/fuzz.py``; see ``bench/README.md``,
"Fuzzing"); each test's docstring says what went wrong before the fix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from calico_accountant.records import Kind
from node_agent.iptables_save import comments_of
from node_agent.parsing import parse_node

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
