"""One aggregator replica's role and life: stand by, serve, stop -- or stop serving at once.

* :class:`Role`: the health port and the readiness it answers, the leader election (when
  configured: :mod:`aggregator.election`), and what ends serving at once
  (:meth:`Role.ended`): a lost lease, or a port that could not be opened after the start;
* :func:`run_replica`: the process around a :class:`Replica` (the aggregator).  Its start
  stands by for as long as another replica leads, and SIGTERM ends it at any point (a
  standby has nothing to hand over).  A leader that loses its lease stops serving at once
  -- no grace period, no last checkpoint: another replica may be serving already -- and
  the process exits with :data:`~aggregator.election.base.EXIT_LEADERSHIP_LOST`, so that
  Kubernetes restarts it and it stands by again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, NamedTuple, Protocol

from prometheus_client import CollectorRegistry

from aggregator.checkpoint.stores import CheckpointStore
from aggregator.election.base import EXIT_LEADERSHIP_LOST, Election
from aggregator.election.open import fence_checkpoints
from aggregator.readiness import Phase, Readiness, serve_health
from calico_accountant.runtime.http import HttpServer

__all__ = ["Ending", "Replica", "Role", "run_replica"]

log = logging.getLogger("calico_accountant.aggregator")


class Ending(NamedTuple):
    """Why a replica must stop serving at once, and the process's exit status."""

    status: int
    reason: str


class Role:
    """The health port, the readiness it answers, and the election (None: one replica)."""

    def __init__(
        self, election: Election | None, *, host: str, port: int, registry: CollectorRegistry | None = None
    ) -> None:
        self.election = election
        self.readiness = Readiness(registry)
        self.host, self.port = host, port
        self.health: HttpServer | None = None
        self._failed: asyncio.Future[Ending] | None = None

    async def stand_by(self, checkpoints: CheckpointStore | None) -> None:
        """Serve the health port; with an election, return once this replica leads (its
        checkpoints then only take effect while it does)."""
        self._failed = asyncio.get_running_loop().create_future()
        self.health = serve_health(self.readiness, self.host, self.port)
        if self.election is None:
            return
        self.readiness.set(
            Phase.STANDBY, f"{self.election.identity}; leader election on {self.election.describe()}"
        )
        await self.election.campaign()
        fence_checkpoints(self.election, checkpoints)
        self.readiness.set(Phase.STARTING, f"{self.election.identity} leads")

    def serving(self) -> None:
        self.readiness.set(Phase.SERVING, self.election.identity if self.election else "")

    def fail(self, status: int, reason: str) -> None:
        """Serving must end at once (e.g. a port that cannot be opened after the start)."""
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(Ending(status, reason))

    async def ended(self) -> Ending:
        """Returns once serving must end at once: the lease is lost, or :meth:`fail`."""
        assert self._failed is not None, "ended() before stand_by()"
        if self.election is None:
            return await asyncio.shield(self._failed)
        lost = asyncio.ensure_future(self.election.lost())
        try:
            waiting: set[asyncio.Future[Any]] = {lost, self._failed}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not lost.done():
                lost.cancel()
        if lost.done() and not lost.cancelled():
            return Ending(EXIT_LEADERSHIP_LOST, f"lost the leadership: {lost.result()}")
        return self._failed.result()

    async def close(self) -> None:
        """Hand the lease over (after the last checkpoint), then close the health port."""
        if self.election is not None:
            await self.election.resign()
        if self.health is not None:
            self.health.close()
            self.health = None


class Replica(Protocol):
    async def start(self) -> None: ...
    async def ended(self) -> Ending: ...
    async def abandon(self, why: str) -> None: ...
    async def stop(self) -> None: ...


async def run_replica(replica: Replica, stop: asyncio.Event) -> int:
    """Run ``replica`` until ``stop`` is set or its serving ends at once; the exit status."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        if not await _first(replica.start(), stopping):
            log.info("stopping (standby)")
            return 0
        ending = asyncio.ensure_future(replica.ended())
        if await _first(ending, stopping):
            status, reason = ending.result()
            log.error("%s: stopped serving at once; exiting with status %d", reason, status)
            await replica.abandon(reason)
            return status
        log.info("stopping")
        return 0
    finally:
        stopping.cancel()
        await replica.stop()


async def _first(work: Awaitable[Any], stopping: asyncio.Future[Any]) -> bool:
    """Await ``work`` unless ``stopping`` completes first (then ``work`` is cancelled):
    True when ``work`` finished (its exception raised here)."""
    task = asyncio.ensure_future(work)
    waiting: set[asyncio.Future[Any]] = {task, stopping}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
