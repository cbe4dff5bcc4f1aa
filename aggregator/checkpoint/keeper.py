"""Writing a checkpoint every interval and at shutdown, and restoring one at start.

What a checkpoint holds is enough to continue exactly: every counter's last raw value
and total, every series' value (and tombstone), every node's agent instance and sequence.
Restored before the first snapshot is accepted, it makes an agent's next full snapshot
add exactly what the kernel counted since the checkpoint.  What a crash can lose: the
increments of a counter that was reset between the last checkpoint and the crash (the
restored raw value is then above the kernel's, so the reset is seen and only the raw
value after it is counted).

The capture is one copy under the accountant's lock (ingest waits for it); encoding and
writing happen outside it.  A checkpoint that cannot be read (corrupt, or of another
format version) is refused with a log line and a counted outcome, and the aggregator
counts from zero instead: a checkpoint is restored whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.accountant import Accountant
from aggregator.checkpoint.catchup import CatchUp, Restored
from aggregator.checkpoint.codec import Checkpoint, CheckpointError, decode, encode
from aggregator.checkpoint.stores import CheckpointStore
from calico_accountant import __version__
from calico_accountant.runtime.heap import collector_paused, freeze_long_lived

__all__ = ["CheckpointKeeper", "CheckpointMetrics", "RestoreOutcome"]

log = logging.getLogger(__name__)


class RestoreOutcome(enum.StrEnum):
    RESTORED = "restored"
    NONE = "none"
    """No checkpoint was saved yet: counting starts from the first snapshots."""
    CORRUPT = "corrupt"
    FOREIGN = "foreign"
    UNREADABLE = "unreadable"
    """The store could not be read (an outage); counting starts from the first snapshots."""


class CheckpointMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_success = Gauge(
            "calico_accountant_checkpoint_last_success_timestamp_seconds",
            "When the last checkpoint was written (Unix time; 0: never).",
            registry=registry,
        )
        self.size = Gauge(
            "calico_accountant_checkpoint_bytes", "Size of the last checkpoint written.", registry=registry
        )
        self.duration = Gauge(
            "calico_accountant_checkpoint_write_seconds",
            "How long the last checkpoint took: capture under the lock, encoding and writing.",
            ["phase"],
            registry=registry,
        )
        self.writes = Counter(
            "calico_accountant_checkpoint_writes",
            "Checkpoint writes, by outcome (ok, error).",
            ["outcome"],
            registry=registry,
        )
        self.restores = Counter(
            "calico_accountant_checkpoint_restores",
            "Checkpoints read at start, by outcome: restored, none (nothing saved yet), corrupt and "
            "foreign (refused: counting starts from zero), unreadable (the store failed).",
            ["outcome"],
            registry=registry,
        )
        self.catch_up = Gauge(
            "calico_accountant_checkpoint_catch_up_seconds",
            "How long /metrics waited after the last restore for the nodes of the checkpoint to report "
            "again (so that no series is exported below a value already scraped).",
            registry=registry,
        )
        self.catch_up_missing = Gauge(
            "calico_accountant_checkpoint_catch_up_missing_nodes",
            "Nodes of the restored checkpoint that had not reported when /metrics opened (its timeout).",
            registry=registry,
        )
        for outcome in ("ok", "error"):
            self.writes.labels(outcome)
        for restore in RestoreOutcome:
            self.restores.labels(restore.value)


@dataclass(frozen=True, slots=True)
class WriteFigures:
    """What one checkpoint cost: seconds per phase, and its size."""

    capture: float
    encode: float
    save: float
    size: int


class CheckpointKeeper:
    """Saves the accountant's state to ``store`` every ``interval`` seconds."""

    def __init__(
        self,
        accountant: Accountant,
        store: CheckpointStore,
        *,
        interval: float = 10.0,
        metrics: CheckpointMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("the checkpoint interval must be positive")
        self.accountant = accountant
        self.store = store
        self.interval = interval
        self.metrics = metrics or CheckpointMetrics(CollectorRegistry())
        self._clock = clock
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.restored: Restored | None = None
        """Set by a successful :meth:`restore`: what ``/metrics`` waits for before opening."""

    async def restore(self) -> RestoreOutcome:
        """Restore the kept checkpoint, if any (call before ingest starts)."""
        outcome = await self._restore()
        self.metrics.restores.labels(outcome.value).inc()
        return outcome

    async def _restore(self) -> RestoreOutcome:
        where = self.store.describe()
        try:
            data = await self.store.load()
        except Exception as error:
            log.error(
                "checkpoint %s could not be read (%s): counting starts from the first snapshots", where, error
            )
            return RestoreOutcome.UNREADABLE
        if data is None:
            log.info("no checkpoint in %s yet: counting starts from the first snapshots", where)
            return RestoreOutcome.NONE
        try:
            summary = await asyncio.to_thread(self._decode_and_restore, data)
        except CheckpointError as error:
            log.error("checkpoint %s refused, %s: counting starts from the first snapshots", where, error)
            return RestoreOutcome(error.problem.value)
        log.info("restored checkpoint of %s from %s", summary, where)
        return RestoreOutcome.RESTORED

    def _decode_and_restore(self, data: bytes) -> str:
        """Decode and restore (in a worker thread, the collector paused: see
        :func:`~calico_accountant.runtime.heap.collector_paused`);
        what was restored, for the log."""
        with collector_paused():
            checkpoint = decode(data)
            dropped = self.accountant.restore(checkpoint.nodes, checkpoint.series, checkpoint.tombstones)
            self.restored = Restored(
                checkpoint.created,
                {record.state.node: record.state.received_at for record in checkpoint.nodes},
                self._clock(),
            )
            summary = (
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(checkpoint.created))} (written by "
                f"calico-accountant {checkpoint.written_by}): {len(checkpoint.nodes)} nodes, "
                f"{sum(len(family.values) for family in checkpoint.series)} series"
                + (f"; {dropped} series not placed (metric options changed)" if dropped else "")
            )
            del checkpoint
        freeze_long_lived()  # the restored state lives on: keep it out of full collections
        return summary

    def note_catch_up(self, result: CatchUp) -> None:
        self.metrics.catch_up.set(result.waited)
        self.metrics.catch_up_missing.set(len(result.missing))

    async def write(self) -> WriteFigures:
        """Write one checkpoint now (serialised with the periodic ones)."""
        async with self._writing:
            data, capture, encoding = await asyncio.to_thread(self._capture_and_encode)
            started = time.perf_counter()
            try:
                await self.store.save(data)
            except Exception:
                self.metrics.writes.labels("error").inc()
                raise
            figures = WriteFigures(capture, encoding, time.perf_counter() - started, len(data))
        self.metrics.writes.labels("ok").inc()
        self.metrics.last_success.set(self._clock())
        self.metrics.size.set(figures.size)
        for phase in ("capture", "encode", "save"):
            self.metrics.duration.labels(phase).set(getattr(figures, phase))
        return figures

    def _capture_and_encode(self) -> tuple[bytes, float, float]:
        """The checkpoint's bytes, and the seconds of its capture (under the accountant's
        lock) and of its encoding; in a worker thread, the collector paused (see
        :func:`~calico_accountant.runtime.heap.collector_paused`) until the copies are gone."""
        with collector_paused():
            started = time.perf_counter()
            nodes, series, tombstones = self.accountant.capture()
            captured = time.perf_counter()
            data = encode(Checkpoint(self._clock(), __version__, nodes, series, tombstones))
            del nodes, series, tombstones
        return data, captured - started, time.perf_counter() - captured

    def start(self) -> None:
        """Write every interval from now on (a task of the running loop)."""
        self._task = asyncio.create_task(self.run(), name="checkpoint")

    async def close(self, *, final: bool) -> None:
        """Stop the periodic writes; with ``final`` (after ingest stopped) write one last
        checkpoint, so a clean stop loses nothing; then release the store."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if final:
            try:
                figures = await self.write()
                log.info(
                    "final checkpoint written: %d bytes in %.3f s",
                    figures.size,
                    figures.capture + figures.encode + figures.save,
                )
            except Exception as error:
                log.error("the final checkpoint could not be written: %s", error)
        await self.store.close()

    async def run(self) -> None:
        """Write every interval until cancelled; a failed write is logged and retried at
        the next interval (the previous checkpoint stays intact)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.write()
            except Exception as error:
                log.warning("writing the checkpoint to %s failed: %s", self.store.describe(), error)
