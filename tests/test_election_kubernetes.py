"""Leader election on a ``coordination.k8s.io`` Lease and the checkpoint in ConfigMaps.

Against the stand-in API server of :mod:`tests.support.kube_api` -- a protocol-faithful
stand-in, NOT a kube-apiserver (none can be installed on the test machines): HTTPS, a
bearer token, objects created, replaced on a resourceVersion precondition (``409``
otherwise) and deleted as kube-apiserver does.  The client is the real one (lightkube's
configuration and HTTP client).

* one replica leads, the others stand by; racing campaigns make exactly one leader;
* a resignation hands over at once; a dead leader's Lease is taken after its duration, as
  the standby measured it;
* a leader learns it lost: the Lease taken (at the next renewal), or the API unreachable
  (no later than the TTL after its last renewal);
* the checkpoint: chunked into ConfigMaps, switched by one pointer, other generations
  deleted; a deposed leader can no longer make its checkpoint current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from aggregator.checkpoint.kubernetes import POINTER, KubernetesCheckpointStore, configmap_path
from aggregator.checkpoint.stores import FencedOut
from aggregator.datastore.spec import KubernetesSpec
from aggregator.election.kubernetes import DEFAULT_LEASE, KubernetesLeaseElection, lease_path
from aggregator.election.open import LeaderElection, fence_checkpoints, open_election
from tests.support.kube_api import KubeApiServer
from tests.support.kube_writes import route_object

_T = TypeVar("_T")
NAMESPACE = "calico-accountant"
LEASE = lease_path(NAMESPACE, DEFAULT_LEASE)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiServer]:
    with KubeApiServer(tmp_path) as server:
        yield server


def _spec(api: KubeApiServer) -> KubernetesSpec:
    return KubernetesSpec(kubeconfig=api.write_kubeconfig())


def _election(api: KubeApiServer, identity: str, ttl: int = 2) -> KubernetesLeaseElection:
    return KubernetesLeaseElection(_spec(api), identity, namespace=NAMESPACE, ttl=ttl, retry=0.1)


def _run(coroutine: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coroutine

    return asyncio.run(main())


def _lease(api: KubeApiServer) -> dict[str, object]:
    found = api.store.current("/apis/coordination.k8s.io/v1/leases", (NAMESPACE, DEFAULT_LEASE))
    assert found is not None
    return dict(found["spec"])


def test_racing_replicas_make_one_leader_and_a_resignation_hands_over_at_once(api: KubeApiServer) -> None:
    async def scenario() -> float:
        replicas = [_election(api, name, ttl=5) for name in ("a", "b", "c")]
        campaigns = {asyncio.create_task(r.campaign()): r for r in replicas}
        done, pending = await asyncio.wait(campaigns, timeout=3, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.5)  # the others keep trying, and must keep losing
        assert len(done) == 1 and all(not task.done() for task in pending)
        leader = campaigns[done.pop()]
        assert _lease(api)["holderIdentity"] == leader.identity
        assert all(r.holder == leader.identity for r in replicas)
        assert leader.epoch == _lease(api)["leaseTransitions"]
        resigned = time.monotonic()
        await leader.resign()
        done, pending = await asyncio.wait(pending, timeout=3, return_when=asyncio.FIRST_COMPLETED)
        handover = time.monotonic() - resigned
        successor = campaigns[done.pop()]
        assert _lease(api)["holderIdentity"] == successor.identity
        assert successor.epoch > leader.epoch  # each leadership has its own epoch
        for task in pending:
            task.cancel()
        for replica in replicas:
            await replica.resign()
        return handover

    handover = _run(scenario())
    assert handover < 2  # no lease duration (5 s) to wait for


def test_a_dead_leaders_lease_is_taken_after_its_duration(api: KubeApiServer) -> None:
    async def scenario() -> float:
        a, b = _election(api, "a", ttl=2), _election(api, "b", ttl=2)
        await a.campaign()
        tenure = a._tenure
        assert tenure is not None
        tenure.task.cancel()  # a dies: no more renewals, no resignation
        died = time.monotonic()
        await asyncio.wait_for(b.campaign(), 10)
        waited = time.monotonic() - died
        assert _lease(api)["holderIdentity"] == "b"
        await b.resign()
        a._tenure = None
        await a.resign()
        return waited

    waited = _run(scenario())
    # b first saw a's last renewal no earlier than it was written: it waits a full duration.
    assert 1.3 <= waited < 4.0, waited


def test_a_leader_whose_lease_is_taken_loses_it_at_the_next_renewal(api: KubeApiServer) -> None:
    async def scenario() -> tuple[str, float]:
        a = _election(api, "a", ttl=3)
        await a.campaign()
        lease = dict(
            api.store.current("/apis/coordination.k8s.io/v1/leases", (NAMESPACE, DEFAULT_LEASE)) or {}
        )
        api.put({**lease, "spec": {**lease["spec"], "holderIdentity": "intruder"}})
        taken = time.monotonic()
        reason = await asyncio.wait_for(a.lost(), 5)
        elapsed = time.monotonic() - taken
        assert a.epoch == -1
        await a.resign()
        return reason, elapsed

    reason, elapsed = _run(scenario())
    assert "taken by intruder" in reason and elapsed <= 1.5  # renewals every TTL/3


def test_a_leader_that_cannot_reach_the_api_knows_within_its_ttl(api: KubeApiServer) -> None:
    async def scenario() -> tuple[str, float]:
        a = _election(api, "a", ttl=2)
        await a.campaign()
        api.fail(LEASE, 503, count=1000)
        failing = time.monotonic()
        reason = await asyncio.wait_for(a.lost(), 5)
        elapsed = time.monotonic() - failing
        await a.resign()
        return reason, elapsed

    reason, elapsed = _run(scenario())
    assert "could not be renewed within its TTL" in reason
    assert elapsed <= 2.0  # the deadline is the last renewal's sending + TTL


def test_the_checkpoint_is_chunked_switched_whole_and_old_generations_go(api: KubeApiServer) -> None:
    async def scenario() -> None:
        store = KubernetesCheckpointStore(_spec(api), namespace=NAMESPACE, chunk_bytes=1000)
        assert await store.load() is None
        first = bytes(range(256)) * 10  # 2,560 bytes: 3 chunks
        await store.save(first)
        assert await store.load() == first
        second = b"\x00\xff" * 2500  # 5,000 bytes: 5 chunks
        await store.save(second)
        assert await store.load() == second
        chunks = [
            name
            for (namespace, name), _ in api.store.snapshot("/api/v1/configmaps", api.store.revision)
            if namespace == NAMESPACE and name != POINTER
        ]
        assert len(chunks) == 5  # the first generation's three are gone
        # a chunk of a write that died halfway is deleted by the next save
        api.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{POINTER}-00000000000000000001-000000",
                    "namespace": NAMESPACE,
                    "labels": {"calico-accountant.io/checkpoint-generation": "00000000000000000001"},
                },
                "binaryData": {"chunk": "AAAA"},
            }
        )
        await store.save(b"third")
        names = {name for (_, name), _ in api.store.snapshot("/api/v1/configmaps", api.store.revision)}
        assert names == {POINTER, next(n for n in names if n != POINTER)} and len(names) == 2
        assert await store.load() == b"third"
        # a chunk missing under the pointer is an error, never a shorter checkpoint
        pointer = await store.client().get_object(configmap_path(NAMESPACE, POINTER))
        assert pointer is not None
        await store.client().delete_object(
            configmap_path(NAMESPACE, f"{POINTER}-{pointer['data']['generation']}-000000")
        )
        with pytest.raises(ValueError, match="chunk 0 of 1 is missing"):
            await store.load()
        await store.close()

    _run(scenario())


def test_a_deposed_leader_cannot_replace_the_new_leaders_checkpoint(api: KubeApiServer) -> None:
    async def scenario() -> bytes | None:
        spec = _spec(api)
        a, b = _election(api, "a", ttl=2), _election(api, "b", ttl=2)
        store_a = KubernetesCheckpointStore(spec, namespace=NAMESPACE)
        store_b = KubernetesCheckpointStore(spec, namespace=NAMESPACE)
        await a.campaign()
        fence_checkpoints(a, store_a)
        assert await store_a.load() is None  # claims the pointer for a's epoch
        await store_a.save(b"a, while leading")
        epoch_a = a.epoch
        tenure = a._tenure
        assert tenure is not None
        tenure.task.cancel()  # a stops renewing but has not noticed it lost; it still writes
        a.epoch = epoch_a
        await asyncio.wait_for(b.campaign(), 10)
        fence_checkpoints(b, store_b)
        assert await store_b.load() == b"a, while leading"  # b claims, then restores
        with pytest.raises(FencedOut):
            await store_a.save(b"a, deposed")
        await store_b.save(b"b, the new leader")
        with pytest.raises(FencedOut):
            await store_a.save(b"a, deposed, again")
        kept = await store_b.load()
        a._tenure = None
        for closing in (a.resign(), b.resign(), store_a.close(), store_b.close()):
            await closing
        return kept

    assert _run(scenario()) == b"b, the new leader"
    _assert_the_role_grants_what_was_used(api)


_VERBS = {"POST": "create", "PUT": "update", "DELETE": "delete"}


def _assert_the_role_grants_what_was_used(api: KubeApiServer) -> None:
    """deploy/overlays/kubernetes-ha/rbac.yaml grants exactly the verbs the election and the checkpoint
    store used on the stand-in server, on the resources they used them on."""
    used = set()
    for request in api.requests:
        method = request.query.get("method")
        if method is None:
            continue
        route = route_object(api.store, request.path)
        assert route is not None, request.path
        group = route.served.api_version.rpartition("/")[0]
        verb = _VERBS.get(method) or ("get" if route.name else "list")
        used.add((group, route.served.plural, verb))
    role_file = Path(__file__).resolve().parent.parent / "deploy" / "overlays" / "kubernetes-ha" / "rbac.yaml"
    role = next(d for d in yaml.safe_load_all(role_file.read_text()) if d["kind"] == "Role")
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert used == granted


def test_kubernetes_leader_election_needs_the_kubernetes_datastore_and_checkpoint(tmp_path: Path) -> None:
    spec = KubernetesSpec(kubeconfig=tmp_path / "kubeconfig")
    with pytest.raises(ValueError, match="needs --datastore kubernetes"):
        open_election(LeaderElection.KUBERNETES, None, "kubernetes")
    with pytest.raises(ValueError, match="needs --checkpoint kubernetes"):
        open_election(LeaderElection.KUBERNETES, spec, f"file:{tmp_path}/c")
    with pytest.raises(ValueError, match="needs --checkpoint kubernetes"):
        open_election(LeaderElection.KUBERNETES, spec, "etcd")
    election = open_election(LeaderElection.KUBERNETES, spec, "kubernetes", identity="pod-a")
    assert isinstance(election, KubernetesLeaseElection) and election.identity == "pod-a"
