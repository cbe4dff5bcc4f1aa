"""The one way a datastore source runs: a single background task in the caller's loop."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundSource:
    """Start/stop for a source whose work is its ``run()`` coroutine.

    Subclasses implement ``run()`` and ``describe()`` (the task's name) and may extend
    ``stop()`` to release what ``run()`` opened.
    """

    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def start(self) -> asyncio.Task[None]:
        """Start ``run()`` in the running loop, once; returns its task."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=self.describe())
        return self._task

    async def stop(self) -> None:
        """Cancel ``run()`` and wait for it to finish."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
