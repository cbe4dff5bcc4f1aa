"""Hits as wire bytes, built from a per-counter template instead of a message per hit.

Building a ``Hit`` message field by field costs ~8 us in Python, which capped a ``Watch``
consumer near 100k hits/s on an idle core and far below it while ingest shared the core.
But of a hit's fields only three change from one hit of a counter to the next: packets,
bytes and the read time.  So the static part (node, workload, policy, rule, ...) is
serialized once per counter and kept; a hit is that template followed by the three
fields, varint- and length-encoded here.  A protobuf parser accepts fields in any order
and the template never sets the three, so the bytes decode to exactly the message
:func:`~.convert.counter_to_hit` builds (``tests/test_hits_encoding.py`` checks it field
for field).  A batch is the hits framed as field 1 of ``HitBatch``, parsed back once into
a message for gRPC's serializer (upb parses ~3 M hits/s).

A counter is named by its run's names (one object per workload's chain while it is routed,
:class:`~aggregator.model.CounterNames`) and its key: hits carry those, not a
``ResolvedCounter``, which is made only for a template.

The template cache is bounded: past ``max_templates`` counters it starts afresh, so its
memory stays bounded whatever the cluster size; it lives only while someone watches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from aggregator.hits.convert import counter_to_hit
from aggregator.model import CounterNames
from calico_accountant.records import CounterKey
from calico_accountant.v1 import hits_pb2 as hpb

__all__ = ["HitEncoder", "varint"]

_PACKETS_TAG = bytes([11 << 3 | 0])  # uint64 packets = 11
_BYTES_TAG = bytes([12 << 3 | 0])  # uint64 bytes = 12
_HIT_TAG = bytes([1 << 3 | 2])  # repeated Hit hits = 1 (in HitBatch)
_EPOCH = datetime.fromtimestamp(0, UTC)
_MAX_TIMES = 4096


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class HitEncoder:
    """Serialized hits for the ``Watch`` fan-out; used from the asyncio loop only."""

    def __init__(self, max_templates: int = 262_144) -> None:
        if max_templates <= 0:
            raise ValueError("max_templates must be > 0")
        self.max_templates = max_templates
        # (id(names), key) -> (names, template): the names are kept so that their id cannot
        # be reused by another object while the entry exists (identity checked on every use).
        self._templates: dict[tuple[int, CounterKey], tuple[CounterNames, bytes]] = {}
        self._times: dict[datetime, bytes] = {}

    def _template(self, names: CounterNames, key: CounterKey) -> bytes:
        place = (id(names), key)
        cached = self._templates.get(place)
        if cached is not None and cached[0] is names:
            return cached[1]
        if len(self._templates) >= self.max_templates:
            self._templates.clear()
        hit = counter_to_hit(names.counter(key), 0, 0, _EPOCH)
        hit.ClearField("time")
        template = hit.SerializeToString()
        self._templates[place] = (names, template)
        return template

    def _time(self, moment: datetime) -> bytes:
        encoded = self._times.get(moment)
        if encoded is None:
            if len(self._times) >= _MAX_TIMES:
                self._times.clear()
            stamp = hpb.Hit()
            stamp.time.FromDatetime(moment.astimezone(UTC))
            encoded = stamp.SerializeToString()  # the time field with its tag and length
            self._times[moment] = encoded
        return encoded

    def encode(
        self, names: CounterNames, key: CounterKey, packets: int, octets: int, moment: datetime
    ) -> bytes:
        """One hit's ``Hit`` bytes (what ``counter_to_hit(names.counter(key), ...).SerializeToString()``
        decodes equal to)."""
        parts = [self._template(names, key)]
        if packets:
            parts += (_PACKETS_TAG, varint(packets))
        if octets:
            parts += (_BYTES_TAG, varint(octets))
        parts.append(self._time(moment))
        return b"".join(parts)

    @staticmethod
    def batch(hits: Sequence[bytes], lost: int = 0) -> hpb.HitBatch:
        """A ``HitBatch`` of encoded hits (and a lost count)."""
        framed = b"".join(_HIT_TAG + varint(len(hit)) + hit for hit in hits)
        if lost:
            framed += bytes([2 << 3 | 0]) + varint(lost)
        return hpb.HitBatch.FromString(framed)

    @property
    def templates(self) -> int:
        return len(self._templates)
