"""Bulk work without the cyclic garbage collector: a checkpoint's capture, encoding, restore.

A million series are tens of millions of objects the collector tracks.  Copying them
allocates millions more, and allocations trigger collections; the full ones scan the whole
heap (seconds at that size) while holding the GIL.  One that falls into the capture runs
under the accountant's lock, and ingest waits for it: at 1.1 million series the capture took
0.7 s, and 5.7 s when a full collection fell into it (``bench/checkpoint_bench.py``).

What a checkpoint copies is acyclic and dies by reference counting once the bytes are
encoded, so the collector has nothing to find there: it is paused while those copies live,
and they never reach the old generation (whose growth is what triggers full collections).
A restore builds the state in one go: paused too, it is scanned once afterwards instead of
again and again while it grows.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused"]

_lock = threading.Lock()
_depth = 0
_enabled_before = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic collection off inside (process-wide; nested and concurrent uses are fine:
    it is back on when the last one ends, if it was on before the first)."""
    global _depth, _enabled_before
    with _lock:
        if _depth == 0:
            _enabled_before = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _enabled_before:
                gc.enable()
