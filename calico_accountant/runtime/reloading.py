"""A value built from files and rebuilt when they change: certificates, key sets.

Kubernetes rotates what it mounts (a Secret's certificate, a ConfigMap's key set) by
swapping a symlink under the mount; a daemon that read such files once at start serves a
stale certificate, or refuses tokens signed with a new key, until it is restarted.  A
:class:`FileBacked` value is rebuilt when the stat signature (device, inode, size,
modification time; symlinks followed) of any of its files changes.  The check runs at
most once per ``check_interval`` seconds, so a caller on a hot path costs a few ``stat``
calls a second at most, and a rotation is picked up within that interval.

A rebuild that fails (a half-written file, a key that does not match its certificate)
keeps the last good value and is logged once per change of the files: a bad rotation
must not take down a serving daemon.  Only the first build raises, so a daemon whose
files are wrong from the start refuses to start, with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["FileBacked"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_Signature = tuple[tuple[int, int, int, int] | None, ...]


def _signature(paths: Sequence[Path]) -> _Signature:
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)  # missing for now (mid-rotation): a change like any other
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class FileBacked(Generic[T]):
    """``build()`` of ``paths``, rebuilt on a change; safe to use from any thread.

    ``what`` names the value in log lines ("TLS certificate for /metrics").  The first
    build happens in the constructor and its exception propagates.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        build: Callable[[], T],
        *,
        what: str,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._paths = tuple(paths)
        self._build = build
        self._what = what
        self._interval = check_interval
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._seen = _signature(self._paths)
        self._value = build()
        self._checked = clock()
        self.builds = 1
        """How many times the value was (re)built successfully."""

    def get(self) -> T:
        """The current value, rebuilt first when a file changed since the last check."""
        now = self._clock()
        if now - self._checked < self._interval:
            return self._value
        with self._lock:
            if now - self._checked < self._interval:
                return self._value
            self._checked = now
            signature = _signature(self._paths)
            if signature == self._seen:
                return self._value
            self._seen = signature  # a bad new version is reported once, not at every check
            try:
                self._value = self._build()
            except Exception as error:
                self._log.error("%s: changed but cannot be loaded, keeping the old: %s", self._what, error)
                return self._value
            self.builds += 1
            self._log.info("%s: reloaded after its files changed", self._what)
            return self._value
