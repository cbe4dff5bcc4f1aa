"""Polling until something a test started has happened: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def wait_until(
    predicate: Callable[[], _T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> _T:
    """Poll until ``predicate`` returns something truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last: _T | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            error = None
        except Exception as exc:  # a server not up yet
            error = exc
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last={last!r} error={error!r}")
