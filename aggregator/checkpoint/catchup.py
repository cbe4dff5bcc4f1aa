"""Serving ``/metrics`` after a restore only once the restored totals are current again.

A checkpoint can be up to one interval older than the values the process that wrote it
last exported: that process was killed, or it was the leader and died, and a standby took
over.  Exported as they are, the restored series could be *lower* than what Prometheus
last scraped, and Prometheus reads any decrease as a counter reset and adds the whole new
value to ``increase()`` -- a false increase of the full total.

The agents' first full snapshots after the restore bring every counter back to what the
kernel counted (the ledger differences them against the restored raw values), so
``/metrics`` opens once every node that was reporting when the checkpoint was written has
reported again, or after a timeout (a node that never comes back must not keep
``/metrics`` closed for good; its series then show their checkpointed values).  Ingest is
served meanwhile: that is what brings the totals up to date.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CatchUp", "Restored", "wait_for_catch_up"]


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore must wait for: the checkpoint's time and when each node last reported."""

    created: float
    received_at: Mapping[str, float]
    restored_at: float

    def awaited(self, stale_after: float) -> frozenset[str]:
        """The nodes that were reporting when the checkpoint was written (not stale then)."""
        return frozenset(
            node for node, received in self.received_at.items() if self.created - received <= stale_after
        )


@dataclass(frozen=True, slots=True)
class CatchUp:
    waited: float
    """Seconds from the restore until every awaited node had reported (or the timeout)."""
    awaited: int
    missing: tuple[str, ...]
    """Nodes that had not reported when the wait ended (its timeout)."""


class _Reports(Protocol):
    def nodes_reported_since(self, since: float) -> set[str]: ...


async def wait_for_catch_up(
    accountant: _Reports,
    restored: Restored,
    *,
    stale_after: float,
    timeout: float,
    poll: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
) -> CatchUp:
    """Until every node :meth:`Restored.awaited` has had a snapshot applied since the restore."""
    awaited = restored.awaited(stale_after)
    started = clock()
    while True:
        missing = awaited - accountant.nodes_reported_since(restored.restored_at)
        waited = clock() - started
        if not missing or waited >= timeout:
            return CatchUp(waited, len(awaited), tuple(sorted(missing)))
        await asyncio.sleep(min(poll, max(0.0, timeout - waited)))
