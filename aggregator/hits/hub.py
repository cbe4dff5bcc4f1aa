"""The fan-out: recent hits for ``since`` replays, and one bounded buffer per ``Watch``.

:class:`HitHub` receives every applied snapshot's increases from ingest, keeps a recent
window for ``since`` replays (bounded by age *and* count), and offers them to every
``Watch`` stream through that stream's own bounded buffer.

A slow consumer never slows ingest or other consumers: :meth:`HitHub.publish` only
appends to buffers and never waits.  When a consumer's buffer is full, the hits that do
not fit are dropped *for that consumer*, and it finds, at the place in its stream where
they would have been, a ``HitBatch`` with ``lost = N`` (as Hubble reports lost events);
``calico_accountant_hits_lost_total`` counts them.

What is a hit and what is not (a zero increase, a node's first snapshot) is decided where
the increases are made (:class:`~aggregator.series.views.ResolvedIncrease`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.hits.convert import policy_names
from aggregator.hits.encoding import HitEncoder
from aggregator.hits.filters import HitFilterSpec, ReplayWindow
from aggregator.model import ResolvedCounter
from aggregator.series.views import ResolvedIncrease
from calico_accountant.v1 import hits_pb2 as hpb

__all__ = ["MAX_HITS_PER_BATCH", "HitHub", "HitMetrics"]

#: Hits per ``HitBatch`` message (about 150 bytes each: well under any message limit).
MAX_HITS_PER_BATCH = 1000


class _Entry:
    """One hit as kept and fanned out.  Its encoded ``Hit`` and the policy names filters
    use are built on first need only: a busy node yields ~100k increases per read, most
    of which no consumer ever asks for."""

    __slots__ = ("_counter", "_encoded", "_names", "increase", "received")

    def __init__(self, increase: ResolvedIncrease, received: float) -> None:
        self.increase = increase
        self.received = received
        """Aggregator wall time of arrival: what ``since`` is measured against."""
        self._counter: ResolvedCounter | None = None
        self._encoded: bytes | None = None
        self._names: frozenset[str] | None = None

    @property
    def counter(self) -> ResolvedCounter:
        if self._counter is None:
            self._counter = self.increase.counter
        return self._counter

    def encoded(self, encoder: HitEncoder) -> bytes:
        """The ``Hit`` as wire bytes (shared by every consumer it goes to)."""
        if self._encoded is None:
            increase = self.increase
            self._encoded = encoder.encode(
                increase.names, increase.key, increase.packets, increase.bytes, increase.time
            )
        return self._encoded

    @property
    def policy_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = policy_names(self.counter)
        return self._names

    def passes(self, spec: HitFilterSpec) -> bool:
        return spec.matches(self.counter, self.increase.packets, lambda: self.policy_names)


class HitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "calico_accountant_hits_published", "Hits produced by applied snapshots.", registry=registry
        )
        self.lost = Counter(
            "calico_accountant_hits_lost",
            "Hits dropped for Watch consumers that fell behind (each consumer was told how many).",
            registry=registry,
        )
        self.watchers = Gauge(
            "calico_accountant_hits_watch_streams", "Open Watch streams.", registry=registry
        )
        self.window = Gauge(
            "calico_accountant_hits_window", "Hits kept for `since` replays right now.", registry=registry
        )


class _Subscriber:
    """One Watch stream's bounded buffer: batches of hits and lost-N markers, in order."""

    def __init__(self, spec: HitFilterSpec, capacity: int, encoder: HitEncoder) -> None:
        self.spec = spec
        self.encoder = encoder
        self.capacity = capacity
        self.items: deque[list[_Entry] | int] = deque()
        self.buffered = 0
        self.lost = 0
        self.wakeup = asyncio.Event()
        self.closed = False

    def offer(self, hits: list[_Entry]) -> int:
        """Buffer what fits; returns how many were lost."""
        room = self.capacity - self.buffered
        kept = hits[: max(room, 0)]
        dropped = len(hits) - len(kept)
        if kept:
            self.items.append(kept)
            self.buffered += len(kept)
        if dropped:
            if self.items and isinstance(self.items[-1], int):
                self.items[-1] += dropped
            else:
                self.items.append(dropped)
            self.lost += dropped
        if kept or dropped:
            self.wakeup.set()
        return dropped

    def drain(self) -> list[hpb.HitBatch]:
        """Everything buffered as messages (hits merged up to the batch size)."""
        out: list[hpb.HitBatch] = []
        pending: list[_Entry] = []
        while self.items:
            item = self.items.popleft()
            if isinstance(item, int):
                if pending:
                    out.extend(_batches(pending, self.encoder))
                    pending = []
                out.append(hpb.HitBatch(lost=item))
            else:
                self.buffered -= len(item)
                pending.extend(item)
        if pending:
            out.extend(_batches(pending, self.encoder))
        self.wakeup.clear()
        return out


