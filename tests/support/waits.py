"""Polling until something a test started has happened: never a fixed sleep.

``wait_until`` polls from plain code, ``async_wait_until`` from a coroutine (it sleeps with
``asyncio.sleep``, so the event loop keeps serving what the test is waiting for).  Both
return the predicate's first truthy value; an exception while polling counts as "not yet"
(a server not up yet); on timeout they raise AssertionError with the last value and error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")


class _Poll(Generic[_T]):
    def __init__(
        self, predicate: Callable[[], _T | None], timeout: float, what: str | Callable[[], str]
    ) -> None:
        self.predicate = predicate
        self.deadline = time.monotonic() + timeout
        self.what = what
        self.last: _T | None = None
        self.error: Exception | None = None

    def pending(self) -> bool:
        return time.monotonic() < self.deadline

    def attempt(self) -> _T | None:
        """The predicate's value when it is truthy, else None."""
        try:
            self.last = self.predicate()
            self.error = None
        except Exception as exc:
            self.error = exc
        return self.last or None

    def failure(self) -> AssertionError:
        what = self.what() if callable(self.what) else self.what
        return AssertionError(
            f"timed out waiting for {what or self.predicate}: last={self.last!r} error={self.error!r}"
        )


def wait_until(
    predicate: Callable[[], _T | None], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> _T:
    """Poll until ``predicate`` returns something truthy; its value, or AssertionError."""
    poll = _Poll(predicate, timeout, what)
    while poll.pending():
        value = poll.attempt()
        if value is not None:
            return value
        time.sleep(interval)
    raise poll.failure()


async def async_wait_until(
    predicate: Callable[[], _T | None],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> _T:
    """As :func:`wait_until`, sleeping with ``asyncio.sleep``; ``what`` may be computed late."""
    poll = _Poll(predicate, timeout, what)
    while poll.pending():
        value = poll.attempt()
        if value is not None:
            return value
        await asyncio.sleep(interval)
    raise poll.failure()
