"""The hit fan-out (filters, bounded buffers, lost-N, replay window) and the gRPC services
(ingest rules, Watch/Snapshot/ListNodes/ServerStatus) on a real loopback server."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2
from prometheus_client import CollectorRegistry

from aggregator.hits.convert import counter_to_hit
from aggregator.hits.filters import HitFilterSpec
from aggregator.hits.hub import HitHub, HitMetrics
from aggregator.model import (
    CounterNames,
    PolicyGroup,
    PolicyIdentity,
    PolicyKind,
    ResolvedCounter,
    WorkloadIdentity,
)
from aggregator.series.views import Hits, ResolvedIncrease
from aggregator.server import Aggregator, AggregatorConfig
from calico_accountant.records import CounterRecord, Direction
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.v1 import snapshot_pb2_grpc as spb_grpc
from calico_accountant.wire.chunks import split_snapshot
from calico_accountant.wire.snapshots import SourceInfo, build_snapshot
from tests.support.accounting import FakeCatalog, accept, deny, no_policy_drop, policy_rule

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WEB = WorkloadIdentity("n1", "cali1", "shop", "web-1", "web")
DB = WorkloadIdentity("n2", "cali2", "data", "db-0", "db")
ALLOW = PolicyIdentity(PolicyKind.NETWORK_POLICY, "shop", "allow-web", "default", "default.allow-web")
GUARD = PolicyIdentity(PolicyKind.GLOBAL_NETWORK_POLICY, "", "guard", "security", "security.guard")


def increase(
    workload: WorkloadIdentity | None,
    record: CounterRecord,
    *,
    policy: PolicyIdentity | None = None,
    group: PolicyGroup | None = None,
) -> ResolvedIncrease:
    node = workload.node if workload else "n1"
    counter = ResolvedCounter(node, record.key, workload, policy, group)
    return ResolvedIncrease(CounterNames.of(counter), record.key, record.packets, record.bytes, T0)


def hits(increases: Sequence[ResolvedIncrease]) -> Hits:
    """``increases`` as one snapshot's hits (they share its read time)."""
    batch = Hits(increases[0].time if increases else T0)
    for one in increases:
        assert one.time == batch.time, "one snapshot's hits share its read time"
        batch.names.append(one.names)
        batch.keys.append(one.key)
        batch.packets.append(one.packets)
        batch.bytes.append(one.bytes)
    return batch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(**fields: Sequence[str] | int) -> HitFilterSpec:
    return HitFilterSpec.from_pb(hpb.HitFilter(**fields))  # type: ignore[arg-type]


def matching(hub_spec: HitFilterSpec, incs: Sequence[ResolvedIncrease]) -> list[tuple[str, int]]:
    hub = HitHub()
    hub.publish(hits(incs))
    return [(h.pod or h.node, h.packets) for h in hub.recent(hub_spec, None)]


SAMPLE = [
    increase(WEB, accept("cali1", "cali-pi-allow", 10), policy=ALLOW),
    increase(
        WEB, deny("cali1", "cali-pi-guard", 3, direction=Direction.EGRESS, tier="security"), policy=GUARD
    ),
    increase(DB, no_policy_drop("cali2", 7)),
    increase(None, policy_rule("cali-pi-guard", 0, "deny", 2, tier="security"), policy=GUARD),
    increase(
        DB,
        accept("cali2", "cali-gi-grp", 4),
        policy=PolicyGroup("cali-gi-grp", (ALLOW, GUARD)).as_identity("default"),
        group=PolicyGroup("cali-gi-grp", (ALLOW, GUARD)),
    ),
]


