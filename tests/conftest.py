"""Shared test setup, deliberately small: helpers live in :mod:`tests.support`.

The ``etcd`` fixture (a fresh, healthy etcd per test) is registered from there.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

pytest_plugins = ("tests.support.etcd_server",)


@pytest.fixture(autouse=True)
def _collector_left_on() -> Iterator[None]:
    """Every test leaves the cyclic garbage collector on.  Code that pauses it (the parser,
    checkpoints, ``parse``) must restore it: one that did not (``main(["parse", ...])``
    in-process) made a later test of the agent's freeze fail far from the cause."""
    yield
    if not gc.isenabled():
        gc.enable()
        pytest.fail("the test left the garbage collector disabled")
