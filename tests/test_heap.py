"""Long-lived state kept out of the cyclic collector's way, and still collectable."""

from __future__ import annotations

import gc
import weakref

from calico_accountant.runtime.heap import (
    collect_everything,
    collect_unfrozen,
    freeze_long_lived,
    freeze_when_grown,
    unfrozen_objects,
)


class _Cell:
    partner: _Cell | None = None


def test_frozen_objects_are_skipped_by_collections_until_everything_is_collected() -> None:
    first, second = _Cell(), _Cell()
    first.partner, second.partner = second, first  # a reference cycle: only the collector frees it
    alive = weakref.ref(first)
    try:
        freeze_long_lived()
        assert gc.get_freeze_count() > 0
        del first, second
        gc.collect()
        assert alive() is not None  # frozen: a full collection does not even look at it
        collect_everything()
        assert alive() is None
        assert gc.get_freeze_count() > 0  # the survivors are frozen again
    finally:
        gc.unfreeze()


def test_frozen_objects_without_cycles_are_freed_at_once() -> None:
    cell = _Cell()
    alive = weakref.ref(cell)
    try:
        freeze_long_lived()
        del cell
        assert alive() is None  # reference counting frees it: freezing leaks nothing acyclic
    finally:
        gc.unfreeze()


def test_freezing_waits_for_growth_and_housekeeping_collects_only_the_unfrozen() -> None:
    """Housekeeping's collection frees the cycles made since the last freeze without
    scanning the frozen state; freezing happens only once enough is unfrozen."""
    try:
        freeze_long_lived()
        assert unfrozen_objects() < 1000
        assert not freeze_when_grown(threshold=10_000)
        frozen = gc.get_freeze_count()
        first, second = _Cell(), _Cell()
        first.partner, second.partner = second, first
        alive = weakref.ref(first)
        del first, second
        collect_unfrozen()
        assert alive() is None  # made after the freeze: collected
        assert gc.get_freeze_count() == frozen  # the frozen state was left alone
        kept = [[index] for index in range(20_000)]  # lists are tracked: 20k new objects
        assert freeze_when_grown(threshold=10_000)
        assert gc.get_freeze_count() >= frozen + len(kept)
    finally:
        gc.unfreeze()
