"""The etcd datastore against a real etcd: list at a pinned revision, watch, restart,
compaction, pagination.  Objects are written the way libcalico-go stores them (§4.1 keys,
JSON values)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aetcd
import grpc.aio
import pytest
from aetcd import rpc

from aggregator.catalog.index import Catalog
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.etcd import EtcdDatastore, list_pinned
from aggregator.datastore.spec import EtcdSpec, parse_datastore_spec
from aggregator.model import PolicyKind
from tests.support.etcd_cluster import EtcdCluster
from tests.support.etcd_server import SKIP_REASON, EtcdServer, etcd_available
from tests.support.pki import TlsMaterial, make_tls_material
from tests.support.ports import free_port
from tests.support.waits import async_wait_until

pytestmark = pytest.mark.skipif(not etcd_available(), reason=SKIP_REASON)

PREFIX = "/calico/resources/v3/projectcalico.org/"


def veth(namespace: str, pod: str) -> str:
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def felix_hashed(prefix: str, suffix: str) -> str:
    import base64

    if len(prefix) + len(suffix) <= 28:
        return prefix + suffix
    digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode().rstrip("=")
    return prefix + "_" + digest[: 27 - len(prefix)]


def _metadata(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": "2026-11-25T10:00:00Z",
    }
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def wep_kv(namespace: str, pod: str, node: str = "node-a", ip: str = "169.254.5.1") -> tuple[str, str]:
    name = "-".join(p.replace("-", "--") for p in (node, "k8s", pod, "eth0"))
    value = {
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": _metadata(name, namespace, {"app": pod.rsplit("-", 1)[0],
                                                "projectcalico.org/namespace": namespace}),
        "spec": {
            "orchestrator": "k8s", "workload": "", "node": node, "containerID": "c0ffee", "pod": pod,
            "endpoint": "eth0", "serviceAccountName": "default", "ipNetworks": [f"{ip}/32"],
            "profiles": [f"kns.{namespace}", f"ksa.{namespace}.default"],
            "interfaceName": veth(namespace, pod), "mac": "ee:ee:ee:ee:ee:ee",
        },
    }  # fmt: skip
    return f"{PREFIX}workloadendpoints/{namespace}/{name}", json.dumps(value)


def np_kv(namespace: str, stored_name: str) -> tuple[str, str]:
    value = {
        "kind": "NetworkPolicy",
        "apiVersion": "projectcalico.org/v3",
        "metadata": _metadata(stored_name, namespace),
        "spec": {"tier": "default", "order": 100, "selector": "all()", "types": ["Ingress"],
                 "ingress": [{"action": "Allow"}]},
    }  # fmt: skip
    return f"{PREFIX}networkpolicies/{namespace}/{stored_name}", json.dumps(value)


def gnp_kv(stored_name: str, tier: str = "default") -> tuple[str, str]:
    value = {
        "kind": "GlobalNetworkPolicy",
        "apiVersion": "projectcalico.org/v3",
        "metadata": _metadata(stored_name),
        "spec": {"tier": tier, "order": 10, "selector": "all()", "types": ["Egress"]},
    }
    return f"{PREFIX}globalnetworkpolicies/{stored_name}", json.dumps(value)


def simple_kv(plural: str, name: str, kind: str) -> tuple[str, str]:
    value = {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": _metadata(name), "spec": {}}
    return f"{PREFIX}{plural}/{name}", json.dumps(value)


class Writer:
    """Writes to etcd the way Calico's clients do (aetcd, a separate connection)."""

    def __init__(self, etcd: EtcdServer) -> None:
        host, port = etcd.endpoint.rsplit(":", 1)
        self.client = aetcd.Client(host=host, port=int(port), timeout=10)

    async def put(self, key: str, value: str) -> None:
        await self.client.put(key.encode(), value.encode())

    async def put_many(self, items: list[tuple[str, str]], batch: int = 100) -> None:
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            await self.client.transaction(
                compare=[],
                success=[self.client.transactions.put(k.encode(), v.encode()) for k, v in chunk],
                failure=[],
            )

    async def delete(self, key: str) -> None:
        await self.client.delete(key.encode())

    async def revision(self) -> int:
        status = await self.client.get_prefix(b"/none")
        return int(status.header.revision)

    async def compact(self) -> int:
        revision = await self.revision()
        await self.client.compact(revision, physical=True)
        return revision

    async def close(self) -> None:
        await self.client.close()


