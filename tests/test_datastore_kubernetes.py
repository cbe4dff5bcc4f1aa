"""The Kubernetes API datastore (KDD) against a protocol-faithful stand-in API server.

The server (:mod:`tests.support.kube_api`) is NOT a kube-apiserver: it speaks list/watch over
HTTPS with a bearer token the way kube-apiserver does (resourceVersion, continue paging,
field selectors, chunked watch streams, bookmarks, 410 Expired, 429 + Retry-After, cut
connections) and serves objects shaped like real API output.  The client is the real one:
lightkube's configuration and HTTP client, our list/watch loop, the translation and the cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregator.catalog.index import Catalog
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.kubernetes import KubernetesDatastore
from aggregator.datastore.sources import open_datastore
from aggregator.datastore.spec import KubernetesSpec, parse_datastore_spec
from aggregator.model import PolicyKind
from calico_accountant.felix.naming import length_limited_id, veth_name
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import (
    calico_policy,
    calico_tier,
    namespace,
    network_policy,
    pod,
    service_account,
)
from tests.support.waits import async_wait_until

PODS = "/api/v1/pods"
NAMESPACES = "/api/v1/namespaces"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiServer]:
    with KubeApiServer(tmp_path) as server:
        server.put(
            namespace("shop", {"team": "web"}),
            namespace("kube-system"),
            service_account("shop", "default"),
            service_account("shop", "checkout"),
            pod("shop", "web-1", "node-a", "10.1.0.1", {"app": "web"}),
            pod("shop", "web-2", "node-a", "10.1.0.2", {"app": "web"}),
            pod("shop", "checkout-1", "node-b", "10.1.0.3", {"app": "checkout"}, service_account="checkout"),
            pod("shop", "batch-1", "node-b", "10.1.0.4", {"app": "batch"}, phase="Succeeded"),
            pod("shop", "pending-1", None, None, {"app": "web"}),
            pod("kube-system", "calico-node-abcde", "node-a", "172.18.0.3", host_network=True),
            network_policy("shop", "allow-web", {"app": "web"}, from_pods={"app": "checkout"}, ports=[8080]),
            calico_tier("security", 100),
            calico_policy(
                "GlobalNetworkPolicy", "default.allow-dns", {"tier": "default"}, typed_name="allow-dns"
            ),
        )
        yield server


def make_source(
    api: KubeApiServer, cache: DatastoreCache, token: str | None = None, **kwargs: Any
) -> KubernetesDatastore:
    spec = parse_datastore_spec("kubernetes", kubeconfig=str(api.write_kubeconfig(token=token)))
    assert isinstance(spec, KubernetesSpec)
    kwargs.setdefault("page_size", 2)
    kwargs.setdefault("backoff_initial", 0.05)
    kwargs.setdefault("backoff_max", 0.5)
    kwargs.setdefault("watch_timeout", (2, 3))
    return KubernetesDatastore(spec, cache, **kwargs)


async def wait_for(cache: DatastoreCache, check: Callable[[Catalog], bool], timeout: float = 10.0) -> Catalog:
    def checked() -> Catalog | None:
        catalog = cache.flush()
        return catalog if check(catalog) else None

    return await async_wait_until(
        checked, timeout, interval=0.02, what=lambda: f"the catalog; {cache.status()}"
    )


def pods_of(catalog: Catalog) -> set[tuple[str, str, str]]:
    return {(w.node, w.pod, w.app) for w in catalog.workloads()}


def knp_chain(namespace_name: str, name: str) -> str:
    """v3.0-v3.28 ingress chain of a Kubernetes NetworkPolicy (§1.3)."""
    return length_limited_id("cali-pi-", f"{namespace_name}/knp.default.{name}")


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


def test_list_then_watch_follows_pods_namespaces_and_policies(api: KubeApiServer) -> None:
    async def scenario() -> None:
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=10)
            # Only pods felix programs: not the finished one (field selector), nor the pending
            # or host-network ones (no endpoint).
            assert pods_of(catalog) == {
                ("node-a", "web-1", "web"), ("node-a", "web-2", "web"), ("node-b", "checkout-1", "checkout")
            }  # fmt: skip
            web1 = catalog.workload("node-a", veth_name("shop", "web-1"))
            assert web1.resolved and web1.ips == ("10.1.0.1",) and web1.service_account == "default"
            assert catalog.policy(knp_chain("shop", "allow-web")).name == "allow-web"
            assert catalog.policy("cali-pi-default.allow-dns").name == "allow-dns"
            assert {"kns.shop", "ksa.shop.checkout", "kns.kube-system"} <= catalog.profiles()
            pod_lists = [r for r in api.requests if r.path == PODS and not r.watch]
            assert len(pod_lists) >= 2 and "continue" in pod_lists[1].query  # paged, 2 a page
            assert all(
                r.query["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed" for r in pod_lists
            )

            # Pod added.
            api.put(pod("shop", "web-3", "node-b", "10.1.0.5", {"app": "web"}))
            await wait_for(cache, lambda c: ("node-b", "web-3", "web") in pods_of(c))
            # Pod relabelled.
            api.put(pod("shop", "web-2", "node-a", "10.1.0.2", {"app": "frontend"}))
            await wait_for(cache, lambda c: ("node-a", "web-2", "frontend") in pods_of(c))
            # Pod deleted, then re-created with the same name on another node (a StatefulSet's).
            api.delete(pod("shop", "web-1", "node-a", "10.1.0.1"))
            await wait_for(cache, lambda c: not any(p == "web-1" for _, p, _ in pods_of(c)))
            api.put(pod("shop", "web-1", "node-c", "10.1.9.9", {"app": "web"}))
            catalog = await wait_for(cache, lambda c: ("node-c", "web-1", "web") in pods_of(c))
            assert ("node-a", "web-1", "web") not in pods_of(catalog)
            assert catalog.workload("node-c", veth_name("shop", "web-1")).ips == ("10.1.9.9",)
            # A pod that finishes leaves the field selector: the server sends DELETED.
            api.put(pod("shop", "checkout-1", "node-b", "10.1.0.3", {"app": "checkout"}, phase="Succeeded"))
            await wait_for(cache, lambda c: not any(p == "checkout-1" for _, p, _ in pods_of(c)))
            # A pending pod is scheduled and gets its IP.
            api.put(pod("shop", "pending-1", "node-c", "10.1.0.7", {"app": "web"}))
            await wait_for(cache, lambda c: ("node-c", "pending-1", "web") in pods_of(c))
            # A namespace's labels change: its kns. profile carries them.
            api.put(namespace("shop", {"team": "payments"}))

            def team(label: str) -> bool:
                profiles = [o for o in cache.objects() if o.kind == "Profile" and o.name == "kns.shop"]
                return len(profiles) == 1 and profiles[0].spec["labelsToApply"]["pcns.team"] == label

            await async_wait_until(lambda: team("payments"), 10)
            # A NetworkPolicy renamed: Kubernetes deletes one object and creates another.
            api.delete(network_policy("shop", "allow-web"))
            api.put(network_policy("shop", "allow-web-v2", {"app": "web"}))
            catalog = await wait_for(
                cache, lambda c: c.policy(knp_chain("shop", "allow-web-v2")).name == "allow-web-v2"
            )
            assert catalog.policy(knp_chain("shop", "allow-web")).kind is PolicyKind.UNRESOLVED
            # Calico CRDs come and go by their stored names.
            api.put(calico_policy("GlobalNetworkPolicy", "security.block-egress", {"tier": "security"}))
            chain = length_limited_id("cali-po-", "security/security.block-egress")
            catalog = await wait_for(cache, lambda c: c.policy(chain).name == "block-egress")
            assert catalog.policy(chain).tier == "security"
            api.delete(calico_policy("GlobalNetworkPolicy", "default.allow-dns", {}))
            await wait_for(
                cache, lambda c: c.policy("cali-pi-default.allow-dns").kind is PolicyKind.UNRESOLVED
            )

            # Watches ended by timeoutSeconds were resumed, never re-listed; an idle type's
            # resourceVersion moved on with bookmarks.
            status = cache.status()
            assert status.relists == 0 and status.bad_values == {}
            assert all(r.query["allowWatchBookmarks"] == "true" for r in api.watch_requests(PODS))
            tiers = "tiers.crd.projectcalico.org"
            await async_wait_until(lambda: int(source.resource_versions()[tiers]) >= api.store.revision, 10)
        finally:
            await source.stop()

    run(scenario)


def test_a_broken_watch_resumes_from_the_last_resource_version(api: KubeApiServer) -> None:
    async def scenario() -> None:
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache, watch_timeout=(60, 60))
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            await async_wait_until(lambda: api.open_watches(PODS) == 1, 10)
            api.put(pod("shop", "web-3", "node-b", "10.1.0.5", {"app": "web"}))
            await wait_for(cache, lambda c: ("node-b", "web-3", "web") in pods_of(c))
            seen = source.resource_versions()["pods"]
            watches_before = len(api.watch_requests(PODS))

            api.drop_watches()  # every stream cut in the middle of a chunk
            await async_wait_until(lambda: len(api.watch_requests(PODS)) > watches_before, 10)
            resumed = api.watch_requests(PODS)[watches_before]
            assert int(resumed.query["resourceVersion"]) >= int(seen)
            api.put(pod("shop", "web-4", "node-b", "10.1.0.6", {"app": "web"}))
            await wait_for(cache, lambda c: ("node-b", "web-4", "web") in pods_of(c))
            status = cache.status()
            assert status.reconnects >= 1 and status.relists == 0
            assert "incomplete chunked read" in status.last_error or "closed" in status.last_error
        finally:
            await source.stop()

    run(scenario)


def test_a_watch_that_expires_is_relisted(api: KubeApiServer) -> None:
    async def scenario() -> None:
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache, watch_timeout=(60, 60))
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            await async_wait_until(lambda: api.open_watches(PODS) == 1, 10)
            lists_before = len([r for r in api.requests if r.path == PODS and not r.watch])
            compacted = api.expire_watches()  # ERROR 410 Expired on every open watch
            await async_wait_until(lambda: cache.status().relists >= 1, 10)
            api.put(pod("shop", "web-3", "node-b", "10.1.0.5", {"app": "web"}))
            await wait_for(cache, lambda c: ("node-b", "web-3", "web") in pods_of(c))
            relists = [r for r in api.requests if r.path == PODS and not r.watch][lists_before:]
            assert relists and "continue" not in relists[0].query
            assert int(api.watch_requests(PODS)[-1].query["resourceVersion"]) >= compacted
        finally:
            await source.stop()

    run(scenario)


def test_a_deletion_missed_while_disconnected_is_found_by_the_relist(api: KubeApiServer) -> None:
    """The watch breaks; meanwhile a pod goes and the history is compacted, so the resumed
    watch is refused (410): the re-list finds the pod gone and the cache drops it."""

    async def scenario() -> None:
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache, backoff_initial=1.0, backoff_max=1.0, watch_timeout=(60, 60))
        source.start()
        try:
            await cache.wait_synced(timeout=10)
            await async_wait_until(lambda: api.open_watches(PODS) == 1, 10)
            api.drop_watches()
            api.delete(pod("shop", "web-2", "node-a", "10.1.0.2"))
            api.put(pod("shop", "web-9", "node-a", "10.1.0.9", {"app": "web"}))
            api.store.compact()
            catalog = await wait_for(cache, lambda c: ("node-a", "web-9", "web") in pods_of(c))
            assert not any(p == "web-2" for _, p, _ in pods_of(catalog))
            assert cache.status().relists >= 1
        finally:
            await source.stop()

    run(scenario)


def test_a_list_whose_continue_token_expired_starts_again(api: KubeApiServer) -> None:
    async def scenario() -> None:
        api.expire_next_continue(PODS)
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=10)
            assert {p for _, p, _ in pods_of(catalog)} == {"web-1", "web-2", "checkout-1"}
            lists = [r for r in api.requests if r.path == PODS and not r.watch]
            assert "continue" in lists[1].query and "continue" not in lists[2].query  # 410, then anew
            assert cache.status().relists == 0
        finally:
            await source.stop()

    run(scenario)


def test_429_waits_for_retry_after_and_5xx_backs_off(api: KubeApiServer) -> None:
    async def scenario() -> None:
        api.throttle(PODS, count=1, retry_after=1.0)
        api.fail(NAMESPACES, status=503, count=2)
        cache = DatastoreCache(min_rebuild_interval=0.01)
        source = make_source(api, cache, watch_timeout=(60, 60))
        started = time.monotonic()
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=10)
            assert time.monotonic() - started >= 0.9  # the first pods request waited Retry-After
            assert "kns.shop" in catalog.profiles() and ("node-a", "web-1", "web") in pods_of(catalog)
            lists = [r for r in api.requests if r.path == PODS and not r.watch]
            assert lists[1].at - lists[0].at >= 0.9 and "continue" not in lists[1].query
            assert len([r for r in api.requests if r.path == NAMESPACES and not r.watch]) == 3
            # A throttled re-watch waits too.
            await async_wait_until(lambda: api.open_watches(PODS) == 1, 10)
            watches = len(api.watch_requests(PODS))
            api.throttle(PODS, count=1, retry_after=1.0)
            api.drop_watches()
            await async_wait_until(lambda: len(api.watch_requests(PODS)) >= watches + 2, 10)
            refused, accepted = api.watch_requests(PODS)[watches : watches + 2]
            assert accepted.at - refused.at >= 0.9
            assert cache.status().relists == 0
        finally:
            await source.stop()

    run(scenario)


def test_a_wrong_token_is_retried_and_reported(api: KubeApiServer) -> None:
    async def scenario() -> None:
        cache = DatastoreCache()
        source = make_source(api, cache, token="not-the-token")
        source.start()
        try:
            with pytest.raises(TimeoutError):
                await cache.wait_synced(timeout=1.0)
            assert "401" in cache.status().last_error
        finally:
            await source.stop()

    run(scenario)


def test_the_spec_and_a_missing_kubeconfig(tmp_path: Path) -> None:
    spec = parse_datastore_spec(
        "kubernetes", kubeconfig=f"{tmp_path}/a:{tmp_path}/b", interface_prefix="tap,cali"
    )
    assert spec == KubernetesSpec(tmp_path / "a", "tap,cali")
    assert parse_datastore_spec("kdd") == KubernetesSpec(None, "cali")
    with pytest.raises(ValueError, match="interface-prefix"):
        parse_datastore_spec("kubernetes", interface_prefix=",")
    with pytest.raises(ValueError, match="cannot load"):
        open_datastore(KubernetesSpec(tmp_path / "missing"), DatastoreCache())


def test_the_cluster_role_grants_exactly_what_is_listed_and_watched() -> None:
    """deploy/overlays/kubernetes (its rbac.yaml), rendered by kubectl kustomize: get/list/watch on
    every resource type the datastore reads, no more, for the aggregator it deploys."""
    from aggregator.datastore.kdd_resources import KUBE_RESOURCES
    from tests.support.kustomize import DEPLOY, container, find, kustomize

    documents = kustomize(DEPLOY / "overlays" / "kubernetes")
    role = find(documents, "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {(r.group, r.plural) for r in KUBE_RESOURCES}
    assert all(sorted(rule["verbs"]) == ["get", "list", "watch"] for rule in role["rules"])
    binding = find(documents, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    deployment = find(documents, "Deployment")
    account = find(documents, "ServiceAccount", deployment["spec"]["template"]["spec"]["serviceAccountName"])
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert {"name": "CALICO_ACCOUNTANT_DATASTORE", "value": "kubernetes"} in container(
        deployment, "aggregator"
    )["env"]
