"""Observations from the aggregator itself (``--server``): the totals of its ``Snapshot``
RPC, i.e. everything it counted since it started (or since the checkpoint it restored).

The hit API carries counters only, not the datastore: policies no node renders, the rule
texts and the canary label are not visible here (canaries by ``--canary NAME`` are), and
there is no previous window, so no changes.  Per-workload totals are summed per
(namespace, app) as the Prometheus source does, so the reports cannot tell the sources apart.
"""

from __future__ import annotations

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.audit.model import Observations, PolicyKey, PolicyTraffic, RuleKey, WorkloadDrop
from calico_accountant_cli.hits_client import HitsClient

__all__ = ["observations_from_snapshot", "observe_server"]

_DIRECTIONS = {spb.INGRESS: "ingress", spb.EGRESS: "egress"}


def _policy(hit: hpb.Hit) -> PolicyKey:
    ref = hit.policy
    return PolicyKey(ref.tier or hit.tier, ref.kind, ref.namespace, ref.name)


def observations_from_snapshot(response: hpb.SnapshotResponse, source: str) -> Observations:
    """The reports' view of a ``SnapshotResponse`` (pure)."""
    observations = Observations(window="since the aggregator started", source=source)
    traffic: dict[tuple[PolicyKey, str, str, str, str], int] = {}
    drops: dict[tuple[str, str, str, str], int] = {}
    for hit in response.totals:
        direction = _DIRECTIONS.get(hit.direction, "")
        if hit.kind in (spb.POLICY_ACCEPT, spb.POLICY_DENY) and hit.HasField("policy"):
            policy = _policy(hit)
            key = (policy, hit.namespace, hit.app, direction, hit.verdict)
            traffic[key] = traffic.get(key, 0) + hit.packets
            total = (policy, direction, hit.verdict)
            observations.policy_totals[total] = observations.policy_totals.get(total, 0) + hit.packets
        elif hit.kind == spb.POLICY_RULE and hit.HasField("policy"):
            rule = (RuleKey(_policy(hit), direction, hit.rule.index), hit.rule.action)
            observations.rule_hits[rule] = observations.rule_hits.get(rule, 0) + hit.packets
        elif hit.kind == spb.NO_POLICY_DROP:
            drop = (hit.namespace, hit.app, direction, hit.tier)
            drops[drop] = drops.get(drop, 0) + hit.packets
    observations.traffic = [
        PolicyTraffic(policy, namespace, app, direction, verdict, packets)
        for (policy, namespace, app, direction, verdict), packets in sorted(traffic.items())
    ]
    observations.drops = [WorkloadDrop(*key, packets) for key, packets in sorted(drops.items())]
    return observations


def observe_server(client: HitsClient) -> Observations:
    """One ``Snapshot`` of every total (raises the client's ``ClientError``)."""
    client.server_status()
    return observations_from_snapshot(client.snapshot(hpb.HitFilter()), f"aggregator {client.target}")
