"""Shared copies of equal route parts: one copy while held, forgotten when no one holds it."""

from __future__ import annotations

from aggregator.series.interning import Interned


def test_equal_values_share_one_copy_until_the_last_holder_releases_it() -> None:
    table: Interned[tuple[str, ...]] = Interned()
    first = ("ns", "app", "ingress")
    assert table.held(first) is None and len(table) == 0  # nothing taken
    assert table.acquire(first) is first
    equal = tuple(["ns", "app", "ingress"])
    assert equal is not first
    assert table.acquire(equal) is first
    assert table.held(equal) is first  # a third holder
    assert not table.release(equal) and not table.release(first)
    assert len(table) == 1
    assert table.release(first)  # the last one: forgotten
    assert len(table) == 0 and table.held(first) is None
    assert not table.release(first)  # releasing what is not held changes nothing
