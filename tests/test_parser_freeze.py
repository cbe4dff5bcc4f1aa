"""The agent's parser moves what a full read leaves into the collector's permanent generation.

A full parse of a big node leaves ~1M long-lived tuples; frozen, the collector's next young
pass and its full passes skip them (``SteadyStateParser(freeze_growth=True)``, the agent's
parser).  A steady-state read, which leaves few, freezes nothing; a one-shot parse never does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from node_agent.parsing import SteadyStateParser, parse_node
from node_agent.reader import _default_parser
from tests.support.felix_render import render_restore, sized_model


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing frozen before the test, and nothing left frozen after it."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_a_full_read_is_frozen_and_a_steady_one_is_not(unfrozen: None) -> None:
    # 500 pods x 40 policies: ~64k records, well past FREEZE_AFTER_RECORDS (a 250 x 20 node's
    # 17k records are past it too; a 110-pod node's 4.3k are not).
    model = sized_model(500, 40, seed=1)
    first = render_restore(model).text
    later = render_restore(model.with_options(flow_seed=7)).text
    parser = _default_parser()
    assert isinstance(parser, SteadyStateParser)
    result = parser.parse([("ipv4", first)])
    frozen = gc.get_freeze_count()
    assert frozen > 2 * len(result.records)  # records, their keys and plans
    steady = parser.parse([("ipv4", later)])
    assert parser.fast_path_reads == 1
    assert gc.get_freeze_count() <= frozen  # frozen objects may be freed, none added
    assert steady.records == parse_node([("ipv4", later)]).records


def test_a_one_shot_parse_freezes_nothing(unfrozen: None) -> None:
    result = parse_node([("ipv4", render_restore(sized_model(500, 40, seed=1)).text)])
    assert result.records
    assert gc.get_freeze_count() == 0
