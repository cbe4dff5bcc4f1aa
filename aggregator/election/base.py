"""What a leader election offers the aggregator, whatever keeps the lease.

The aggregator only needs four things: wait until this replica leads
(:meth:`Election.campaign`), learn at once when it stops leading
(:meth:`Election.lost`), hand leadership over on a clean stop (:meth:`Election.resign`)
so a standby takes over without waiting for the lease to expire, and say who leads (logs,
``/readyz``).  Backends live beside this module, one each.

A leader that loses its lease exits (:data:`EXIT_LEADERSHIP_LOST`) rather than go back to
standby in the same process: its in-memory totals are no longer the ones that count (the
new leader continues from the checkpoint), and a fresh process that restores the newest
checkpoint when it next wins is simpler to reason about than a reset in place.  Kubernetes
restarts the container, which then stands by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["EXIT_LEADERSHIP_LOST", "Election", "Tenure", "replica_identity"]

log = logging.getLogger(__name__)

EXIT_LEADERSHIP_LOST = 3
"""The aggregator's exit status when it stopped serving because it lost its lease."""


class Election(Protocol):
    identity: str
    """This replica, as written in the leader record (the pod name in Kubernetes)."""

    def describe(self) -> str:
        """Where the lease is kept, for logs."""

    @property
    def holder(self) -> str:
        """The leader this replica last saw ("" when none was seen yet)."""

    async def campaign(self) -> None:
        """Return once this replica leads; waits as long as another one does."""

    async def lost(self) -> str:
        """Return (with the reason) once a leadership won by :meth:`campaign` is lost:
        the lease could not be renewed within its TTL, was revoked, or the record was
        taken or deleted.  The caller must stop serving at once."""

    async def resign(self) -> None:
        """Give up leadership (the record goes at once, so a standby takes over without
        waiting for the TTL) and release connections; also fine when not leading."""


def replica_identity() -> str:
    """``$POD_NAME`` (the Deployment sets it from the downward API), else ``hostname-pid``."""
    return os.environ.get("POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}"


class Tenure:
    """One won leadership, whatever the backend: the task that keeps it (``keep`` returns
    why it was lost) and the future that loss resolves.  A bug in ``keep`` ends the
    leadership (logged), never silently keeps it."""

    def __init__(
        self, what: str, keep: Callable[[], Awaitable[str]], on_loss: Callable[[], None] | None = None
    ) -> None:
        self._what = what
        self._on_loss = on_loss
        self._lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._hold(keep), name="leader-lease")

    async def lost(self) -> str:
        return await asyncio.shield(self._lost)

    async def _hold(self, keep: Callable[[], Awaitable[str]]) -> None:
        try:
            reason = await keep()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("leader election %s: keeping the lease failed unexpectedly", self._what)
            reason = f"keeping the lease failed: {error}"
        if self._on_loss is not None:
            self._on_loss()
        if not self._lost.done():
            self._lost.set_result(reason)

    async def end(self) -> None:
        """Stop keeping the lease (resigning): the task is cancelled and awaited."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
