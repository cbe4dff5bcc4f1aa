"""What ingest lets in at once: streams, streams per peer, bytes of unfinished snapshots.

A stream costs a little memory while it is open and a lot while it holds the chunks of
a snapshot that has not completed (chunks are kept until the last one arrives).  Without
caps, a few clients holding unfinished snapshots can take the aggregator past its memory
limit, and a restart loses every node's totals.  The defaults fit a 5,000-node cluster
whose biggest node sends a ~20 MB full snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StreamAdmission", "StreamLimits"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_streams: int = 10_000
    """Open ingest streams in all (one per node, plus reconnects overlapping)."""
    max_streams_per_peer: int = 16
    """Open ingest streams per peer: its identity when it has one, else its address."""
    max_pending_bytes: int = 64 * MIB
    """Bytes of one stream's unfinished snapshot (on the wire; held as messages they take
    about twice that)."""
    max_pending_bytes_total: int = 256 * MIB
    """Bytes of unfinished snapshots over all streams."""

    def __post_init__(self) -> None:
        if min(self.max_streams, self.max_streams_per_peer, self.max_pending_bytes) <= 0:
            raise ValueError("stream limits must be positive")


class StreamAdmission:
    """The bookkeeping behind :class:`StreamLimits`; used from the event loop only."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._streams = 0
        self._per_peer: dict[str, int] = {}
        self.pending_total = 0

    def open(self, peer: str) -> str | None:
        """Admit a new stream from ``peer``, or say why not."""
        if self._streams >= self.limits.max_streams:
            return f"{self._streams} ingest streams are open; at most {self.limits.max_streams}"
        held = self._per_peer.get(peer, 0)
        if held >= self.limits.max_streams_per_peer:
            return f"{held} ingest streams from {peer} are open; at most {self.limits.max_streams_per_peer}"
        self._streams += 1
        self._per_peer[peer] = held + 1
        return None

    def close(self, peer: str) -> None:
        self._streams -= 1
        left = self._per_peer.get(peer, 0) - 1
        if left > 0:
            self._per_peer[peer] = left
        else:
            self._per_peer.pop(peer, None)

    def hold(self, held: int, more: int) -> str | None:
        """A stream holding ``held`` pending bytes wants ``more``; None admits them."""
        if held + more > self.limits.max_pending_bytes:
            return f"an unfinished snapshot of over {self.limits.max_pending_bytes} bytes"
        if self.pending_total + more > self.limits.max_pending_bytes_total:
            return f"unfinished snapshots of over {self.limits.max_pending_bytes_total} bytes in all"
        self.pending_total += more
        return None

    def release(self, held: int) -> None:
        self.pending_total -= held