def test_hit_carries_resolved_names() -> None:
    hit = counter_to_hit(SAMPLE[1].counter, 3, 300, T0)
    assert (hit.node, hit.namespace, hit.pod, hit.app, hit.interface) == (
        "n1",
        "shop",
        "web-1",
        "web",
        "cali1",
    )
    assert (hit.verdict, hit.kind, hit.direction) == ("deny", spb.POLICY_DENY, spb.EGRESS)
    assert (hit.policy.kind, hit.policy.name, hit.policy.tier) == ("GlobalNetworkPolicy", "guard", "security")
    assert hit.time.ToDatetime(tzinfo=UTC) == T0
    drop = counter_to_hit(SAMPLE[2].counter, 7, 700, T0)
    assert not drop.HasField("policy") and drop.verdict == "deny"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, [("web-1", 10), ("web-1", 3), ("db-0", 7), ("n1", 2), ("db-0", 4)]),
        ({"node": ["n2"]}, [("db-0", 7), ("db-0", 4)]),
        ({"namespace": ["shop"]}, [("web-1", 10), ("web-1", 3)]),
        ({"pod": ["data/db-0"]}, [("db-0", 7), ("db-0", 4)]),
        ({"pod": ["web-1"], "verdict": ["deny"]}, [("web-1", 3)]),
        ({"app": ["db"], "min_packets": 5}, [("db-0", 7)]),
        ({"policy": ["guard"]}, [("web-1", 3), ("n1", 2), ("db-0", 4)]),  # the group has guard as member
        ({"policy": ["shop/allow-web"]}, [("web-1", 10), ("db-0", 4)]),
        ({"direction": ["egress"]}, [("web-1", 3)]),
        ({"verdict": ["accept"], "direction": ["ingress"]}, [("web-1", 10), ("db-0", 4)]),
    ],
)
def test_filters(fields: dict[str, Sequence[str] | int], expected: list[tuple[str, int]]) -> None:
    assert matching(spec(**fields), SAMPLE) == expected


def test_bad_filter_values_are_errors() -> None:
    with pytest.raises(ValueError, match="verdict"):
        spec(verdict=["allowed"])
    with pytest.raises(ValueError, match="direction"):
        spec(direction=["up"])


def test_a_full_buffer_loses_hits_in_place_and_counts_them() -> None:
    hub = HitHub(buffer_hits=5)
    sub = hub.subscribe(HitFilterSpec())
    web = [increase(WEB, accept("cali1", "cali-pi-allow", p), policy=ALLOW) for p in range(1, 10)]
    hub.publish(hits(web[:3]))
    hub.publish(hits(web[3:7]))  # 2 fit, 2 lost
    hub.publish(hits(web[7:8]))  # lost, merged into the same notice
    batches = sub.drain()
    assert [[h.packets for h in b.hits] for b in batches if b.hits] == [[1, 2, 3, 4, 5]]
    assert [b.lost for b in batches] == [0, 3]
    assert hub.metrics.lost._value.get() == 3
    hub.publish(hits(web[8:9]))
    assert [[h.packets for h in b.hits] for b in sub.drain()] == [[9]]


def test_loss_notice_sits_between_the_hits_around_it() -> None:
    hub = HitHub(buffer_hits=2)
    sub = hub.subscribe(HitFilterSpec())
    web = [increase(WEB, accept("cali1", "cali-pi-allow", p), policy=ALLOW) for p in range(1, 6)]
    hub.publish(hits(web[:4]))  # 1, 2 kept; 3, 4 lost
    first = sub.drain()
    hub.publish(hits(web[4:]))
    assert [(list(h.packets for h in b.hits), b.lost) for b in first + sub.drain()] == [
        ([1, 2], 0),
        ([], 2),
        ([5], 0),
    ]


def test_a_slow_subscriber_does_not_affect_a_fast_one() -> None:
    hub = HitHub(buffer_hits=10)
    slow, fast = hub.subscribe(HitFilterSpec()), hub.subscribe(HitFilterSpec())
    received = 0
    for round_ in range(50):
        hub.publish(hits([increase(WEB, accept("cali1", "cali-pi-allow", round_ + 1), policy=ALLOW)] * 4))
        received += sum(len(b.hits) for b in fast.drain())
    assert received == 200 and fast.lost == 0
    assert slow.lost == 190 and slow.buffered == 10


