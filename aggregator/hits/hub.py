"""The fan-out: recent hits for ``since`` replays, and one bounded buffer per ``Watch``.

:class:`HitHub` receives every applied snapshot's hits from ingest (in columns,
:class:`~aggregator.series.views.Hits`), keeps a recent window for ``since`` replays
(bounded by age *and* count) and offers them to every ``Watch`` stream through that
stream's own bounded buffer.  Everything is kept by snapshot, not by hit: a hit becomes an
object (its counter, its wire bytes) only when a consumer needs it.

A slow consumer never slows ingest or other consumers: :meth:`HitHub.publish` only
appends to buffers and never waits.  When a consumer's buffer is full, the hits that do
not fit are dropped *for that consumer*, and it finds, at the place in its stream where
they would have been, a ``HitBatch`` with ``lost = N`` (as Hubble reports lost events);
``calico_accountant_hits_lost_total`` counts them.

What is a hit and what is not (a zero increase, a node's first snapshot) is decided where
the increases are made (:class:`~aggregator.series.views.Hits`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from aggregator.hits.convert import policy_names
from aggregator.hits.encoding import HitEncoder
from aggregator.hits.filters import HitFilterSpec, ReplayWindow
from aggregator.model import ResolvedCounter
from aggregator.series.views import Hits
from calico_accountant.v1 import hits_pb2 as hpb

__all__ = ["MAX_HITS_PER_BATCH", "HitHub", "HitMetrics"]

#: Hits per ``HitBatch`` message (about 150 bytes each: well under any message limit).
MAX_HITS_PER_BATCH = 1000


class _Kept:
    """One snapshot's hits as kept and fanned out.  Each hit's counter, the policy names
    filters use and its encoded ``Hit`` are made on first need only: a busy node yields
    ~100k hits per read, most of which no consumer ever asks for."""

    __slots__ = ("_counters", "_encoded", "_names", "hits", "received", "start")

    def __init__(self, hits: Hits, received: float) -> None:
        self.hits = hits
        self.received = received
        """Aggregator wall time of arrival: what ``since`` is measured against."""
        self.start = 0
        """The first hit still in the replay window (older ones were dropped for its count)."""
        self._counters: list[ResolvedCounter | None] | None = None
        self._encoded: list[bytes | None] | None = None
        self._names: list[frozenset[str] | None] | None = None

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def in_window(self) -> int:
        """Its hits from :attr:`start` on: what it counts in the replay window."""
        return len(self.hits) - self.start

    def counter(self, index: int) -> ResolvedCounter:
        if self._counters is None:
            self._counters = [None] * len(self.hits)
        counter = self._counters[index]
        if counter is None:
            counter = self._counters[index] = self.hits.names[index].counter(self.hits.keys[index])
        return counter

    def encoded(self, index: int, encoder: HitEncoder) -> bytes:
        """Hit ``index`` as wire bytes (shared by every consumer it goes to)."""
        if self._encoded is None:
            self._encoded = [None] * len(self.hits)
        encoded = self._encoded[index]
        if encoded is None:
            hits = self.hits
            encoded = self._encoded[index] = encoder.encode(
                hits.names[index], hits.keys[index], hits.packets[index], hits.bytes[index], hits.time
            )
        return encoded

    def policy_names(self, index: int) -> frozenset[str]:
        if self._names is None:
            self._names = [None] * len(self.hits)
        names = self._names[index]
        if names is None:
            names = self._names[index] = policy_names(self.counter(index))
        return names

    def matching(self, spec: HitFilterSpec, start: int = 0) -> Sequence[int]:
        """The indexes of the hits from ``start`` on that pass ``spec``."""
        if spec.everything:
            return range(start, len(self.hits))
        packets = self.hits.packets
        return [
            index
            for index in range(start, len(self.hits))
            if spec.matches(self.counter(index), packets[index], functools.partial(self.policy_names, index))
        ]


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
    """One Watch stream's bounded buffer: hits and lost-N markers, in order.

    What it holds is bounded by its capacity in hits: a snapshot's hits all taken are held
    as the snapshot and a range (its columns are what the buffer needs anyway); a few hits
    picked by a filter are held as their wire bytes, never as the snapshot they came in,
    or a consumer matching one hit in each of 100k snapshots would hold all of their hits."""

    def __init__(self, spec: HitFilterSpec, capacity: int, encoder: HitEncoder) -> None:
        self.spec = spec
        self.encoder = encoder
        self.capacity = capacity
        self.items: deque[tuple[_Kept, range] | list[bytes] | int] = deque()
        self.buffered = 0
        self.lost = 0
        self.wakeup = asyncio.Event()
        self.closed = False

    def offer(self, kept: _Kept, indexes: Sequence[int]) -> int:
        """Buffer what fits of ``kept``'s hits ``indexes``; returns how many were lost."""
        room = self.capacity - self.buffered
        taken = indexes[: max(room, 0)]
        dropped = len(indexes) - len(taken)
        if taken:
            if isinstance(taken, range) and len(taken) == len(kept):
                self.items.append((kept, taken))
            else:
                self.items.append([kept.encoded(index, self.encoder) for index in taken])
            self.buffered += len(taken)
        if dropped:
            if self.items and isinstance(self.items[-1], int):
                self.items[-1] += dropped
            else:
                self.items.append(dropped)
            self.lost += dropped
        if taken or dropped:
            self.wakeup.set()
        return dropped

    def drain(self) -> list[hpb.HitBatch]:
        """Everything buffered as messages (hits merged up to the batch size)."""
        out: list[hpb.HitBatch] = []
        pending: list[bytes] = []
        encoder = self.encoder
        while self.items:
            item = self.items.popleft()
            if isinstance(item, int):
                if pending:
                    out.extend(_batches(pending, encoder))
                    pending = []
                out.append(hpb.HitBatch(lost=item))
            elif isinstance(item, list):
                self.buffered -= len(item)
                pending.extend(item)
            else:
                kept, indexes = item
                self.buffered -= len(indexes)
                pending.extend(kept.encoded(index, encoder) for index in indexes)
        if pending:
            out.extend(_batches(pending, encoder))
        self.wakeup.clear()
        return out


