"""Full snapshots take turns: decoded and applied one at a time, first come, first served.

After an aggregator restart every agent connects at once and sends its full snapshot
(thousands of them, each thousands of counters).  Applying them together does not make
any finish sooner -- the accountant applies under one lock -- but it holds every one of
them decoded in memory at once, starves the event loop (health checks, keepalive pings),
and leaves each agent waiting longer than its ack timeout, after which it reconnects and
sends its snapshot again: a storm.  So full snapshots queue here before they are decoded;
deltas (small, and only possible after a full snapshot was applied) do not queue.

While a snapshot waits, the servicer answers its stream with interim acks carrying its
:attr:`Ticket.position` (see ``IngestAck.waiting`` in the proto), so the agent knows it is
heard and keeps waiting.

Deltas of the nodes already applied do not queue, but while full snapshots wait their acks
do (:meth:`SnapshotQueue.quiet`, the servicer's ``delta_hold``): an agent sends its next
snapshot only once the last one is acknowledged, and then sends its newest read, so its
reads of the meantime reach the aggregator as one delta (a counter that moved in ten reads
is sent once, not ten times) instead of adding a message every interval to the storm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["SnapshotQueue", "Ticket"]


class Ticket:
    """One snapshot's place in the queue."""

    __slots__ = ("_queue", "admitted", "number")

    def __init__(self, queue: SnapshotQueue, number: int) -> None:
        self._queue = queue
        self.number = number
        self.admitted = False

    @property
    def position(self) -> int:
        """Snapshots ahead of this one (0 once it is being applied); an estimate when
        snapshots ahead of it left the queue unserved."""
        return 0 if self.admitted else max(0, self.number - self._queue.passed)


class SnapshotQueue:
    """Used from the event loop only."""

    def __init__(self, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError("at least one snapshot must be applied at a time")
        self._slots = asyncio.Semaphore(concurrency)
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._issued = 0
        self.passed = 0
        """Tickets that got their turn or left before it."""
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def turn(self, ticket: Ticket | None = None) -> AsyncIterator[Ticket]:
        """Wait for this snapshot's turn (``ticket``: one taken earlier with :meth:`ticket`)
        and hold it inside."""
        ticket = ticket or self.ticket()
        self.waiting += 1
        self._quiet.clear()
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
            self.passed += 1
            if not self.waiting:
                self._quiet.set()
        ticket.admitted = True
        try:
            yield ticket
        finally:
            self._slots.release()

    def ticket(self) -> Ticket:
        self._issued += 1
        return Ticket(self, self._issued)

    async def quiet(self, timeout: float) -> bool:
        """Wait until no snapshot waits for its turn, at most ``timeout`` seconds; True when
        none waits (at once if none waited)."""
        if self._quiet.is_set():
            return True
        try:
            await asyncio.wait_for(self._quiet.wait(), timeout)
        except TimeoutError:
            return False
        return True
