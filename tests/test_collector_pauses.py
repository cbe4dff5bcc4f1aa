"""The garbage collector's pauses, timed one collection at a time."""

from __future__ import annotations

import gc
import logging

import pytest
from prometheus_client import CollectorRegistry

from calico_accountant.runtime.collector_pauses import CollectorPauses


def _count(registry: CollectorRegistry, generation: int) -> float:
    value = registry.get_sample_value(
        "calico_accountant_gc_pause_seconds_count", {"generation": str(generation)}
    )
    assert value is not None
    return value


def test_a_full_collection_of_a_big_unfrozen_heap_is_timed_as_its_pause() -> None:
    registry = CollectorRegistry()
    pauses = CollectorPauses(registry)
    # 400k linked containers, not frozen: a full collection must traverse every one
    heap = [[index] for index in range(400_000)]
    enabled = gc.isenabled()
    gc.disable()  # only the collections asked for below
    pauses.install()
    try:
        before = _count(registry, 2)
        gc.collect(2)
        gc.collect(0)
    finally:
        pauses.remove()
        if enabled:
            gc.enable()
    del heap
    assert _count(registry, 2) == before + 1
    assert _count(registry, 0) >= 1
    longest = registry.get_sample_value("calico_accountant_gc_pause_max_seconds", {"generation": "2"})
    assert longest is not None and longest == pauses.longest[2]
    assert 0.0005 < longest < 10.0  # traversing 400k containers takes milliseconds, not nothing
    total = registry.get_sample_value("calico_accountant_gc_pause_seconds_sum", {"generation": "2"})
    assert total == longest
    # the standard figures are exported beside it
    collections = registry.get_sample_value("python_gc_collections_total", {"generation": "2"})
    assert collections is not None and collections >= 1


def test_nothing_is_timed_once_removed() -> None:
    registry = CollectorRegistry()
    pauses = CollectorPauses(registry)
    enabled = gc.isenabled()
    gc.disable()  # only the collections asked for below
    try:
        pauses.install()
        pauses.install()  # idempotent: one callback, one observation a collection
        gc.collect(1)
        assert _count(registry, 1) == 1
        pauses.remove()
        pauses.remove()
        gc.collect(1)
        assert _count(registry, 1) == 1
    finally:
        pauses.remove()
        if enabled:
            gc.enable()
    assert pauses.longest[1] > 0.0


def test_a_long_collection_is_logged_at_most_once_an_interval(caplog: pytest.LogCaptureFixture) -> None:
    pauses = CollectorPauses(CollectorRegistry())
    with caplog.at_level(logging.WARNING, logger="calico_accountant.runtime.collector_pauses"):
        pauses.record(2, 0.05)  # under 100 ms: counted, not logged
        pauses.record(2, 0.4, collected=12)
        pauses.record(1, 0.2)  # within the interval: only counted in the next line
    assert len(caplog.records) == 1
    assert "generation 2" in caplog.text and "400 ms" in caplog.text and "freeing 12" in caplog.text
    assert pauses.longest == [0.0, 0.2, 0.4]