async def wait_until(
    cache: DatastoreCache, check: Callable[[Catalog], bool], timeout: float = 10.0
) -> Catalog:
    def checked() -> Catalog | None:
        catalog = cache.flush()
        return catalog if check(catalog) else None

    return await async_wait_until(
        checked, timeout, interval=0.02, what=lambda: f"the catalog; status {cache.status()}"
    )


def make_source(etcd: EtcdServer, cache: DatastoreCache, **kwargs: Any) -> EtcdDatastore:
    spec = parse_datastore_spec(f"etcd://{etcd.endpoint}")
    assert isinstance(spec, EtcdSpec)
    kwargs.setdefault("backoff_initial", 0.05)
    kwargs.setdefault("backoff_max", 0.5)
    return EtcdDatastore(spec, cache, **kwargs)


# ---------------------------------------------------------------------------- tests


def test_list_then_watch_changes(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        writer = Writer(etcd)
        await writer.put_many(
            [
                wep_kv("shop", "web-1"),
                wep_kv("shop", "web-2", ip="169.254.5.2"),
                np_kv("shop", "default.allow-web"),
                np_kv("shop", "knp.default.allow-frontend"),
                gnp_kv("default.allow-dns"),
                gnp_kv("security.block-egress", tier="security"),
                simple_kv("tiers", "security", "Tier"),
                simple_kv("profiles", "kns.shop", "Profile"),
                simple_kv("ippools", "default-ipv4-ippool", "IPPool"),  # not read
                (f"{PREFIX}workloadendpoints/shop/garbage", "{not json"),
                (f"{PREFIX}networkpolicies/shop/wrong", json.dumps({"kind": "GlobalNetworkPolicy"})),
            ]
        )
        cache = DatastoreCache(source="etcd", min_rebuild_interval=0.01)
        source = make_source(etcd, cache)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=10)
            status = cache.status()
            assert status.objects == {"GlobalNetworkPolicy": 2, "NetworkPolicy": 2, "Profile": 1, "Tier": 1,
                                      "WorkloadEndpoint": 2}  # fmt: skip
            assert status.bad_values == {"not_json": 1, "kind_mismatch": 1}
            assert catalog.revision == await writer.revision()
            web1 = catalog.workload("node-a", veth("shop", "web-1"))
            assert web1.resolved and web1.app == "web" and web1.ips == ("169.254.5.1",)
            assert catalog.policy(felix_hashed("cali-pi-", "shop/default.allow-web")).name == "allow-web"
            assert catalog.policy(felix_hashed("cali-pi-", "knp/shop/allow-frontend")).kind == (
                "KubernetesNetworkPolicy"
            )
            blocked = catalog.policy(felix_hashed("cali-po-", "security/security.block-egress"))
            assert (blocked.name, blocked.tier) == ("block-egress", "security")
            await asyncio.wait_for(source.watching.wait(), 5)

            # Pod added.
            await writer.put(*wep_kv("shop", "web-3", node="node-b", ip="169.254.5.3"))
            catalog = await wait_until(cache, lambda c: c.workload("node-b", veth("shop", "web-3")).resolved)
            assert catalog.workload("node-b", veth("shop", "web-3")).ips == ("169.254.5.3",)
            # Pod deleted.
            await writer.delete(wep_kv("shop", "web-1")[0])
            await wait_until(cache, lambda c: not c.workload("node-a", veth("shop", "web-1")).resolved)
            # Policy renamed: Calico deletes the old object and creates the new one.
            old_chain = felix_hashed("cali-pi-", "default/shop/default.allow-web")
            new_chain = felix_hashed("cali-pi-", "default/shop/default.allow-web-v2")
            await writer.delete(np_kv("shop", "default.allow-web")[0])
            await writer.put(*np_kv("shop", "default.allow-web-v2"))
            catalog = await wait_until(cache, lambda c: c.policy(new_chain).name == "allow-web-v2")
            assert catalog.policy(old_chain).kind is PolicyKind.UNRESOLVED
            # Policy deleted.
            await writer.delete(gnp_kv("default.allow-dns")[0])
            await wait_until(
                cache, lambda c: c.policy("cali-pi-default.allow-dns").kind is PolicyKind.UNRESOLVED
            )
            # A good object overwritten with garbage is dropped and counted.
            await writer.put(wep_kv("shop", "web-2")[0], "[]")
            await wait_until(cache, lambda c: not c.workload("node-a", veth("shop", "web-2")).resolved)
            assert cache.status().bad_values["not_an_object"] == 1
            assert cache.revision == await writer.revision()
            assert cache.status().relists == 0
        finally:
            await source.stop()
            await writer.close()

    asyncio.run(scenario())