def _batches(encoded: Sequence[bytes], encoder: HitEncoder) -> Iterable[hpb.HitBatch]:
    for start in range(0, len(encoded), MAX_HITS_PER_BATCH):
        yield encoder.batch(encoded[start : start + MAX_HITS_PER_BATCH])


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
        self._window: deque[_Kept] = deque()
        self._window_count = 0
        """Hits in :attr:`_window` from each one's ``start`` on: at most ``window_hits``."""
        self._subscribers: set[_Subscriber] = set()
        self._encoder = HitEncoder()

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def publish(self, hits: Hits) -> int:
        """Keep ``hits`` (one snapshot's), offer them to every subscriber; never waits.
        Returns the number of hits."""
        if not hits:
            return 0
        now = self._clock()
        kept = _Kept(hits, now)
        if self.window_hits:
            self._window.append(kept)
            self._window_count += len(kept)
        self._prune(now)
        self.metrics.window.set(self._window_count)
        self.metrics.published.inc(len(kept))
        for subscriber in self._subscribers:
            matching = kept.matching(subscriber.spec)
            if matching:
                lost = subscriber.offer(kept, matching)
                if lost:
                    self.metrics.lost.inc(lost)
        return len(kept)

    def _prune(self, now: float) -> None:
        """Drop kept hits older than the window's age, then the oldest beyond its count."""
        window = self._window
        horizon = now - self.window_seconds
        while window and window[0].received < horizon:
            self._window_count -= window.popleft().in_window
        while self._window_count > self.window_hits:
            oldest = window[0]
            excess = self._window_count - self.window_hits
            if oldest.in_window <= excess:
                self._window_count -= window.popleft().in_window
            else:
                oldest.start += excess
                self._window_count -= excess

    def recent(self, spec: HitFilterSpec, window: ReplayWindow | float | None = None) -> list[hpb.Hit]:
        """Kept hits matching ``spec`` within ``window`` (a number: seconds back by
        receipt; None: all kept hits), oldest first."""
        return [hpb.Hit.FromString(encoded) for encoded in self._recent(spec, window)]

    def _recent(self, spec: HitFilterSpec, window: ReplayWindow | float | None) -> list[bytes]:
        """The encoded hits :meth:`recent` returns."""
        if not isinstance(window, ReplayWindow):
            window = ReplayWindow(since=window)
        now = self._clock()
        self._prune(now)
        horizon = now - window.since if window.since is not None else float("-inf")
        low = window.since_time if window.since_time is not None else float("-inf")
        high = window.until if window.until is not None else float("inf")
        timed = window.since_time is not None or window.until is not None
        chosen = [
            (kept, index)
            for kept in self._window
            if kept.received >= horizon and (not timed or low <= kept.hits.time.timestamp() < high)
            for index in kept.matching(spec, kept.start)
        ]
        return [kept.encoded(index, self._encoder) for kept, index in window.trim(chosen)]

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
