"""What a ``Watch`` replays: ``first``/``last``, ``since_time``/``until`` by read time,
``exclude`` filters (``observe --not``), the rule of a rule hit, and the request checks;
on the hub directly and over real gRPC on loopback."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import grpc.aio
import pytest

from aggregator.hits.filters import HitFilterSpec, ReplayWindow
from aggregator.hits.hub import HitHub
from aggregator.series.views import ResolvedIncrease
from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from tests.support.accounting import accept
from tests.test_hits import (
    ALLOW,
    SAMPLE,
    T0,
    WEB,
    Agent,
    _aggregator,
    _collect,
    _snapshots,
    hits,
    increase,
    records,
)


def _at(seconds: int, packets: int) -> ResolvedIncrease:
    """A hit of ``packets`` read ``seconds`` after T0."""
    base = increase_of(packets)
    return ResolvedIncrease(base.names, base.key, base.packets, base.bytes, T0 + timedelta(seconds=seconds))


def increase_of(packets: int) -> ResolvedIncrease:
    return increase(WEB, accept("cali1", "cali-pi-allow", packets), policy=ALLOW)


def _hub_with_timeline() -> HitHub:
    hub = HitHub()
    for second, packets in ((0, 1), (10, 2), (20, 3), (30, 4), (40, 5)):
        hub.publish(hits([_at(second, packets)]))  # a snapshot each
    return hub


def _packets(hub: HitHub, window: ReplayWindow, spec: HitFilterSpec | None = None) -> list[int]:
    return [hit.packets for hit in hub.recent(spec or HitFilterSpec(), window)]


def test_first_and_last_keep_the_oldest_and_newest() -> None:
    hub = _hub_with_timeline()
    assert _packets(hub, ReplayWindow(last=2)) == [4, 5]
    assert _packets(hub, ReplayWindow(first=2)) == [1, 2]
    assert _packets(hub, ReplayWindow(last=99)) == [1, 2, 3, 4, 5]
    assert _packets(hub, ReplayWindow()) == [1, 2, 3, 4, 5]


def test_since_time_and_until_bound_by_read_time() -> None:
    hub = _hub_with_timeline()
    start, end = (T0 + timedelta(seconds=10)).timestamp(), (T0 + timedelta(seconds=30)).timestamp()
    assert _packets(hub, ReplayWindow(since_time=start)) == [2, 3, 4, 5]
    assert _packets(hub, ReplayWindow(until=end)) == [1, 2, 3]  # until is exclusive
    assert _packets(hub, ReplayWindow(since_time=start, until=end, last=1)) == [3]


def test_exclusions_leave_out_what_any_of_them_matches() -> None:
    hub = HitHub()
    hub.publish(hits(SAMPLE))
    no_denies = HitFilterSpec.from_request(hpb.HitFilter(), [hpb.HitFilter(verdict=["deny"])])
    assert sorted(h.packets for h in hub.recent(no_denies)) == [4, 10]
    neither = HitFilterSpec.from_request(
        hpb.HitFilter(), [hpb.HitFilter(verdict=["deny"]), hpb.HitFilter(namespace=["data"])]
    )
    assert [h.packets for h in hub.recent(neither)] == [10]
    shop_not_web = HitFilterSpec.from_request(
        hpb.HitFilter(namespace=["shop"]), [hpb.HitFilter(pod=["web-1"])]
    )
    assert hub.recent(shop_not_web) == []
    assert not no_denies.everything
    with pytest.raises(ValueError, match="needs at least one condition"):
        HitFilterSpec.from_request(hpb.HitFilter(), [hpb.HitFilter()])


@pytest.mark.parametrize(
    ("request_fields", "problem"),
    [
        ({"first": 1, "last": 1}, "first or last"),
        ({"first": 3, "follow": True}, "cannot be combined with follow"),
        ({"until": T0, "follow": True}, "cannot be combined with follow"),
        ({"since": timedelta(minutes=1), "since_time": T0}, "since or since_time"),
    ],
)
def test_replay_requests_that_cannot_work(request_fields: dict[str, object], problem: str) -> None:
    request = hpb.WatchRequest(**request_fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        ReplayWindow.from_request(request)


def test_a_rule_hit_names_its_rule() -> None:
    hub = HitHub()
    hub.publish(hits(SAMPLE))
    rule_hits = [h for h in hub.recent(HitFilterSpec()) if h.kind == spb.POLICY_RULE]
    assert [(h.rule.index, h.rule.action, h.policy.name) for h in rule_hits] == [(0, "deny", "guard")]
    others = [h for h in hub.recent(HitFilterSpec()) if h.kind != spb.POLICY_RULE]
    assert others and not any(h.HasField("rule") for h in others)


def test_replay_options_over_grpc() -> None:
    """Two deltas applied by a real aggregator: last/first/exclude/since_time over the
    wire, and INVALID_ARGUMENT for a request that cannot work."""

    async def scenario() -> None:
        aggregator = await _aggregator()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}") as channel:
                hits = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
                agent = Agent(channel)
                await agent.send(_snapshots("n1", records(1), 1, True))
                await agent.send(_snapshots("n1", records(2), 2, False))  # read at T0+2s
                await agent.send(_snapshots("n1", records(5), 3, False))  # read at T0+3s

                async def replay(**fields: object) -> list[tuple[int, int]]:
                    got: list[hpb.HitBatch] = []
                    await _collect(hits.Watch(hpb.WatchRequest(**fields)), got)  # type: ignore[arg-type]
                    return [(h.kind, h.packets) for b in got for h in b.hits]

                everything = await replay()
                assert len(everything) == 8
                assert await replay(last=3) == everything[-3:]
                assert await replay(first=2) == everything[:2]
                later = hpb.WatchRequest().since_time
                later.FromDatetime(T0 + timedelta(seconds=3))
                assert await replay(since_time=later) == everything[4:]
                assert await replay(until=later) == everything[:4]
                no_rules = await replay(exclude=[hpb.HitFilter(verdict=["deny"])])
                assert no_rules and all(kind != spb.POLICY_DENY for kind, _ in no_rules)
                assert {kind for kind, _ in no_rules} == {spb.POLICY_ACCEPT, spb.POLICY_RULE}
                rule = [h for h in (await hits.Snapshot(hpb.SnapshotRequest())).totals if h.HasField("rule")]
                assert [(h.rule.index, h.rule.action) for h in rule] == [(0, "allow")]
                excluded = await hits.Snapshot(hpb.SnapshotRequest(exclude=[hpb.HitFilter(node=["n1"])]))
                assert list(excluded.totals) == []
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await replay(first=1, follow=True)
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                with pytest.raises(grpc.aio.AioRpcError) as empty:
                    await replay(exclude=[hpb.HitFilter()])
                assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                await agent.call.done_writing()
        finally:
            await aggregator.stop()

    asyncio.run(scenario())