def test_poison_values_are_skipped_and_counted_and_the_watch_moves_on(etcd: EtcdServer) -> None:
    """A value nested thousands deep, and one of 1.4 MiB (under etcd's 1.5 MiB request limit),
    written while the aggregator watches: both skipped with a reason, and the next good
    object still arrives."""

    async def scenario() -> None:
        writer = Writer(etcd)
        await writer.put(*wep_kv("shop", "web-1"))
        cache = DatastoreCache()
        source = make_source(etcd, cache)
        source.start()
        try:
            await wait_until(cache, lambda c: c.workload("node-a", veth("shop", "web-1")).resolved)
            await asyncio.wait_for(source.watching.wait(), 5)
            key, _ = gnp_kv("default.poison")
            deep = '{"kind": "GlobalNetworkPolicy", "spec": ' + "[" * 50_000 + "]" * 50_000 + "}"
            await writer.put(key, deep)
            big = json.dumps({"kind": "GlobalNetworkPolicy", "spec": {"x": "y" * (1400 * 1024)}})
            await writer.put(gnp_kv("default.huge")[0], big)
            await writer.put(*wep_kv("shop", "web-2"))
            await wait_until(cache, lambda c: c.workload("node-a", veth("shop", "web-2")).resolved)
            bad = cache.status().bad_values
            assert bad.get("too_deep") == 1 and bad.get("too_large") == 1, bad
            assert cache.revision == await writer.revision()
        finally:
            await source.stop()
            await writer.close()

    asyncio.run(scenario())


