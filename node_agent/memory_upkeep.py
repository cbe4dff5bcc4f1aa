"""When the agent process hands memory back to the system.

The means are :mod:`calico_accountant.runtime.memory` (which says why each helps); this is
the agent's schedule for them.  Measured on a 110-pod node (``docs/performance.md``): 62 ->
43 MiB resident, no CPU measurable at that size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from calico_accountant.runtime.memory import drop_file_pages, trim, tune_allocator

__all__ = ["MemoryUpkeep"]

log = logging.getLogger("calico_accountant.agent")


@dataclass(slots=True)
class MemoryUpkeep:
    """At start (modules imported, health endpoint serving): glibc's mmap threshold fixed
    and the library pages mapped so far dropped.  After every read: the heap trimmed (the
    read's large temporaries are gone by then).  After the first read (the cold parse and
    the connection have run; before the full snapshot is encoded, which lowered the
    start-up's peak from 55.5 to 51.6 MiB at 110 pods) and after the first read once the
    aggregator acknowledged a snapshot: the library pages dropped again, leaving mapped what
    steady reads run."""

    reads: int = 0
    dropped_after_ack: bool = False

    def started(self) -> None:
        tune_allocator()
        self._drop("start-up")

    def after_read(self, *, acked: bool) -> None:
        trim()
        self.reads += 1
        if self.reads == 1:
            self._drop("first read")
        if acked and not self.dropped_after_ack:
            self.dropped_after_ack = True
            self._drop("first acknowledged snapshot")

    @staticmethod
    def _drop(after: str) -> None:
        advised = drop_file_pages()
        log.debug("after the %s: %.1f MiB of library mappings dropped", after, advised / 2**20)
