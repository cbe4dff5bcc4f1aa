"""A snapshot as chunks that each fit a message size limit, and the chunks put back together."""

from __future__ import annotations

from calico_accountant.v1 import snapshot_pb2 as pb
from calico_accountant.wire.bounds import MAX_CHUNKS, WireError

__all__ = ["ChunkAssembler", "split_snapshot"]

#: Bytes a repeated message field adds around each element: one tag byte plus a length
#: varint (at most 5 bytes for any length we could send).
_ELEMENT_OVERHEAD = 6
#: Bytes one entry of the value columns takes at most: an id (uint32 varint, 5 bytes) and
#: packets and bytes (uint64 varints, 10 each); packed, so no tag per entry.
_COLUMN_ENTRY = 25
#: Room for the ``values`` message and its three packed fields' tags and lengths.
_COLUMNS_OVERHEAD = 4 * 6


def split_snapshot(snapshot: pb.NodeSnapshot, max_bytes: int) -> list[pb.NodeSnapshot]:
    """``snapshot`` as chunks that each serialize to at most ``max_bytes``.

    Every chunk repeats the identity (node, instance, sequence, read time, full); the
    first also carries sources, diagnostics and the agent version.  Counters and
    removed keys are packed greedily in order, then slices of the value columns and of
    ``removed_ids`` (sized by their largest possible encoding).  A snapshot that fits is returned
    as is (``chunk_count`` 0).  :class:`WireError` if one counter alone cannot fit.
    """
    if snapshot.ByteSize() <= max_bytes:
        return [snapshot]

    def header(first: bool) -> pb.NodeSnapshot:
        chunk = pb.NodeSnapshot(
            node=snapshot.node,
            agent_instance_id=snapshot.agent_instance_id,
            sequence=snapshot.sequence,
            full=snapshot.full,
        )
        chunk.read_time.CopyFrom(snapshot.read_time)
        if first:
            chunk.sources.extend(snapshot.sources)
            chunk.diagnostics.extend(snapshot.diagnostics)
            chunk.diagnostic_counts.update(snapshot.diagnostic_counts)
            chunk.agent_version = snapshot.agent_version
        return chunk

    # Room for chunk_index/chunk_count varints (2 x (1 tag + 5)).
    index_overhead = 12
    chunks: list[pb.NodeSnapshot] = []
    current = header(first=True)
    used = current.ByteSize() + index_overhead

    def place(counter: pb.Counter, removed: bool) -> None:
        nonlocal current, used
        size = counter.ByteSize() + _ELEMENT_OVERHEAD
        if used + size > max_bytes and (len(current.counters) or len(current.removed)):
            chunks.append(current)
            current = header(first=False)
            used = current.ByteSize() + index_overhead
        if used + size > max_bytes:
            raise WireError(f"one counter ({size} bytes) does not fit a {max_bytes}-byte message")
        (current.removed if removed else current.counters).append(counter)
        used += size

    for counter in snapshot.counters:
        place(counter, removed=False)
    for counter in snapshot.removed:
        place(counter, removed=True)

    def room(entry: int) -> int:
        """How many column entries of ``entry`` bytes still fit; a new chunk when none."""
        nonlocal current, used
        fits = (max_bytes - used - _COLUMNS_OVERHEAD) // entry
        if fits < 1:
            chunks.append(current)
            current = header(first=False)
            used = current.ByteSize() + index_overhead
            fits = (max_bytes - used - _COLUMNS_OVERHEAD) // entry
            if fits < 1:
                raise WireError(f"no column entry fits a {max_bytes}-byte message")
        return fits

    values = snapshot.values
    begin, total = 0, len(values.ids)
    while begin < total:
        end = begin + room(_COLUMN_ENTRY)
        current.values.ids.extend(values.ids[begin:end])
        current.values.packets.extend(values.packets[begin:end])
        current.values.bytes.extend(values.bytes[begin:end])
        used += _COLUMNS_OVERHEAD + _COLUMN_ENTRY * (min(end, total) - begin)
        begin = end
    begin, total = 0, len(snapshot.removed_ids)
    while begin < total:
        end = begin + room(5)
        current.removed_ids.extend(snapshot.removed_ids[begin:end])
        used += _COLUMNS_OVERHEAD + 5 * (min(end, total) - begin)
        begin = end
    chunks.append(current)
    if len(chunks) > MAX_CHUNKS:
        raise WireError(f"snapshot needs {len(chunks)} chunks, more than the {MAX_CHUNKS} a peer accepts")
    for index, chunk in enumerate(chunks):
        chunk.chunk_index = index
        chunk.chunk_count = len(chunks)
    return chunks


