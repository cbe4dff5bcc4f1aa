"""Leader election on a real etcd, the checkpoint fence, the health port, the flags' checks.

* one replica leads, the other stands by; a resignation hands over at once (no TTL wait);
* a leader learns it lost its lease: revoked (at the next keep-alive), or etcd unreachable
  (no later than the TTL after the last answered keep-alive);
* a deposed leader can no longer make its checkpoint current: the new leader's stays;
* ``/healthz`` is always 200, ``/readyz`` only while serving; ``calico_accountant_leader``;
* ``--leader-election etcd`` refuses a configuration two replicas cannot share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aggregator.checkpoint.etcd import EtcdCheckpointStore
from aggregator.checkpoint.stores import FencedOut
from aggregator.datastore.spec import EtcdSpec, parse_datastore_spec
from aggregator.election.etcd import EtcdElection
from aggregator.election.open import (
    LeaderElection,
    fence_checkpoints,
    open_election,
    parse_leader_election,
)
from aggregator.readiness import Phase, Readiness, serve_health
from tests.support.etcd_leases import revoke_lease_of
from tests.support.etcd_server import EtcdServer
from tests.support.scrape import http_get, metric_samples

_T = TypeVar("_T")


def _spec(etcd: EtcdServer) -> EtcdSpec:
    spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
    assert isinstance(spec, EtcdSpec)
    return spec


def _run(coroutine: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coroutine

    return asyncio.run(main())


def test_one_leads_the_other_stands_by_and_a_resignation_hands_over_at_once(etcd: EtcdServer) -> None:
    async def scenario() -> float:
        a, b = EtcdElection(_spec(etcd), "a", ttl=5), EtcdElection(_spec(etcd), "b", ttl=5)
        await asyncio.wait_for(a.campaign(), 5)
        standing_by = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.5)
        assert not standing_by.done() and b.holder == "a" and a.holder == "a"
        resigned = time.monotonic()
        await a.resign()
        await asyncio.wait_for(standing_by, 5)
        handover = time.monotonic() - resigned
        assert b.holder == "b" and b.create_revision > 0
        await b.resign()
        return handover

    assert _run(scenario()) < 1.0  # the key's deletion is watched: no TTL to wait for


def test_a_revoked_lease_is_lost_at_the_next_keep_alive(etcd: EtcdServer) -> None:
    async def scenario() -> tuple[str, float]:
        a = EtcdElection(_spec(etcd), "a", ttl=3)
        await a.campaign()
        revoked = time.monotonic()
        await revoke_lease_of(_spec(etcd), a.key)
        reason = await asyncio.wait_for(a.lost(), 5)
        await a.resign()
        return reason, time.monotonic() - revoked

    reason, after = _run(scenario())
    assert "revoked" in reason or "deleted" in reason
    assert after < 1.5  # keep-alives go every TTL/3


def test_a_leader_that_cannot_reach_etcd_knows_within_its_ttl(etcd: EtcdServer) -> None:
    async def scenario() -> tuple[str, float]:
        a = EtcdElection(_spec(etcd), "a", ttl=2)
        await a.campaign()
        await asyncio.sleep(0.3)
        stopped = time.monotonic()
        await asyncio.to_thread(etcd.stop)
        reason = await asyncio.wait_for(a.lost(), 10)
        lost_after = time.monotonic() - stopped
        await a.resign()
        return reason, lost_after

    try:
        reason, after = _run(scenario())
    finally:
        etcd.start()
    assert "TTL" in reason
    assert after <= 2.2  # the lease lives at least TTL after the last answered keep-alive


def test_a_deposed_leader_cannot_replace_the_new_leaders_checkpoint(etcd: EtcdServer) -> None:
    async def scenario() -> bytes | None:
        spec = _spec(etcd)
        a, b = EtcdElection(spec, "a", ttl=5), EtcdElection(spec, "b", ttl=5)
        store_a, store_b = EtcdCheckpointStore(spec), EtcdCheckpointStore(spec)
        await a.campaign()
        fence_checkpoints(a, store_a)
        await store_a.save(b"a, while leading")
        standing_by = asyncio.create_task(b.campaign())
        await revoke_lease_of(spec, a.key)  # a is deposed (it has not noticed yet)
        await asyncio.wait_for(standing_by, 5)
        fence_checkpoints(b, store_b)
        assert await store_b.load() == b"a, while leading"
        await store_b.save(b"b, the new leader")
        with pytest.raises(FencedOut):
            await store_a.save(b"a, deposed")
        kept = await store_b.load()
        for closing in (a.resign(), b.resign(), store_a.close(), store_b.close()):
            await closing
        return kept

    assert _run(scenario()) == b"b, the new leader"


def test_the_health_port_answers_by_phase() -> None:
    registry = CollectorRegistry()
    readiness = Readiness(registry)
    server = serve_health(readiness, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        for phase, detail, status in (
            (Phase.STARTING, "", 503),
            (Phase.STANDBY, "b; leader election on etcd://x/calico-accountant/v1/leader", 503),
            (Phase.SERVING, "b", 200),
            (Phase.LOST, "lost the leadership: the lease expired or was revoked", 503),
            (Phase.STOPPING, "", 503),
        ):
            readiness.set(phase, detail)
            assert http_get(f"{base}/healthz") == (200, "ok\n")
            code, body = http_get(f"{base}/readyz")
            assert (code, body.split(":")[0].strip()) == (status, phase.value)
            assert detail in body
            leader = metric_samples(generate_latest(registry).decode(), "calico_accountant_leader")
            assert leader[()] == (1.0 if phase is Phase.SERVING else 0.0)
        assert http_get(f"{base}/metrics")[0] == 404
    finally:
        server.close()


def test_leader_election_refuses_what_two_replicas_cannot_share(tmp_path: Path) -> None:
    etcd = parse_datastore_spec("etcd://127.0.0.1:2379")
    file = parse_datastore_spec(f"file:{tmp_path / 'cluster.yaml'}")
    assert open_election(LeaderElection.NONE, None, "") is None
    assert parse_leader_election("") is LeaderElection.NONE
    assert parse_leader_election("ETCD") is LeaderElection.ETCD
    assert parse_leader_election("Kubernetes") is LeaderElection.KUBERNETES
    with pytest.raises(ValueError, match="expected one of none, etcd, kubernetes"):
        parse_leader_election("consul")
    with pytest.raises(ValueError, match="needs --datastore etcd://"):
        open_election(LeaderElection.ETCD, file, "etcd")
    with pytest.raises(ValueError, match=r"needs --datastore etcd://.*none is set"):
        open_election(LeaderElection.ETCD, None, "etcd")
    with pytest.raises(
        ValueError, match=r"needs --checkpoint etcd.*shared by every replica \(not --checkpoint file:"
    ):
        open_election(LeaderElection.ETCD, etcd, f"file:{tmp_path / 'checkpoint'}")
    with pytest.raises(ValueError, match=r"needs --checkpoint etcd.*none is set"):
        open_election(LeaderElection.ETCD, etcd, "")
    with pytest.raises(ValueError, match="at least 2 seconds"):
        open_election(LeaderElection.ETCD, etcd, "etcd", ttl=1)
    election = open_election(LeaderElection.ETCD, etcd, "etcd", identity="pod-a")
    assert isinstance(election, EtcdElection) and election.identity == "pod-a"