def test_etcd_restart_mid_watch_loses_no_event(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        writer = Writer(etcd)
        await writer.put_many([wep_kv("shop", f"pod-{i}", ip=f"169.254.6.{i}") for i in range(20)])
        await writer.close()
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(etcd, cache)
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            await asyncio.wait_for(source.watching.wait(), 5)
            revision_before = source.revision

            etcd.stop(signal.SIGTERM)
            await asyncio.sleep(0.3)  # the watch breaks; the source backs off and retries
            assert not source.watching.is_set()
            await asyncio.to_thread(etcd.start)
            # Writes right after the restart, before the source has necessarily re-watched.
            writer = Writer(etcd)
            for i in range(20, 60):
                await writer.put(*wep_kv("shop", f"pod-{i}", ip=f"169.254.6.{i}"))
            for i in range(0, 10):
                await writer.delete(wep_kv("shop", f"pod-{i}")[0])
            final_revision = await writer.revision()
            await writer.close()

            def all_seen(c: Catalog) -> bool:
                return all(
                    c.workload("node-a", veth("shop", f"pod-{i}")).resolved == (i >= 10) for i in range(60)
                )

            await wait_until(cache, all_seen, timeout=15)
            status = cache.status()
            assert status.reconnects >= 1 and status.relists == 0  # resumed, not re-listed
            assert status.objects == {"WorkloadEndpoint": 50}
            assert source.revision == final_revision > revision_before
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_compaction_forces_a_relist(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        writer = Writer(etcd)
        await writer.put_many([wep_kv("shop", f"pod-{i}", ip=f"169.254.7.{i}") for i in range(5)])
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(etcd, cache)
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            await asyncio.wait_for(source.watching.wait(), 5)
            # The aggregator loses etcd for a while (stopped here), changes happen, and
            # etcd compacts its history past the revision the source had reached.
            await source.stop()
            stale = source.revision
            await writer.delete(wep_kv("shop", "pod-0")[0])
            await writer.put(*wep_kv("shop", "pod-new", ip="169.254.7.99"))
            compacted = await writer.compact()
            assert compacted > stale + 1
            source.start()

            def caught_up(c: Catalog) -> bool:
                return (
                    c.workload("node-a", veth("shop", "pod-new")).resolved
                    and not c.workload("node-a", veth("shop", "pod-0")).resolved
                )

            await wait_until(cache, caught_up)
            assert cache.status().relists == 1
            assert source.revision >= compacted
            # And the watch after the re-list works.
            await asyncio.wait_for(source.watching.wait(), 5)
            await writer.put(*wep_kv("shop", "pod-after", ip="169.254.7.100"))
            await wait_until(cache, lambda c: c.workload("node-a", veth("shop", "pod-after")).resolved)
        finally:
            await source.stop()
            await writer.close()

    asyncio.run(scenario())


def test_pagination_at_a_pinned_revision(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        writer = Writer(etcd)
        count = 1_200
        items = [
            wep_kv(f"ns{i % 7}", f"pod-{i:04d}", ip=f"169.254.{10 + i // 250}.{i % 250}")
            for i in range(count)
        ]
        await writer.put_many(items)
        listed_revision = await writer.revision()

        # Pages are read at the first page's revision even while keys change in between.
        prefix = f"{PREFIX}workloadendpoints/".encode()
        seen: list[bytes] = []
        revisions: set[int] = set()
        pages = 0
        async for page in list_pinned(writer.client.kvstub, prefix, page_size=500):
            pages += 1
            revisions.add(page.revision)
            seen.extend(kv.key for kv in page.kvs)
            if pages == 1:
                await writer.delete(sorted(k for k, _ in items)[-1])  # not yet listed
                await writer.put(*wep_kv("zz", "late", ip="169.254.99.1"))
        assert pages == 3 and revisions == {listed_revision}
        assert len(seen) == count == len(set(seen))
        assert b"late" not in b"".join(seen)

        # The source with small pages lists everything, then follows the later changes.
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(etcd, cache, page_size=100)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=20)
            assert cache.status().objects == {"WorkloadEndpoint": count}  # -1 deleted, +1 "late"
            assert len(catalog.workloads()) == count
            last = sorted(items)[-1]
            await writer.put(*last)
            await wait_until(cache, lambda c: len(c.workloads()) == count + 1)
        finally:
            await source.stop()
            await writer.close()

    asyncio.run(scenario())


def test_unreachable_etcd_is_retried_not_fatal() -> None:
    async def scenario() -> None:
        cache = DatastoreCache()
        spec = parse_datastore_spec(f"etcd://127.0.0.1:{free_port()},127.0.0.1:{free_port()}")
        assert isinstance(spec, EtcdSpec)
        source = EtcdDatastore(spec, cache, backoff_initial=0.05, backoff_max=0.1, request_timeout=1)
        task = source.start()
        await asyncio.sleep(0.8)
        assert not task.done() and not cache.synced
        assert cache.status().reconnects >= 2 and "UNAVAILABLE" in cache.status().last_error
        await source.stop()
        assert task.done()

    asyncio.run(scenario())


def test_tls_with_client_certificate(tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "pki")

    async def scenario(server: EtcdServer) -> None:
        cache = DatastoreCache()
        spec = parse_datastore_spec(
            f"etcd://{server.endpoint}", ca=tls.ca, cert=tls.client_cert, key=tls.client_key
        )
        assert isinstance(spec, EtcdSpec) and spec.tls is not None
        source = EtcdDatastore(spec, cache, backoff_initial=0.05, backoff_max=0.2)
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            assert cache.status().objects == {"Profile": 1}
        finally:
            await source.stop()

        # Without a client certificate the server refuses; the source keeps retrying.
        refused = DatastoreCache()
        no_cert = parse_datastore_spec(f"etcd://{server.endpoint}", ca=tls.ca)
        assert isinstance(no_cert, EtcdSpec)
        source = EtcdDatastore(no_cert, refused, backoff_initial=0.05, backoff_max=0.1, request_timeout=2)
        source.start()
        await asyncio.sleep(1.0)
        assert not refused.synced and refused.status().reconnects >= 1
        await source.stop()

    with EtcdServer(tls=tls) as server:
        # Seed through etcdctl-equivalent TLS access: the source under test is the only
        # TLS client we have, so write the key with a plain gRPC TLS channel.
        seed_over_tls(server, tls, *simple_kv("profiles", "kns.secure", "Profile"))
        asyncio.run(scenario(server))


def seed_over_tls(server: EtcdServer, tls: TlsMaterial, key: str, value: str) -> None:
    import grpc

    async def put() -> None:
        credentials = grpc.ssl_channel_credentials(
            tls.ca.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
        )
        async with grpc.aio.secure_channel(server.endpoint, credentials) as channel:
            await rpc.KVStub(channel).Put(rpc.PutRequest(key=key.encode(), value=value.encode()), timeout=10)

    asyncio.run(put())


def test_next_endpoint_is_used_when_the_first_is_down(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        writer = Writer(etcd)
        await writer.put(*wep_kv("shop", "web-1"))
        await writer.close()
        cache = DatastoreCache()
        spec = parse_datastore_spec(f"etcd://127.0.0.1:{free_port()},{etcd.endpoint}")
        assert isinstance(spec, EtcdSpec)
        source = EtcdDatastore(spec, cache, backoff_initial=0.05, backoff_max=0.1)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=10)
            assert catalog.workload("node-a", veth("shop", "web-1")).resolved
            assert cache.status().reconnects >= 1
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_a_watch_on_a_member_that_lost_its_leader_fails_fast_and_resumes(tmp_path: Path) -> None:
    """Require-leader metadata (``hasleader: true``) reaches etcd and does what it is for.

    Two members; the datastore lists and watches through member 0.  Member 1 is stopped:
    member 0 has no quorum, so no leader.  The datastore's watch is ended by etcd with
    "no leader" within a few election timeouts, while a control watch opened on the same
    member *without* the metadata stays open and silent.  Member 1 comes back and the
    datastore resumes from its revision: a change made after the partition arrives.
    """

    async def scenario(cluster: EtcdCluster) -> None:
        first, second = cluster.members
        writer = Writer(first)
        await writer.put(*wep_kv("shop", "web-1"))
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(first, cache, backoff_max=0.3)
        source.start()
        control_channel = grpc.aio.insecure_channel(first.endpoint)
        hold = asyncio.Event()

        async def control_requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(
                create_request=rpc.WatchCreateRequest(key=PREFIX.encode(), range_end=b"\xff")
            )
            await hold.wait()

        control = rpc.WatchStub(control_channel).Watch(control_requests())
        try:
            await cache.wait_synced(timeout=10)
            await asyncio.wait_for(source.watching.wait(), 5)
            assert (await asyncio.wait_for(control.read(), 5)).created
            revision_before = source.revision

            second.stop()
            started = time.monotonic()
            await async_wait_until(
                lambda: "no leader" in cache.status().last_error and not source.watching.is_set(),
                timeout=15,
                interval=0.05,
                what=lambda: f"the watch to fail; status {cache.status()}",
            )
            noticed = time.monotonic() - started
            assert noticed < 10, f"the partitioned member's watch took {noticed:.1f}s to fail"
            assert not control.done()  # without the metadata etcd keeps the watch open, silent

            second.start()
            await asyncio.wait_for(source.watching.wait(), 30)
            await writer.put(*wep_kv("shop", "web-2", ip="169.254.5.2"))
            await wait_until(cache, lambda c: c.workload("node-a", veth("shop", "web-2")).resolved, 15)
            assert source.revision > revision_before and cache.status().relists == 0
        finally:
            hold.set()
            control.cancel()
            await control_channel.close(None)
            await source.stop()
            await writer.close()

    with EtcdCluster(size=2) as cluster:
        asyncio.run(scenario(cluster))