def _batches(entries: Sequence[_Entry], encoder: HitEncoder) -> Iterable[hpb.HitBatch]:
    for start in range(0, len(entries), MAX_HITS_PER_BATCH):
        yield encoder.batch([entry.encoded(encoder) for entry in entries[start : start + MAX_HITS_PER_BATCH]])


class HitHub:
    """Recent hits and the Watch subscribers; mutated only from the asyncio loop."""

    def __init__(
        self,
        *,
        window_seconds: float = 600.0,
        window_hits: int = 100_000,
        buffer_hits: int = 100_000,
        metrics: HitMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_seconds < 0 or window_hits < 0 or buffer_hits <= 0:
            raise ValueError("window bounds must be >= 0 and the buffer > 0")
        self.window_seconds = window_seconds
        self.window_hits = window_hits
        self.buffer_hits = buffer_hits
        self.metrics = metrics if metrics is not None else HitMetrics(CollectorRegistry())
        self._clock = clock
        self._window: deque[_Entry] = deque(maxlen=window_hits or None)
        self._subscribers: set[_Subscriber] = set()
        self._encoder = HitEncoder()

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def publish(self, increases: Iterable[ResolvedIncrease]) -> int:
        """Keep ``increases`` (hits), offer them to every subscriber; never waits.  Returns
        the number of hits."""
        now = self._clock()
        entries = [_Entry(increase, now) for increase in increases]
        if not entries:
            return 0
        if self.window_hits:
            self._window.extend(entries)
        self._prune(now)
        self.metrics.window.set(len(self._window))
        self.metrics.published.inc(len(entries))
        for subscriber in self._subscribers:
            spec = subscriber.spec
            matching = entries if spec.everything else [e for e in entries if e.passes(spec)]
            if matching:
                lost = subscriber.offer(matching)
                if lost:
                    self.metrics.lost.inc(lost)
        return len(entries)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._window and self._window[0].received < horizon:
            self._window.popleft()

    def recent(self, spec: HitFilterSpec, window: ReplayWindow | float | None = None) -> list[hpb.Hit]:
        """Kept hits matching ``spec`` within ``window`` (a number: seconds back by
        receipt; None: all kept hits), oldest first."""
        return [hpb.Hit.FromString(entry.encoded(self._encoder)) for entry in self._recent(spec, window)]

    def _recent(self, spec: HitFilterSpec, window: ReplayWindow | float | None) -> list[_Entry]:
        if not isinstance(window, ReplayWindow):
            window = ReplayWindow(since=window)
        now = self._clock()
        self._prune(now)
        horizon = now - window.since if window.since is not None else float("-inf")
        low = window.since_time if window.since_time is not None else float("-inf")
        high = window.until if window.until is not None else float("inf")
        timed = window.since_time is not None or window.until is not None
        chosen = [
            e
            for e in self._window
            if e.received >= horizon
            and (not timed or low <= e.increase.time.timestamp() < high)
            and e.passes(spec)
        ]
        return window.trim(chosen)

    def subscribe(self, spec: HitFilterSpec, capacity: int | None = None) -> _Subscriber:
        subscriber = _Subscriber(spec, capacity or self.buffer_hits, self._encoder)
        self._subscribers.add(subscriber)
        self.metrics.watchers.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.closed = True
        self.metrics.watchers.set(len(self._subscribers))

    async def watch(
        self, spec: HitFilterSpec, window: ReplayWindow | float | None, follow: bool
    ) -> AsyncIterator[hpb.HitBatch]:
        """The messages of one Watch: the replay, then (``follow``) live hits.  Without
        ``follow`` every kept hit in ``window`` is replayed; with it, only when the
        window was asked for (a number or a bounded :class:`ReplayWindow`)."""
        if not isinstance(window, ReplayWindow):
            window = ReplayWindow(since=window)
        # Subscribe and copy the window with no await in between: no hit is both
        # replayed and delivered live, and none falls between the two.
        subscriber = self.subscribe(spec) if follow else None
        replay = self._recent(spec, window) if (window.bounded or not follow) else []
        try:
            for batch in _batches(replay, self._encoder):
                yield batch
            if subscriber is None:
                return
            while True:
                await subscriber.wakeup.wait()
                for batch in subscriber.drain():
                    yield batch
        finally:
            if subscriber is not None:
                self.unsubscribe(subscriber)
