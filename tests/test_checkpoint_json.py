"""The checkpoint's JSON written in slices (:mod:`aggregator.checkpoint.json_text`) is exactly
the text one ``json.dumps`` of the whole document gives, whatever the rows and however many
slices they take."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.checkpoint import json_text
from aggregator.checkpoint.json_text import array_text, object_text

SCALARS = st.one_of(
    st.integers(-(2**70), 2**70), st.text(max_size=8), st.booleans(), st.none(), st.floats(0, 1e6)
)
ROWS = st.lists(st.lists(SCALARS, max_size=4) | SCALARS, max_size=40)
FIELDS = st.dictionaries(st.text(max_size=6), SCALARS, max_size=4)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(rows=ROWS, per_call=st.integers(1, 7))
def test_an_array_is_the_whole_dump(rows: list[Any], per_call: int) -> None:
    saved = json_text.ROWS_PER_CALL
    json_text.ROWS_PER_CALL = per_call  # many slices, some of one row, the last one short
    try:
        assert array_text(rows) == _dumps(rows)
    finally:
        json_text.ROWS_PER_CALL = saved


@settings(max_examples=300, deadline=None)
@given(fields=FIELDS, first=ROWS, second=ROWS)
def test_an_object_is_the_whole_dump(fields: dict[str, Any], first: list[Any], second: list[Any]) -> None:
    large = {"big one": first, "zz": second}
    large = {name: rows for name, rows in large.items() if name not in fields}
    assert object_text(fields, large=large) == _dumps({**fields, **large})
    assert json.loads(object_text(fields, large=large)) == json.loads(_dumps({**fields, **large}))