class ChunkAssembler:
    """Reassembles the chunks of one stream into whole snapshots.

    Chunks of a snapshot must arrive in order and uninterrupted (one stream is one
    ordered channel, and the sender sends a snapshot's chunks back to back); anything
    else is a :class:`WireError` and the partial snapshot is dropped.
    """

    def __init__(self, max_counters: int = 5_000_000) -> None:
        self._parts: list[pb.NodeSnapshot] = []
        self._counters = 0
        self._max_counters = max_counters

    @property
    def pending(self) -> bool:
        """A snapshot has been started but not finished."""
        return bool(self._parts)

    def reset(self) -> None:
        """Drop an unfinished snapshot's chunks now (a refused stream's frames may outlive
        it in a reference cycle, which only the cyclic garbage collector frees)."""
        self._parts = []
        self._counters = 0

    def add(self, chunk: pb.NodeSnapshot) -> pb.NodeSnapshot | None:
        """Feed one message; returns the whole snapshot when this completes one."""
        count = chunk.chunk_count
        if count <= 1 and not self._parts:
            if chunk.chunk_index != 0:
                raise WireError(f"unchunked snapshot with chunk_index {chunk.chunk_index}")
            return chunk
        try:
            return self._add_chunk(chunk)
        except WireError:
            self._parts = []
            self._counters = 0
            raise

    def _add_chunk(self, chunk: pb.NodeSnapshot) -> pb.NodeSnapshot | None:
        count = chunk.chunk_count
        if count > MAX_CHUNKS:
            raise WireError(f"chunk_count {count} exceeds {MAX_CHUNKS}")
        if not self._parts:
            if chunk.chunk_index != 0:
                raise WireError(f"snapshot {chunk.sequence} starts at chunk {chunk.chunk_index}, not 0")
        else:
            first = self._parts[0]
            expected = len(self._parts)
            if count <= 1:
                raise WireError(
                    f"unchunked snapshot {chunk.sequence} while snapshot {first.sequence} is "
                    f"incomplete ({expected}/{first.chunk_count} chunks)"
                )
            if (chunk.sequence, chunk.agent_instance_id, chunk.node, count) != (
                first.sequence,
                first.agent_instance_id,
                first.node,
                first.chunk_count,
            ):
                raise WireError(
                    f"chunk of snapshot {chunk.sequence} interleaved with snapshot {first.sequence} "
                    f"({expected}/{first.chunk_count} chunks)"
                )
            if chunk.chunk_index != expected:
                raise WireError(
                    f"snapshot {chunk.sequence}: chunk {chunk.chunk_index} where {expected} was due"
                )
        self._counters += (
            len(chunk.counters) + len(chunk.removed) + len(chunk.values.ids) + len(chunk.removed_ids)
        )
        if self._counters > self._max_counters:
            raise WireError(f"snapshot {chunk.sequence} exceeds {self._max_counters} counters")
        self._parts.append(chunk)
        if len(self._parts) < count:
            return None
        whole = pb.NodeSnapshot()
        whole.CopyFrom(self._parts[0])
        for part in self._parts[1:]:
            whole.counters.extend(part.counters)
            whole.removed.extend(part.removed)
            if part.HasField("values"):
                whole.values.ids.extend(part.values.ids)
                whole.values.packets.extend(part.values.packets)
                whole.values.bytes.extend(part.values.bytes)
            whole.removed_ids.extend(part.removed_ids)
        whole.chunk_index = 0
        whole.chunk_count = 0
        self._parts = []
        self._counters = 0
        return whole