def test_replay_window_is_bounded_by_count_and_age() -> None:
    clock = Clock()
    hub = HitHub(window_hits=5, window_seconds=60, clock=clock)
    for p in range(1, 8):
        hub.publish(hits([increase(WEB, accept("cali1", "cali-pi-allow", p), policy=ALLOW)]))
        clock.now += 10
    assert [h.packets for h in hub.recent(HitFilterSpec(), None)] == [3, 4, 5, 6, 7]
    assert [h.packets for h in hub.recent(HitFilterSpec(), 25)] == [6, 7]
    clock.now += 15  # now 1085: hit 3 (kept at 1020) is older than 60 s
    assert [h.packets for h in hub.recent(HitFilterSpec(), None)] == [4, 5, 6, 7]


def test_the_count_bound_cuts_into_a_snapshot_and_subscribers_still_get_all_of_it() -> None:
    """The window keeps hits by snapshot: the count bound drops the oldest hits even from
    the middle of a snapshot's, and a live subscriber gets every hit whatever the window."""
    registry = CollectorRegistry()
    hub = HitHub(window_hits=4, window_seconds=600, clock=Clock(), metrics=HitMetrics(registry))
    live = hub.subscribe(HitFilterSpec())
    web = [increase(WEB, accept("cali1", "cali-pi-allow", p), policy=ALLOW) for p in range(1, 10)]
    hub.publish(hits(web[:6]))  # more than the window holds
    assert [h.packets for h in hub.recent(HitFilterSpec())] == [3, 4, 5, 6]
    hub.publish(hits(web[6:8]))
    assert [h.packets for h in hub.recent(HitFilterSpec())] == [5, 6, 7, 8]
    hub.publish(hits(web[8:]))
    assert [h.packets for h in hub.recent(HitFilterSpec())] == [6, 7, 8, 9]
    assert registry.get_sample_value("calico_accountant_hits_window") == 4
    delivered = [h.packets for batch in live.drain() for h in batch.hits]
    assert delivered == list(range(1, 10))
    no_window = HitHub(window_hits=0)
    assert no_window.publish(hits(web[:2])) == 2 and no_window.recent(HitFilterSpec()) == []


def test_a_consumer_picking_few_hits_holds_those_not_their_snapshots() -> None:
    """A Watch whose filter matches one hit of each snapshot buffers that hit, not the
    snapshot's columns: a slow such consumer must not keep every snapshot it saw alive."""
    hub = HitHub(window_hits=10, clock=Clock())
    picky = hub.subscribe(spec(min_packets=100))
    everything = hub.subscribe(HitFilterSpec(), capacity=50)
    for _ in range(300):
        snapshot = [
            increase(WEB, accept(f"cali{i}", "cali-pi-allow", 100 if i == 0 else 1), policy=ALLOW)
            for i in range(40)
        ]
        hub.publish(hits(snapshot))
        del snapshot
    gc.collect()
    alive = sum(1 for thing in gc.get_objects() if isinstance(thing, Hits))
    assert alive <= 3, f"{alive} snapshots' hits still held"  # the window's last; the first, taken whole
    assert picky.buffered == 300 and everything.buffered == 50 and everything.lost == 300 * 40 - 50
    assert [h.packets for batch in picky.drain() for h in batch.hits] == [100] * 300


def test_watch_without_follow_replays_and_ends() -> None:
    async def scenario() -> list[int]:
        hub = HitHub()
        hub.publish(hits(SAMPLE))
        out: list[int] = []
        async for batch in hub.watch(spec(verdict=["deny"]), None, follow=False):
            out += [h.packets for h in batch.hits]
        assert hub.watchers == 0
        return out

    assert asyncio.run(scenario()) == [3, 7, 2]


# --- the services on a real server ------------------------------------------------------------


async def _aggregator(**config: object) -> Aggregator:
    aggregator = Aggregator(
        AggregatorConfig(grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, health_port=0, **config)  # type: ignore[arg-type]
    )
    await aggregator.start()
    return aggregator


