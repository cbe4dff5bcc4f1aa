"""Redirects between sharded aggregators, in one process over real gRPC on loopback: the
agent's streamer (node_agent.streamer) against two ingest servicers (aggregator.ingest)
whose ownership is set by the test.

* a replica that does not own the node acks with ``redirect_address`` without applying
  anything, the agent follows it and the owner applies its full snapshot;
* two replicas that disagree (each thinks the other owns the node) make the agent follow
  ``max_redirects`` redirects in a row, then go back to its configured address (counted);
* releasing a node (a hand-over) makes the holder forget it and redirect its stream at the
  next snapshot, which the new owner applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio

from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.ingest.servicer import IngestServicer
from aggregator.shard.router import Redirect
from node_agent.reader import NodeRead, NodeReader
from node_agent.streamer import LatestSlot, Streamer, StreamerConfig
from tests.support.streaming import make_nodes
from tests.support.waits import async_wait_until

NODE = "node-0"


@dataclass
class Owners:
    """Who each replica thinks owns the node: ``owner[replica]`` is the address it redirects
    to, or None when it thinks it owns the node."""

    owner: dict[str, str | None] = field(default_factory=dict)

    def policy(self, me: str) -> _Policy:
        return _Policy(self, me)


@dataclass
class _Policy:
    owners: Owners
    me: str

    def redirect_for(self, node: str) -> Redirect | None:
        target = self.owners.owner.get(self.me)
        return Redirect(target, "other") if target is not None else None

    def owns(self, node: str) -> bool:
        return self.owners.owner.get(self.me) is None


@dataclass
class Replica:
    accountant: Accountant
    servicer: IngestServicer
    server: grpc.aio.Server
    address: str


async def _replica(name: str, owners: Owners) -> Replica:
    accountant = Accountant(Catalog.empty())
    servicer = IngestServicer(accountant, shard=owners.policy(name), heartbeat=0.5)
    server = grpc.aio.server()
    servicer.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return Replica(accountant, servicer, server, f"127.0.0.1:{port}")


Scenario = Callable[[Owners, Replica, Replica, NodeRead], Awaitable[None]]


def _run(scenario: Scenario, tmp_path: Path) -> None:
    """``scenario`` against two fresh replicas, in an event loop of its own."""

    async def main() -> None:
        owners = Owners()
        a, b = await _replica("a", owners), await _replica("b", owners)
        try:
            await scenario(owners, a, b, await _read(tmp_path))
        finally:
            for replica in (a, b):
                await replica.server.stop(0)

    asyncio.run(main())


async def _read(tmp_path: Path) -> NodeRead:
    (node,) = make_nodes(tmp_path, [(3, 2)])
    return await NodeReader([f"cat {node.path}"]).read()


def _streamer(target: str, read: NodeRead) -> Streamer:
    slot: LatestSlot[NodeRead] = LatestSlot()
    slot.put(read)
    config = StreamerConfig(target=target, node=NODE, backoff_initial=0.05, backoff_max=0.2, max_redirects=3)
    return Streamer(config, slot)


def _count(streamer: Streamer, outcome: str) -> float:
    return float(streamer.metrics.redirects.labels(outcome)._value.get())


def test_a_redirect_sends_the_agent_to_the_owner(tmp_path: Path) -> None:
    _run(_redirect_followed, tmp_path)


async def _redirect_followed(owners: Owners, a: Replica, b: Replica, read: NodeRead) -> None:
    owners.owner = {"a": b.address, "b": None}
    streamer = _streamer(a.address, read)
    task = asyncio.create_task(streamer.run())
    try:
        await async_wait_until(
            lambda: streamer.acked_sequence > 0, what="the owner acked", timeout=10.0, interval=0.02
        )
        assert b.accountant.node_names() == [NODE]
        assert a.accountant.node_names() == []  # the redirected snapshot was not applied
        assert streamer.connected_to == b.address
        assert _count(streamer, "followed") == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_replicas_that_disagree_cost_bounded_redirects(tmp_path: Path) -> None:
    _run(_disagreement, tmp_path)


async def _disagreement(owners: Owners, a: Replica, b: Replica, read: NodeRead) -> None:
    owners.owner = {"a": b.address, "b": a.address}
    streamer = _streamer(a.address, read)
    task = asyncio.create_task(streamer.run())
    try:
        await async_wait_until(
            lambda: _count(streamer, "fallback") >= 1, what="a fallback", timeout=10.0, interval=0.02
        )
        assert _count(streamer, "followed") == 3
        assert a.accountant.node_names() == b.accountant.node_names() == []
        owners.owner = {"a": None, "b": a.address}  # they agree again: a owns it
        await async_wait_until(
            lambda: streamer.acked_sequence > 0, what="acked once they agree", timeout=10.0, interval=0.02
        )
        assert a.accountant.node_names() == [NODE]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_released_node_is_forgotten_and_its_stream_redirected(tmp_path: Path) -> None:
    _run(_hand_over, tmp_path)


async def _hand_over(owners: Owners, a: Replica, b: Replica, read: NodeRead) -> None:
    owners.owner = {"a": None, "b": a.address}
    streamer = _streamer(a.address, read)
    task = asyncio.create_task(streamer.run())
    try:
        await async_wait_until(
            lambda: streamer.acked_sequence > 0, what="a acked", timeout=10.0, interval=0.02
        )
        assert a.accountant.node_names() == [NODE]
        owners.owner = {"a": b.address, "b": None}  # the membership changed: b owns it now
        a.servicer.release_nodes([NODE])
        assert a.accountant.node_names() == []
        acked = streamer.acked_sequence
        streamer.slot.put(read)  # the agent's next read goes out on its old stream
        await async_wait_until(
            lambda: streamer.acked_sequence > acked and streamer.connected_to == b.address,
            what="moved",
            timeout=10.0,
            interval=0.02,
        )
        assert b.accountant.node_names() == [NODE]
        assert a.accountant.node_names() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
