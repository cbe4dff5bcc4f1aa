"""A checkpoint's JSON text, written a few thousand rows per call so that other threads run.

``json.dumps`` is C code that holds the GIL until it is done: for a million series that is
0.6-1.0 s in which no other thread runs -- not the event loop, its health checks and
keep-alives, nor the ingest of any node (``bench/checkpoint_bench.py``'s "ingest wait").
Written in slices of :data:`ROWS_PER_CALL` rows, each call holds the GIL a few milliseconds
and the others get their turn between calls.  The text is exactly what one ``json.dumps``
of the whole document with the same separators gives (``tests/test_checkpoint_json.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ROWS_PER_CALL", "array_text", "object_text"]

ROWS_PER_CALL = 5_000
"""Rows per ``json.dumps`` call (~3-5 ms of the GIL each)."""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def array_text(rows: Sequence[Any]) -> str:
    """``rows`` as a JSON array, dumped :data:`ROWS_PER_CALL` at a time."""
    slices = (
        _compact(rows[start : start + ROWS_PER_CALL])[1:-1] for start in range(0, len(rows), ROWS_PER_CALL)
    )
    return "[" + ",".join(slices) + "]"


def object_text(fields: Mapping[str, Any], *, large: Mapping[str, Sequence[Any]]) -> str:
    """A JSON object of ``fields`` followed by the ``large`` arrays (in that order, each
    written by :func:`array_text`)."""
    parts = [_compact(fields)[:-1]] if fields else ["{"]
    for name, rows in large.items():
        parts.append(("," if len(parts) > 1 or fields else "") + _compact(name) + ":" + array_text(rows))
    parts.append("}")
    return "".join(parts)