def _snapshots(
    node: str, records: Sequence[CounterRecord], sequence: int, full: bool, instance: str = "i1"
) -> list[spb.NodeSnapshot]:
    snapshot = build_snapshot(
        node=node,
        agent_instance_id=instance,
        sequence=sequence,
        read_time=T0 + timedelta(seconds=sequence),
        full=full,
        records=records,
        sources=[
            SourceInfo(
                dataplane=spb.NFTABLES, family=family, command=f"nft -j list table {name} calico", rules=9
            )
            for family, name in ((4, "ip"), (6, "ip6"))
        ],
    )
    return split_snapshot(snapshot, 4 * 1024 * 1024)


class Agent:
    """A hand-driven ingest stream."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = spb_grpc.IngestStub(channel).StreamSnapshots()  # type: ignore[no-untyped-call]

    async def send(self, messages: Sequence[spb.NodeSnapshot]) -> spb.IngestAck:
        for message in messages:
            await self.call.write(message)
        ack = await asyncio.wait_for(self.call.read(), 5)
        assert isinstance(ack, spb.IngestAck), ack
        return ack


def records(factor: int) -> list[CounterRecord]:
    return [
        accept("cali1", "cali-pi-allow", 10 * factor),
        deny("cali1", "cali-pi-allow", 3 * factor),
        no_policy_drop("cali2", 5 * factor),
        policy_rule("cali-pi-allow", 0, "allow", 10 * factor),
    ]


async def _collect(stream: AsyncIterator[hpb.HitBatch], into: list[hpb.HitBatch]) -> None:
    async for batch in stream:
        into.append(batch)


def test_services_end_to_end() -> None:
    async def scenario() -> None:
        aggregator = await _aggregator()
        try:
            target = f"127.0.0.1:{aggregator.grpc_port}"
            async with grpc.aio.insecure_channel(target) as channel:
                hits = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
                watched: list[hpb.HitBatch] = []
                watch = asyncio.create_task(_collect(hits.Watch(hpb.WatchRequest(follow=True)), watched))
                agent = Agent(channel)
                assert (await agent.send(_snapshots("n1", records(1), 1, True))).sequence == 1
                ack = await agent.send(_snapshots("n1", records(3), 2, False))
                assert ack.sequence == 2 and not ack.resync_requested
                for _ in range(100):
                    if sum(len(b.hits) for b in watched) >= 4:
                        break
                    await asyncio.sleep(0.02)
                got = sorted((h.kind, h.packets) for b in watched for h in b.hits)
                # the first snapshot is history (initial), the delta is the hit: 3x - 1x
                assert got == sorted(
                    [
                        (spb.POLICY_ACCEPT, 20),
                        (spb.POLICY_DENY, 6),
                        (spb.NO_POLICY_DROP, 10),
                        (spb.POLICY_RULE, 20),
                    ]
                )
                # a started aggregator counts from the first snapshot it sees (its baseline):
                # the totals are exactly the hits
                snap = await hits.Snapshot(hpb.SnapshotRequest())
                assert sorted((h.kind, h.packets) for h in snap.totals) == got
                denied = await hits.Snapshot(hpb.SnapshotRequest(filter=hpb.HitFilter(verdict=["deny"])))
                assert sorted(h.packets for h in denied.totals) == [6, 10]
                nodes = await hits.ListNodes(hpb.ListNodesRequest())
                assert [(n.node, n.connected, n.sequence, n.stale) for n in nodes.nodes] == [
                    ("n1", True, 2, False)
                ]
                # the node's tables were read from felix's nftables dataplane (both families)
                assert [list(n.dataplanes) for n in nodes.nodes] == [[spb.NFTABLES]]
                status = await hits.ServerStatus(hpb.ServerStatusRequest())
                assert (status.agents_connected, status.nodes_known, status.api_version) == (1, 1, 1)
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await hits.Snapshot(hpb.SnapshotRequest(filter=hpb.HitFilter(direction=["sideways"])))
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                replay: list[hpb.HitBatch] = []
                await _collect(
                    hits.Watch(
                        hpb.WatchRequest(
                            since=duration_pb2.Duration(seconds=60), filter=hpb.HitFilter(node=["n1"])
                        )
                    ),
                    replay,
                )
                assert sorted((h.kind, h.packets) for b in replay for h in b.hits) == got
                watch.cancel()
                await agent.call.done_writing()
            await asyncio.sleep(0.1)
            status_after = aggregator.accountant.node_views(0)
            assert [v.connected for v in status_after] == [False]
        finally:
            await aggregator.stop()

    asyncio.run(scenario())


def test_ingest_stream_rules() -> None:
    async def scenario() -> None:
        aggregator = await _aggregator()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}") as channel:
                agent = Agent(channel)
                ack = await agent.send(_snapshots("n1", records(1), 1, False))
                assert ack.resync_requested and "no full snapshot" in ack.message
                assert (await agent.send(_snapshots("n1", records(1), 2, True))).resync_requested is False
                gap = await agent.send(_snapshots("n1", records(2), 5, False))
                assert gap.resync_requested and "gap" in gap.message
                assert not (await agent.send(_snapshots("n1", records(2), 6, True))).resync_requested
                totals = {(t.counter.key.kind, t.packets) for t in aggregator.accountant.totals()}
                # counted from the first full snapshot (2 after 1), once: not doubled by the resend
                assert max(p for _, p in totals) == 10

                # a newer stream for the node supersedes this one
                newer = Agent(channel)
                assert not (
                    await newer.send(_snapshots("n1", records(2), 1, True, instance="i2"))
                ).resync_requested
                with pytest.raises(grpc.aio.AioRpcError) as superseded:
                    await agent.send(_snapshots("n1", records(3), 7, False))
                assert superseded.value.code() == grpc.StatusCode.ABORTED

                # another node's snapshot on this stream is malformed
                with pytest.raises(grpc.aio.AioRpcError) as wrong:
                    await newer.send(_snapshots("n9", records(3), 2, False, instance="i2"))
                assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "belongs to node" in (wrong.value.details() or "")

                # the server still serves
                status = await hpb_grpc.PolicyHitsStub(channel).ServerStatus(hpb.ServerStatusRequest())  # type: ignore[no-untyped-call]
                assert status.nodes_known == 1
        finally:
            await aggregator.stop()

    asyncio.run(scenario())


def test_catalog_changes_reach_snapshot_names() -> None:
    async def scenario() -> None:
        aggregator = await _aggregator()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}") as channel:
                agent = Agent(channel)
                await agent.send(_snapshots("n1", records(1), 1, True))  # the baseline
                await agent.send(_snapshots("n1", records(2), 2, True))
                hits = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
                before = await hits.Snapshot(hpb.SnapshotRequest(filter=hpb.HitFilter(namespace=["shop"])))
                assert not before.totals
                aggregator.accountant.set_resolver(
                    FakeCatalog()
                    .add_pod("n1", "cali1", "shop", "web-1", "web")
                    .add_policy("cali-pi-allow", "allow-web", "shop")
                )
                after = await hits.Snapshot(
                    hpb.SnapshotRequest(filter=hpb.HitFilter(policy=["shop/allow-web"]))
                )
                assert {(h.pod, h.verdict, h.packets) for h in after.totals if h.pod} == {
                    ("web-1", "accept", 10),
                    ("web-1", "deny", 3),
                }
        finally:
            await aggregator.stop()

    asyncio.run(scenario())


def test_health_and_reflection_are_served() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def scenario() -> None:
        aggregator = await _aggregator()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", "calico_accountant.v1.Ingest", "calico_accountant.v1.PolicyHits"):
                    answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                    assert answer.status == health_pb2.HealthCheckResponse.SERVING
                reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                async for response in reflect.ServerReflectionInfo(iter([request])):
                    names = {s.name for s in response.list_services_response.service}
                    assert {"calico_accountant.v1.Ingest", "calico_accountant.v1.PolicyHits"} <= names
                    break
        finally:
            await aggregator.stop()

    asyncio.run(scenario())
