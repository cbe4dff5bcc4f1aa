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
permanent generation holds is still freed by reference counting; only reference *cycles*
in it wait for :func:`collect_everything`, which housekeeping runs when streams ended (an
ended gRPC call leaves its last messages in a cycle).
"""

from __future__ import annotations

import gc

__all__ = ["collect_everything", "freeze_long_lived"]


def freeze_long_lived() -> None:
    """Everything alive now is treated as permanent by automatic collections (O(1))."""
    gc.freeze()


def collect_everything() -> int:
    """A full collection that includes the frozen objects, after which the survivors are
    frozen again; returns the objects collected."""
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected
