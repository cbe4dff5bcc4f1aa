"""The KDD catalog at the size of a 5,000-node cluster: 150k pods and 5k policies.

Run from the repository root: ``.venv/bin/python -m bench.kdd_catalog_bench`` (about a
minute; ``--pods N --policies N`` for other sizes).  It prints figures, asserts nothing.

What it does, the way ``--datastore kubernetes`` does it:

1. builds the cluster's objects with :mod:`tests.support.kube_objects` (shaped like real API
   output: a pod is ~3.5 KB of JSON), serialises them as list pages of 500 (the API server's
   response bodies), then decodes and translates page by page (:class:`KubeTranslator`);
   only the translations are kept, which is what the cache holds;
2. builds the catalog from them (:meth:`Catalog.from_objects`), then rebuilds it after one pod
   and after one policy changed (the rebuilds a running aggregator does);
3. measures with ``tracemalloc`` what the translated objects hold, what the catalog adds on
   top, and the peak while building; and, for comparison, what the same pods hold when read
   as etcd WorkloadEndpoints (the etcd datastore keeps their whole stored JSON).

Times come from a first pass without ``tracemalloc`` (it slows allocation), memory from a
second pass with it.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from aggregator.catalog.index import Catalog
from aggregator.datastore.kdd_objects import KubeTranslator
from aggregator.datastore.kdd_resources import KUBE_RESOURCES, KubeResource
from aggregator.datastore.objects import CalicoObject, object_from_etcd
from calico_accountant.felix.naming import workload_endpoint_name
from tests.support.kube_objects import (
    calico_policy,
    calico_tier,
    namespace,
    network_policy,
    pod,
    service_account,
)

PAGE = 500
UID = "8d2ca8a2-4c4e-4b43-9a4e-2d2f6b3e1f00"


def _resource(group: str, kind: str) -> KubeResource:
    return next(r for r in KUBE_RESOURCES if (r.group, r.kind) == (group, kind))


def cluster(pods: int, policies: int) -> Iterator[tuple[KubeResource, dict[str, Any]]]:
    """A big cluster's objects, one at a time (never all in memory at once)."""
    namespaces = max(1, pods // 150)
    for n in range(namespaces):
        yield _resource("", "Namespace"), namespace(f"team-{n:04d}", {"team": f"t{n % 40}", "env": "prod"})
        for s in range(3):
            yield _resource("", "ServiceAccount"), service_account(f"team-{n:04d}", f"svc-{s}")
    for index in range(pods):  # ~3 replicas a Deployment: same labels and ServiceAccount
        deployment = (index // namespaces) % 50
        ns, app = f"team-{index % namespaces:04d}", f"app-{deployment}"
        template = f"{abs(hash((ns, app))) % 16**10:010x}"
        labels = {"app": app, "pod-template-hash": template, "app.kubernetes.io/part-of": ns, "version": "v3"}
        node, ip = f"node-{index % 5000:04d}", f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"
        name = f"{app}-{template}-{index:05x}"
        yield _resource("", "Pod"), pod(ns, name, node, ip, labels, service_account=f"svc-{deployment % 3}")
    yield _resource("crd.projectcalico.org", "Tier"), calico_tier("security", 100)
    for index in range(policies):
        ns = f"team-{index % namespaces:04d}"
        spec = {
            "tier": "default",
            "order": 100,
            "selector": f"app == 'app-{index % 50}'",
            "types": ["Ingress"],
        }
        if index % 10 < 6:
            yield (
                _resource("networking.k8s.io", "NetworkPolicy"),
                network_policy(
                    ns, f"allow-{index}", {"app": f"app-{index % 50}"}, from_pods={"app": "x"}, ports=[8080]
                ),
            )
        elif index % 10 < 9:
            body = calico_policy("NetworkPolicy", f"default.np-{index}", spec, ns, typed_name=f"np-{index}")
            yield _resource("crd.projectcalico.org", "NetworkPolicy"), body
        else:
            body = calico_policy("GlobalNetworkPolicy", f"security.gnp-{index}", {**spec, "tier": "security"})
            yield _resource("crd.projectcalico.org", "GlobalNetworkPolicy"), body


def translate_pages(pods: int, policies: int) -> tuple[list[CalicoObject], int, float]:
    """Serialise list pages, decode and translate them; returns the translations, the JSON
    bytes, and the seconds spent decoding and translating (not making the objects)."""
    translator = KubeTranslator()
    kept: list[CalicoObject] = []
    page: list[tuple[KubeResource, dict[str, Any]]] = []
    total, seconds = 0, 0.0

    def flush() -> None:
        nonlocal total, seconds
        for resource in {r for r, _ in page}:
            body = json.dumps({"items": [o for r, o in page if r is resource]}).encode()
            total += len(body)
            started = time.perf_counter()
            for item in json.loads(body)["items"]:
                obj = translator.translate(resource, item)
                if obj is not None:
                    kept.append(obj)
            seconds += time.perf_counter() - started
        page.clear()

    for entry in cluster(pods, policies):
        page.append(entry)
        if len(page) == PAGE:
            flush()
    flush()
    return kept, total, seconds


def etcd_workloads(objects: list[CalicoObject]) -> list[CalicoObject]:
    """The same pods as the etcd datastore holds them: the CNI plugin's stored JSON, decoded."""
    out = []
    for obj in objects:
        if obj.kind != "WorkloadEndpoint":
            continue
        spec = obj.spec
        value = {
            "kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": obj.name, "namespace": obj.namespace, "uid": UID,
                         "creationTimestamp": "2026-11-25T10:00:00Z", "labels": dict(obj.labels)},
            "spec": {"orchestrator": "k8s", "node": spec["node"], "containerID": "0" * 64, "pod": spec["pod"],
                     "endpoint": "eth0", "serviceAccountName": spec.get("serviceAccountName", ""),
                     "ipNetworks": spec["ipNetworks"], "profiles": [f"kns.{obj.namespace}"],
                     "interfaceName": spec["interfaceName"], "mac": "ee:ee:ee:ee:ee:ee"},
        }  # fmt: skip
        name = workload_endpoint_name(spec["node"], spec["pod"])
        key = f"/calico/resources/v3/projectcalico.org/workloadendpoints/{obj.namespace}/{name}"
        decoded = object_from_etcd(key, json.dumps(value), 1)
        assert decoded is not None
        out.append(decoded)
    return out


def changed_pod(objects: list[CalicoObject]) -> list[CalicoObject]:
    out = list(objects)
    index = next(i for i, o in enumerate(out) if o.kind == "WorkloadEndpoint")
    old = out[index]
    labels = {**old.labels, "version": "v4"}
    out[index] = CalicoObject(
        old.kind, old.namespace, old.name, old.key, 0, {**old.body, "metadata": {"labels": labels}}
    )
    return out


def changed_policy(objects: list[CalicoObject]) -> list[CalicoObject]:
    out = list(objects)
    index = next(i for i, o in enumerate(out) if o.kind == "NetworkPolicy")
    old = out[index]
    body = {**old.body, "spec": {**old.spec, "order": 101.0}}
    out[index] = CalicoObject(old.kind, old.namespace, old.name, old.key, 0, body)
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--policies", type=int, default=5_000)
    args = parser.parse_args()

    objects, json_bytes, translate_s = translate_pages(args.pods, args.policies)
    started = time.perf_counter()
    catalog = Catalog.from_objects(objects)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    Catalog.from_objects(changed_pod(objects), previous=catalog)
    pod_s = time.perf_counter() - started
    started = time.perf_counter()
    Catalog.from_objects(changed_policy(objects), previous=catalog)
    policy_s = time.perf_counter() - started
    stats = catalog.resolution_stats()
    del catalog, objects
    gc.collect()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    objects, _, _ = translate_pages(args.pods, args.policies)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    before_catalog = tracemalloc.get_traced_memory()[0]
    catalog = Catalog.from_objects(objects)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    catalog_bytes, build_peak = current - before_catalog, peak - before_catalog
    pods = sum(1 for o in objects if o.kind == "WorkloadEndpoint")
    del catalog
    gc.collect()
    etcd_base = tracemalloc.get_traced_memory()[0]
    etcd = etcd_workloads(objects)
    gc.collect()
    etcd_bytes = tracemalloc.get_traced_memory()[0] - etcd_base
    del etcd
    tracemalloc.stop()

    per_pod = max(1, pods)
    counts = f"{stats.policies} policies, {stats.profiles} profiles"
    print(f"KDD catalog: {args.pods} pods ({pods} endpoints), {counts}")
    print(f"  list pages decoded + translated  {translate_s:7.2f} s  ({json_bytes / 2**20:.0f} MiB of JSON)")
    print(f"  catalog build (full)             {build_s:7.2f} s")
    print(f"  rebuild, one pod changed         {pod_s:7.2f} s")
    print(f"  rebuild, one policy changed      {policy_s:7.2f} s")
    print(f"  translated objects held          {mib(held)}  ({held / per_pod:.0f} B a pod, all kinds)")
    print(f"  catalog on top of them           {mib(catalog_bytes)}  ({catalog_bytes / per_pod:.0f} B a pod)")
    print(f"  peak while building the catalog  {mib(build_peak)}")
    print(f"  total, objects + catalog         {mib(held + catalog_bytes)}")
    print(f"  (the same pods as etcd WEPs      {mib(etcd_bytes)}, {etcd_bytes / per_pod:.0f} B a pod)")


if __name__ == "__main__":
    main()
