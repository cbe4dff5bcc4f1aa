"""The agent waits longer for a new stream's first message than between messages (real gRPC
on loopback, the agent's real streamer).

In a reconnect storm the aggregator takes thousands of new streams up one after another, and
a stream not yet taken up gets no interim ack: at 5,000 agents the last waited 36.9 s for its
first message (``bench/load_bench.py``), past the 30 s ack timeout.  Here a stand-in
aggregator answers a stream's first snapshot only after a delay longer than the ack timeout
and shorter than the first-ack timeout: the agent keeps its stream; with the first-ack
timeout as short as the ack timeout (the control) it gives up and reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from calico_accountant.v1 import snapshot_pb2 as pb
from node_agent.reader import NodeRead, NodeReader
from node_agent.streamer import LatestSlot, Streamer, StreamerConfig
from tests.support.streaming import make_nodes

pytestmark = pytest.mark.timeout(60)

ACK_TIMEOUT = 0.3
FIRST_REPLY_AFTER = 1.0
WATCHED = 2.5
"""Seconds the agent is watched: its first snapshot's ack comes at ~1 s when it waits."""


class LateFirstReply:
    """Acks every snapshot, a stream's first only after :data:`FIRST_REPLY_AFTER` seconds (a
    stream waiting to be taken up); counts the streams opened."""

    def __init__(self) -> None:
        self.streams = 0

    async def StreamSnapshots(
        self, requests: AsyncIterator[pb.NodeSnapshot], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.IngestAck]:
        self.streams += 1
        first = True
        async for snapshot in requests:
            if first:
                await asyncio.sleep(FIRST_REPLY_AFTER)
                first = False
            if snapshot.chunk_count <= 1 or snapshot.chunk_index == snapshot.chunk_count - 1:
                yield pb.IngestAck(sequence=snapshot.sequence)


async def _streams_opened(first_ack_timeout: float, read: NodeRead) -> tuple[int, int]:
    """(streams the stand-in saw, the agent's last acked sequence) after :data:`WATCHED` s."""
    stand_in = LateFirstReply()
    handler = grpc.stream_stream_rpc_method_handler(
        stand_in.StreamSnapshots,
        request_deserializer=pb.NodeSnapshot.FromString,
        response_serializer=pb.IngestAck.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("calico_accountant.v1.Ingest", {"StreamSnapshots": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    slot: LatestSlot[NodeRead] = LatestSlot()
    slot.put(read)
    config = StreamerConfig(
        target=f"127.0.0.1:{port}",
        node="node-0",
        ack_timeout=ACK_TIMEOUT,
        first_ack_timeout=first_ack_timeout,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    streamer = Streamer(config, slot)
    task = asyncio.create_task(streamer.run())
    try:
        await asyncio.sleep(WATCHED)
        return stand_in.streams, streamer.acked_sequence
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(0)


async def _read(tmp_path: Path) -> NodeRead:
    (node,) = make_nodes(tmp_path, [(3, 2)])
    return await NodeReader([f"cat {node.path}"]).read()


def test_a_late_first_reply_keeps_the_stream(tmp_path: Path) -> None:
    read = asyncio.run(_read(tmp_path))
    streams, acked = asyncio.run(_streams_opened(first_ack_timeout=5.0, read=read))
    assert streams == 1 and acked >= 1  # one stream, its full snapshot acked: no reconnect


def test_with_the_ack_timeout_the_agent_would_have_reconnected(tmp_path: Path) -> None:
    read = asyncio.run(_read(tmp_path))
    streams, acked = asyncio.run(_streams_opened(first_ack_timeout=ACK_TIMEOUT, read=read))
    assert streams >= 2 and acked == 0  # every stream given up before its first reply
