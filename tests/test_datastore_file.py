"""The file datastore (both formats, bad values, re-read on change), the cache that builds
catalogs, and the --datastore flag parser."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.catalog.index import Catalog
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.file import DatastoreFileError, FileDatastore, decode_text, read_datastore_file
from aggregator.datastore.objects import object_from_manifest
from aggregator.datastore.sources import open_datastore
from aggregator.datastore.spec import EtcdEndpoint, EtcdSpec, FileSpec, TlsFiles, parse_datastore_spec
from aggregator.model import PolicyKind

PREFIX = "/calico/resources/v3/projectcalico.org/"


def veth(namespace: str, pod: str) -> str:
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def wep_manifest(namespace: str, pod: str, node: str = "node-a", ip: str = "169.254.7.1") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0",
            "namespace": namespace,
            "labels": {"app": pod.split("-")[0]},
        },
        "spec": {"node": node, "pod": pod, "interfaceName": veth(namespace, pod), "ipNetworks": [f"{ip}/32"]},
    }


def np_manifest(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tier": "default", "selector": "all()"},
    }


def as_pair(manifest: dict[str, Any], *, string_value: bool = True) -> dict[str, Any]:
    plural = {"WorkloadEndpoint": "workloadendpoints", "NetworkPolicy": "networkpolicies"}[manifest["kind"]]
    meta = manifest["metadata"]
    key = f"{PREFIX}{plural}/{meta['namespace']}/{meta['name']}"
    return {"key": key, "value": json.dumps(manifest) if string_value else manifest}


# ---------------------------------------------------------------------------- formats


def test_calicoctl_multi_document_yaml() -> None:
    text = yaml.safe_dump_all([wep_manifest("shop", "web-1"), np_manifest("shop", "allow-web")])
    result = decode_text(text)
    assert result.bad == {}
    assert [(o.kind, o.namespace, o.name) for o in result.objects] == [
        ("WorkloadEndpoint", "shop", "node--a-k8s-web--1-eth0"),
        ("NetworkPolicy", "shop", "allow-web"),
    ]
    assert result.objects[0].key == f"{PREFIX}workloadendpoints/shop/node--a-k8s-web--1-eth0"


@pytest.mark.parametrize("dump", [json.dumps, yaml.safe_dump])
def test_calicoctl_list_kind(dump: Any) -> None:
    listing = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpointList",
        "metadata": {"resourceVersion": "123"},
        "items": [wep_manifest("shop", "web-1"), wep_manifest("shop", "web-2")],
    }
    result = decode_text(dump(listing))
    assert [o.spec["pod"] for o in result.objects] == ["web-1", "web-2"]


def test_etcd_key_value_pairs_string_and_object_values() -> None:
    pairs = [
        as_pair(wep_manifest("shop", "web-1")),
        as_pair(np_manifest("shop", "default.x"), string_value=False),
    ]
    pairs.append({"key": f"{PREFIX}ippools/default-ipv4-ippool", "value": "{}"})  # not read: ignored
    result = decode_text(json.dumps(pairs))
    assert result.bad == {} and result.ignored == 1
    assert {(o.kind, o.name) for o in result.objects} == {
        ("WorkloadEndpoint", "node--a-k8s-web--1-eth0"),
        ("NetworkPolicy", "default.x"),
    }


def test_etcdctl_json_output() -> None:
    pair = as_pair(wep_manifest("shop", "web-1"))
    document = {
        "header": {"revision": 42},
        "kvs": [
            {
                "key": base64.b64encode(pair["key"].encode()).decode(),
                "value": base64.b64encode(pair["value"].encode()).decode(),
                "mod_revision": 40,
            }
        ],
    }
    result = decode_text(json.dumps(document))
    assert len(result.objects) == 1 and result.objects[0].revision == 40


def test_bad_values_are_counted_per_reason_and_skipped() -> None:
    good = as_pair(wep_manifest("shop", "web-1"))
    wrong_kind = as_pair(np_manifest("shop", "x"))
    wrong_kind["key"] = f"{PREFIX}workloadendpoints/shop/x"
    no_iface = wep_manifest("shop", "web-3")
    del no_iface["spec"]["interfaceName"]
    bad_labels = wep_manifest("shop", "web-4")
    bad_labels["metadata"]["labels"] = {"app": 7}
    pairs: list[Any] = [
        good,
        {"key": f"{PREFIX}workloadendpoints/shop/a", "value": "{not json"},
        {"key": f"{PREFIX}workloadendpoints/shop/b", "value": "[1, 2]"},
        {"key": f"{PREFIX}workloadendpoints/too/many/parts", "value": "{}"},
        wrong_kind,
        as_pair(no_iface),
        as_pair(bad_labels),
        {"key": 5, "value": "{}"},
        "a string",
    ]
    result = decode_text(json.dumps(pairs))
    assert len(result.objects) == 1
    assert result.bad == {
        "not_json": 1,
        "not_an_object": 2,
        "bad_key": 2,
        "kind_mismatch": 1,
        "bad_spec": 1,
        "bad_labels": 1,
    }
    missing = decode_text(
        yaml.safe_dump_all(
            [
                {"kind": "NetworkPolicy", "metadata": {"namespace": "x"}},
                {"metadata": {"name": "y"}},
                {"kind": "NetworkPolicy", "metadata": {"name": "z"}},
            ]
        )
    )
    assert missing.bad == {"missing_name": 1, "missing_kind": 1, "missing_namespace": 1}


def test_unparseable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DatastoreFileError):
        decode_text("key: [unclosed")
    with pytest.raises(DatastoreFileError):
        read_datastore_file(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"kind: Profile\nmetadata: {name: caf\xe9}\n")
    with pytest.raises(DatastoreFileError):
        read_datastore_file(tmp_path / "latin1.yaml")


# ---------------------------------------------------------------------------- the cache


def test_cache_builds_catalogs_and_notifies_outside_a_loop() -> None:
    cache = DatastoreCache(source="test")
    seen: list[Catalog] = []
    remove = cache.add_listener(seen.append)
    web = object_from_manifest(wep_manifest("shop", "web-1"))
    assert web is not None
    assert cache.replace_all([web], revision=7)
    assert cache.synced and cache.generation == 1 and cache.revision == 7
    assert seen[-1] is cache.catalog
    assert cache.catalog.workload("node-a", veth("shop", "web-1")).resolved
    # The same objects again: nothing changes, no new catalog.
    again = object_from_manifest(wep_manifest("shop", "web-1"))
    assert again is not None
    assert not cache.replace_all([again], revision=8)
    assert cache.generation == 1
    assert cache.apply(deletes=[web.key], revision=9)
    assert cache.generation == 2 and not cache.catalog.workload("node-a", veth("shop", "web-1")).resolved
    assert not cache.apply(deletes=[web.key])
    remove()
    cache.apply(upserts=[web])
    assert len(seen) == 2 and cache.generation == 3
    status = cache.status()
    assert status.objects == {"WorkloadEndpoint": 1} and status.revision == 9


def test_cache_throttles_rebuilds_in_a_loop() -> None:
    async def scenario() -> tuple[int, int, Catalog]:
        cache = DatastoreCache(min_rebuild_interval=0.2)
        cache.replace_all([], revision=1)
        start_generation = cache.generation
        seen: list[Catalog] = []
        cache.add_listener(seen.append)
        for i in range(50):
            obj = object_from_manifest(wep_manifest("shop", f"web-{i}", ip=f"169.254.8.{i}"))
            assert obj is not None
            cache.apply(upserts=[obj], revision=2 + i)
        await cache.wait_for_change(start_generation, timeout=5)
        await asyncio.sleep(0.5)
        assert len(seen) == cache.generation - start_generation and seen[-1] is cache.catalog
        assert cache.catalog.revision == 51
        return start_generation, cache.generation, cache.catalog

    start, end, catalog = asyncio.run(scenario())
    assert 1 <= end - start <= 3  # 50 changes, a couple of rebuilds
    assert len(catalog.workloads()) == 50


# ---------------------------------------------------------------------------- the file source


def test_file_source_rereads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all([wep_manifest("shop", "web-1"), np_manifest("shop", "allow-web")]))

    async def scenario() -> None:
        cache = DatastoreCache(source=f"file:{path}", min_rebuild_interval=0.01)
        source = open_datastore(FileSpec(path, poll_interval=0.05), cache)
        assert isinstance(source, FileDatastore)
        source.start()
        try:
            catalog = await cache.wait_synced(timeout=5)
            assert catalog.workload("node-a", veth("shop", "web-1")).resolved
            assert catalog.policy("cali-pi-np/shop/allow-web").name == "allow-web"

            # A pod added, the policy renamed: rewritten by rename, like a ConfigMap update.
            generation = cache.generation
            replacement = tmp_path / "new.yaml"
            replacement.write_text(
                yaml.safe_dump_all(
                    [wep_manifest("shop", "web-1"), wep_manifest("shop", "web-2", ip="169.254.7.2"),
                     np_manifest("shop", "allow-web-v2")]
                )
            )  # fmt: skip
            os.replace(replacement, path)
            catalog = await cache.wait_for_change(generation, timeout=5)
            assert catalog.workload("node-a", veth("shop", "web-2")).ips == ("169.254.7.2",)
            assert catalog.policy("cali-pi-np/shop/allow-web").kind is PolicyKind.UNRESOLVED
            assert catalog.policy("cali-pi-np/shop/allow-web-v2").name == "allow-web-v2"

            # Garbage: the previous objects stay, the error is recorded.
            generation = cache.generation
            loads = source.loads
            path.write_text("kind: [unclosed\n")
            for _ in range(100):
                if cache.status().last_error:
                    break
                await asyncio.sleep(0.02)
            assert "not valid YAML" in cache.status().last_error
            assert cache.generation == generation and source.loads == loads
            assert cache.catalog.workload("node-a", veth("shop", "web-2")).resolved

            # Deleted, then back with a bad entry among good ones: counted and skipped.
            path.unlink()
            await asyncio.sleep(0.2)
            assert cache.catalog.workload("node-a", veth("shop", "web-2")).resolved
            pairs = [
                as_pair(wep_manifest("shop", "web-3")),
                {"key": f"{PREFIX}workloadendpoints/shop/z", "value": "nope"},
            ]
            path.write_text(json.dumps(pairs))
            catalog = await cache.wait_for_change(generation, timeout=5)
            assert catalog.workload("node-a", veth("shop", "web-3")).resolved
            assert not catalog.workload("node-a", veth("shop", "web-2")).resolved
            assert cache.status().bad_values == {"not_json": 1}
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_file_source_load_once_without_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([as_pair(wep_manifest("shop", "web-1"))]))
    cache = DatastoreCache()
    source = FileDatastore(path, cache)
    assert source.load_once()
    assert cache.synced and cache.catalog.workload("node-a", veth("shop", "web-1")).resolved
    assert not FileDatastore(tmp_path / "none", DatastoreCache()).load_once()


# ---------------------------------------------------------------------------- --datastore


def test_parse_datastore_spec() -> None:
    assert parse_datastore_spec("file:/tmp/x.yaml") == FileSpec(Path("/tmp/x.yaml"))
    assert parse_datastore_spec("file:///tmp/x.yaml") == FileSpec(Path("/tmp/x.yaml"))
    assert parse_datastore_spec("file:rel/x.yaml", poll_interval=3) == FileSpec(Path("rel/x.yaml"), 3)
    spec = parse_datastore_spec("etcd://127.0.0.1:2379,etcd-1:12379,[::1]:2380,host")
    assert spec == EtcdSpec(
        (EtcdEndpoint("127.0.0.1", 2379), EtcdEndpoint("etcd-1", 12379), EtcdEndpoint("::1", 2380),
         EtcdEndpoint("host", 2379))
    )  # fmt: skip
    assert spec.endpoints[2].target == "[::1]:2380"
    tls = parse_datastore_spec("etcd://h:1?ca=/ca.pem&cert=/c.pem&key=/k.pem")
    assert isinstance(tls, EtcdSpec) and tls.tls == TlsFiles(Path("/ca.pem"), Path("/c.pem"), Path("/k.pem"))
    flags = parse_datastore_spec("etcd://h:1", ca="/ca.pem")
    assert isinstance(flags, EtcdSpec) and flags.tls == TlsFiles(Path("/ca.pem"))
    secure = parse_datastore_spec("etcds://h:1")
    assert isinstance(secure, EtcdSpec) and secure.tls == TlsFiles()
    assert secure.describe() == "etcds://h:1"


@pytest.mark.parametrize(
    "bad",
    ["", "/tmp/x.yaml", "file:", "http://h:1", "etcd://", "etcd://h:port", "etcd://h:0", "etcd://h:70000",
     "etcd://h:1?bogus=1", "etcd://h:1?cert=/c.pem", "etcd://[nothex]:1", "etcd://:1"],
)  # fmt: skip
def test_parse_datastore_spec_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="datastore"):
        parse_datastore_spec(bad)
