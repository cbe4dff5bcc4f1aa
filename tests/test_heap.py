"""Long-lived state kept out of the cyclic collector's way, and still collectable."""

from __future__ import annotations

import gc
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator

import pytest

from calico_accountant.runtime.heap import (
    collect_everything,
    collect_unfrozen,
    collector_paused,
    freeze_long_lived,
    freeze_when_grown,
    unfrozen_objects,
)
from calico_accountant.runtime.http import HttpServer, Response


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


def test_the_collector_is_paused_while_any_user_is_inside_and_then_as_it_was() -> None:
    assert gc.isenabled()
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with collector_paused():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other_thread)
    with collector_paused():
        assert not gc.isenabled()
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other user is still inside
    release.set()
    thread.join(10)
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # off before: stays off
    finally:
        gc.enable()


@pytest.mark.parametrize("fails", [False, True])
def test_a_body_made_with_the_collector_paused_leaves_it_on_after_the_response(fails: bool) -> None:
    """The aggregator's scrape renders its body inside :func:`collector_paused`; the HTTP
    server consumes and closes the body, whether the route succeeds or fails midway."""

    def body() -> Iterator[bytes]:
        with collector_paused():
            yield b"part one\n"
            assert not gc.isenabled()
            if fails:
                raise RuntimeError("the render failed")
            yield b"part two\n"

    server = HttpServer("127.0.0.1", 0, {"/metrics": lambda: Response(200, "text/plain", body())})
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        if fails:
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(url, timeout=10)
            assert error.value.code == 500
        else:
            assert urllib.request.urlopen(url, timeout=10).read() == b"part one\npart two\n"
    finally:
        server.close()
    assert gc.isenabled()
