"""``calico_accountant_datastore_*``: the datastore's state and the catalog's resolution
outcomes, exported by a real aggregator and valid for promtool."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.catalog.index import Catalog
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.file import decode_text
from aggregator.metrics.datastore import DatastoreCollector
from aggregator.server import Aggregator, AggregatorConfig
from calico_accountant.felix.naming import policy_chain_candidates

PROMTOOL = shutil.which("promtool")
SAMPLE = resources.files("calico_accountant_cli").joinpath("sample/cluster.yaml").read_text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def known_chain(catalog: Catalog) -> str:
    for candidate in policy_chain_candidates("GlobalNetworkPolicy", "", "default.default-deny", "default"):
        if catalog.policy(candidate.chain).resolved:
            return candidate.chain
    raise AssertionError("no candidate chain of default-deny resolves in the sample")


def test_resolution_outcomes_are_counted_once_per_distinct_question() -> None:
    objects = decode_text(SAMPLE).objects
    cache = DatastoreCache(source="file:sample")
    cache.replace_all(objects, revision=7)
    catalog = cache.flush()
    chain = known_chain(catalog)
    for _ in range(3):  # repeated questions count once
        catalog.policy(chain)
        catalog.policy("cali-pi-_notAKnownHash00000")
        catalog.workload("node-a", "cali79c5e865cb7")
        catalog.workload("node-a", "caliUnknown")
        catalog.profile("cali-pri-kns.shop")
    registry = CollectorRegistry()
    registry.register(DatastoreCollector(cache))
    got = samples(generate_latest(registry).decode())

    def value(name: str, **labels: str) -> float:
        return got[(f"calico_accountant_datastore_{name}", tuple(sorted(labels.items())))]

    assert value("synced") == 1 and value("revision") == 7
    assert value("objects", kind="WorkloadEndpoint") == 8
    assert value("objects", kind="Profile") == 8
    assert sum(v for (name, _), v in got.items() if name == "calico_accountant_datastore_objects") == len(
        objects
    )
    assert value("resolutions", what="policy", outcome="resolved") == 1
    assert value("resolutions", what="policy", outcome="unresolved") == 1
    assert value("resolutions", what="workload", outcome="resolved") == 1
    assert value("resolutions", what="workload", outcome="unresolved") == 1
    assert value("resolutions", what="profile", outcome="resolved") == 1
    assert value("catalog_entries", what="workloads") == 8
    assert (
        sum(v for (name, _), v in got.items() if name == "calico_accountant_datastore_resolved_chains") == 1
    )
    assert not any(name == "calico_accountant_datastore_bad_objects_total" for name, _ in got)


def test_bad_values_relists_and_reconnects_are_counted() -> None:
    cache = DatastoreCache(source="etcd://test")
    cache.note_bad("not_json")
    cache.note_bad("not_json")
    cache.note_relist()
    cache.note_error("connection refused")
    registry = CollectorRegistry()
    registry.register(DatastoreCollector(cache))
    got = samples(generate_latest(registry).decode())
    assert got[("calico_accountant_datastore_bad_objects_total", (("reason", "not_json"),))] == 2
    assert got[("calico_accountant_datastore_relists_total", ())] == 1
    assert got[("calico_accountant_datastore_reconnects_total", ())] == 1
    assert got[("calico_accountant_datastore_synced", ())] == 0


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_a_real_aggregator_exports_them_and_promtool_accepts_them(tmp_path: Path) -> None:
    datastore = tmp_path / "cluster.yaml"
    datastore.write_text(SAMPLE)

    async def scrape() -> str:
        aggregator = Aggregator(
            AggregatorConfig(
                grpc_host="127.0.0.1",
                grpc_port=0,
                metrics_host="127.0.0.1",
                metrics_port=0,
                health_host="127.0.0.1",
                health_port=0,
                datastore=f"file:{datastore}",
            )
        )
        await aggregator.start()
        try:
            assert aggregator.metrics is not None
            url = f"http://127.0.0.1:{aggregator.metrics.port}/metrics"
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        finally:
            await aggregator.stop()

    text = asyncio.run(scrape())
    got = samples(text)
    assert got[("calico_accountant_datastore_synced", ())] == 1
    assert got[("calico_accountant_datastore_objects", (("kind", "WorkloadEndpoint"),))] == 8
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    datastore_problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "datastore" in line
    ]
    assert datastore_problems == []
