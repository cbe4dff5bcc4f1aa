"""Keeping long-lived state out of the cyclic garbage collector's way.

A full (generation 2) collection scans every tracked object, holding the GIL.  An
aggregator's state is millions of small objects that live as long as their counters and
are freed by reference counting, never by the collector; yet while that state grows (every
agent's first full snapshot after a start) Python runs a full collection each time the old
generation grew by a quarter, each scanning the whole heap again and finding nothing.
Measured on 40 simulated nodes of 4,620 counters: 16 full collections, 8.1 s of a 12.4 s
start-up, the longest 1.5 s; first snapshots applied at 15k counters/s (``bench/README.md``).

:func:`freeze_long_lived` moves every object alive now into the permanent generation
(``gc.freeze``: a list splice, constant time), so later collections scan only what was
allocated since.  Called after bulk growth (a full snapshot applied, a checkpoint restored),
it took the same start-up to 1 full collection of 0.01 s and 59k counters/s.  What the
permanent generation holds is still freed by reference counting.

Reference *cycles* that were frozen while alive (an ended gRPC call leaves its last
messages in one) are only freed by :func:`collect_everything`, which scans the frozen
state too: ~2 s per 100 simulated nodes, a pause no event loop may take (acks, health
checks and keepalives all wait).  So the daemon never runs it; instead:

* :func:`freeze_when_grown` freezes only once the collector's own generations hold at
  least ``threshold`` objects: a start-up still freezes every few nodes, while in steady
  state (a node restarting now and then) freezes are rare, so few live calls are ever
  frozen and what their cycles leave behind is bounded by the number of freezes.  Counting
  those objects walks them all (~9 ms at 5,000 nodes), so ingest freezes a storm's full
  snapshots (others waiting their turn) with :func:`freeze_long_lived` at once: each adds
  tens of thousands of objects, so the count would nearly always end in a freeze anyway;
* :func:`collect_unfrozen` (housekeeping's, when streams ended) collects everything *not*
  frozen: the cycles of calls that started after the last freeze, at most ``threshold``
  objects scanned (milliseconds).

Bulk copies that live for a moment are the other way round: :func:`collector_paused` keeps
automatic collections off while they exist.  A checkpoint's capture, encoding and restore
(a million series are tens of millions of tracked objects; a full collection that fell into
the capture, under the accountant's lock, took it from 0.7 to 5.7 s, ``bench/checkpoint_bench.py``)
and a scrape (the state's copy is a few tuples of a million entries each; a young
collection traverses every entry, a cache miss each: 12 ms at 100 simulated nodes and
~140 ms at 2,000, holding the GIL, so the event loop paused at every scrape).  What those
copies hold is acyclic and dies by reference counting when they are dropped, so the
collector has nothing to find there.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = [
    "FREEZE_THRESHOLD",
    "collect_everything",
    "collect_unfrozen",
    "collector_paused",
    "freeze_long_lived",
    "freeze_when_grown",
    "unfrozen_objects",
]

FREEZE_THRESHOLD = 50_000
"""Objects the collector tracks outside the permanent generation before
:func:`freeze_when_grown` freezes them.  The automatic full collections scan what is not
frozen: at 200k, a 500-node start-up (``bench/load_bench.py``) saw them take up to 119 ms,
with worker threads holding the GIL meanwhile; a freeze costs nothing but the bound on the
cycles it may keep (see the module docstring)."""


def freeze_long_lived() -> None:
    """Everything alive now is treated as permanent by automatic collections (O(1))."""
    gc.freeze()


def unfrozen_objects() -> int:
    """Objects the collector tracks outside the permanent generation (what a full
    collection scans); O(that number)."""
    return sum(len(gc.get_objects(generation)) for generation in range(3))


def freeze_when_grown(threshold: int = FREEZE_THRESHOLD) -> bool:
    """:func:`freeze_long_lived` if at least ``threshold`` objects are not frozen yet;
    returns whether it froze."""
    if unfrozen_objects() < threshold:
        return False
    gc.freeze()
    return True


def collect_unfrozen() -> int:
    """A full collection of what is not frozen (bounded by :data:`FREEZE_THRESHOLD` when
    growth is frozen with :func:`freeze_when_grown`); returns the objects collected."""
    return gc.collect()


def collect_everything() -> int:
    """A full collection that includes the frozen objects, after which the survivors are
    frozen again; returns the objects collected.  Scans the whole heap (seconds for a big
    aggregator): for tests and tools, never for a serving daemon."""
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected


_pause_lock = threading.Lock()
_pause_depth = 0
_enabled_before_pause = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic collection off inside (process-wide; nested and concurrent uses are fine:
    it is back on when the last one ends, if it was on before the first)."""
    global _pause_depth, _enabled_before_pause
    with _pause_lock:
        if _pause_depth == 0:
            _enabled_before_pause = gc.isenabled()
            gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _enabled_before_pause:
                gc.enable()
