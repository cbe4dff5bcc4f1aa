"""Prometheus for a sharded install: every shard scraped, the cluster sums one query away.

* promtool runs deploy/overlays/sharded/rules-test.yaml: deploy/monitoring's recording rules
  over two shards (each its own ``instance``) give the cluster-wide and per-node rates, a
  node moving between the shards included; and the test can fail (a wrong expectation does);
* a real Prometheus scrapes two real shards (a real etcd, real agents pointing at one of
  them) with deploy/monitoring/rules.yaml loaded: the shards' cluster-level counters summed
  in PromQL equal, series by series, what a single aggregator on the same agents' reads
  exports, and the cluster-wide recording rules are evaluated over both shards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_accountant_cli.demo.store import ClusterStore
from tests.support.etcd_server import EtcdServer
from tests.support.kustomize import DEPLOY
from tests.support.ports import free_port
from tests.support.processes import Processes, processes
from tests.support.prometheus_server import SKIP_REASON as PROMETHEUS_SKIP
from tests.support.prometheus_server import PrometheusServer, prometheus_available
from tests.support.serving import Served
from tests.support.shards import (
    etcd_datastore,
    level_series,
    members,
    nodes_held,
    split_identities,
    start_shard,
)
from tests.support.simulated import SimulatedCluster
from tests.support.skips import requires_tools
from tests.support.waits import wait_until

SHARDED = DEPLOY / "overlays" / "sharded"
RULES = DEPLOY / "monitoring" / "rules.yaml"
FAMILY = "calico_accountant_cluster_policy_packets_total"
LABELS = "direction, verdict, tier, policy_kind, policy_namespace, policy"


def _promtool(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=directory, check=False
    )


@requires_tools("promtool")
def test_the_rules_sum_over_shards_a_moving_node_included() -> None:
    result = _promtool(SHARDED, "test", "rules", "rules-test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@requires_tools("promtool")
def test_the_sharded_rule_tests_can_fail(tmp_path: Path) -> None:
    text = (SHARDED / "rules-test.yaml").read_text()
    wrong = text.replace("../../monitoring/rules.yaml", str(RULES)).replace("value: 8\n", "value: 5\n", 1)
    assert wrong != text
    (tmp_path / "rules-test.yaml").write_text(wrong)
    result = _promtool(tmp_path, "test", "rules", "rules-test.yaml")
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as group:
        yield group


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not prometheus_available(), reason=PROMETHEUS_SKIP)
def test_prometheus_sums_the_shards_to_a_single_aggregators_totals(
    etcd: EtcdServer, run: Processes, tmp_path: Path
) -> None:
    with ClusterStore(f"etcd://{etcd.endpoint}") as store:
        sim = SimulatedCluster(tmp_path, store)
        sim.traffic(2, counted=False)
        dumps = {"node-a": "node-a", "node-b": "node-b", "node-c": "node-a", "node-d": "node-b"}
        identities = split_identities(tuple(dumps))
        shards = [start_shard(run, etcd_datastore(etcd), identity)[1] for identity in identities]
        single = Served(free_port(), free_port())
        run.aggregator(
            single.grpc_port, single.metrics_port, "--datastore", f"etcd://{etcd.endpoint}", name="single"
        )
        for served in (*shards, single):
            served.wait_serving()
        wait_until(lambda: all(members(served) == 2 for served in shards), what="both see two members")
        for node, dump in dumps.items():
            command = sim.command(dump)
            run.agent(node, shards[0].grpc_port, [command], "--interval", "0.2", name=f"agent-shards-{node}")
            run.agent(node, single.grpc_port, [command], "--interval", "0.2", name=f"agent-single-{node}")
        wait_until(
            lambda: (
                sum(len(nodes_held(served.grpc_port)) for served in shards) == len(dumps)
                and all(nodes_held(served.grpc_port) for served in shards)
                and len(nodes_held(single.grpc_port)) == len(dumps)
            ),
            timeout=30,
            what="the nodes split over the shards",
        )
        shard_targets = [f"127.0.0.1:{served.metrics_port}" for served in shards]
        single_target = f"127.0.0.1:{single.metrics_port}"
        # The rules as they are, evaluated every second instead of every minute (a test that
        # waited for the group's first evaluation would wait up to a minute).
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES.read_text().replace("interval: 1m", "interval: 1s"))
        assert rules.read_text() != RULES.read_text()
        with PrometheusServer(
            [*shard_targets, single_target], job={"honor_labels": True}, rule_files=[rules]
        ) as prometheus:
            prometheus.wait_for_target_up()
            before = level_series(single.scrape())
            sim.traffic(1)
            wait_until(lambda: level_series(single.scrape()) != before, what="the single aggregator counted")
            shard_match = "|".join(shard_targets)

            def summed_in_promql() -> dict[tuple[tuple[str, str], ...], float]:
                found = prometheus.query(f'sum by ({LABELS}) ({FAMILY}{{instance=~"{shard_match}"}})')
                return {tuple(sorted(labels.items())): value for labels, value in found}

            def single_in_promql() -> dict[tuple[tuple[str, str], ...], float]:
                found = prometheus.query(f'sum by ({LABELS}) ({FAMILY}{{instance="{single_target}"}})')
                return {tuple(sorted(labels.items())): value for labels, value in found}

            def scraped_equal() -> bool:
                single_now = single_in_promql()
                exported = level_series(single.scrape())
                # Prometheus keeps no empty label (policy_namespace="" of a global policy).
                expected = {
                    tuple(sorted((k, v) for k, v in labels if v)): value
                    for (name, labels), value in exported.items()
                    if name == FAMILY
                }
                return bool(single_now) and summed_in_promql() == single_now == expected

            prometheus.wait_for(scraped_equal, timeout=30)
            assert sum(single_in_promql().values()) > sum(
                value for (name, _), value in before.items() if name == FAMILY
            )
            # Each shard exported part of it: the sum is not one shard's alone.
            for target in shard_targets:
                assert prometheus.query(f'sum({FAMILY}{{instance="{target}"}})')[0][1] > 0
            # The cluster-wide recording rule is evaluated over the shards (and the single one).
            prometheus.wait_for(
                lambda: any(
                    value > 0
                    for _, value in prometheus.query("cluster:calico_accountant_policy_packets:rate5m")
                ),
                timeout=30,
            )
