"""The sample cluster without a kernel, for tests of whole processes: dumps, traffic, the oracle.

Each node of the bundled sample cluster is a felix-shaped filter table rendered from the
cluster (:mod:`calico_accountant_cli.demo.render`), kept in a file an agent reads with
``cat``.  Traffic is simulated: a round of the demo's traffic plan advances every rule's
counter by the packets that would match it (:mod:`calico_accountant_cli.demo.simulate`).
A change of the cluster (a policy renamed or rewritten, a pod deleted) re-renders the
tables carrying the counters of unchanged rules and zeroing the others, as felix does.

The oracle is the traffic itself: :func:`calico_accountant_cli.demo.verdicts.outcomes_for`
says, from the Calico objects alone, which series each packet moves, so :class:`Expected`
holds what every per-workload, per-node, per-rule and cluster-wide series must show for
the traffic an aggregator has counted (from its baseline on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from calico_accountant_cli.demo.cluster import Cluster, load_sample_cluster
from calico_accountant_cli.demo.plan import DEFAULT_PLAN, PlannedFlow, flows_of, node_packets
from calico_accountant_cli.demo.render import carry_counters, node_ipsets, render_node_table
from calico_accountant_cli.demo.simulate import advance_counters
from calico_accountant_cli.demo.verdicts import Outcome, OutcomeKind, outcomes_for
from calico_accountant_cli.lab.calico_rules import Layout
from tests.support.dumps import write_atomic
from tests.support.scrape import metric_samples

__all__ = ["ACCOUNTING", "EXACT", "Expected", "Key", "SimulatedCluster", "accounting_series"]

WORKLOAD_POLICY = "calico_accountant_workload_policy_packets_total"
WORKLOAD_NO_POLICY = "calico_accountant_workload_no_policy_drop_packets_total"
WORKLOAD_PROFILE = "calico_accountant_workload_profile_packets_total"
NODE_POLICY = "calico_accountant_node_policy_packets_total"
NODE_NO_POLICY = "calico_accountant_node_no_policy_drop_packets_total"
NODE_RULE = "calico_accountant_node_policy_rule_packets_total"
CLUSTER_POLICY = "calico_accountant_cluster_policy_packets_total"

_POLICY = ("tier", "policy_kind", "policy_namespace", "policy")
EXACT: dict[str, tuple[str, ...]] = {
    WORKLOAD_POLICY: ("node", "namespace", "pod", "app", "direction", "verdict", *_POLICY),
    WORKLOAD_NO_POLICY: ("node", "namespace", "pod", "app", "direction", "tier"),
    WORKLOAD_PROFILE: ("node", "namespace", "pod", "app", "direction", "verdict", "profile"),
    NODE_POLICY: ("node", "direction", "verdict", *_POLICY),
    NODE_NO_POLICY: ("node", "direction"),
    NODE_RULE: ("node", "direction", *_POLICY, "rule", "action"),
    CLUSTER_POLICY: ("direction", "verdict", *_POLICY),
}
"""The families compared exactly with the oracle, and their labels in key order.  (The
cluster-wide no-policy drops are left out: they are checked by the end-to-end test.)"""
WORKLOAD = (WORKLOAD_POLICY, WORKLOAD_NO_POLICY, WORKLOAD_PROFILE)
ACCOUNTING = ("calico_accountant_workload_", "calico_accountant_node_", "calico_accountant_cluster_")
"""Prefixes of the accounting series (every ``..._total`` under them is a counter)."""

Key = tuple[str, ...]


def _keys(o: Outcome) -> Iterable[tuple[str, Key]]:
    base = (o.node, o.namespace, o.pod, o.app, o.direction)
    policy = (o.tier, o.policy_kind, o.policy_namespace, o.policy)
    if o.kind is OutcomeKind.POLICY:
        yield WORKLOAD_POLICY, (*base, o.verdict, *policy)
        yield NODE_POLICY, (o.node, o.direction, o.verdict, *policy)
        yield CLUSTER_POLICY, (o.direction, o.verdict, *policy)
        yield NODE_RULE, (o.node, o.direction, *policy, str(o.rule_index), o.rule_action)
    elif o.kind is OutcomeKind.NO_POLICY_DROP:
        yield WORKLOAD_NO_POLICY, (*base, o.tier)
        yield NODE_NO_POLICY, (o.node, o.direction)
    else:
        yield WORKLOAD_PROFILE, (*base, o.verdict, o.profile)


@dataclass
class Expected:
    """Packets per series, for the traffic counted so far."""

    series: dict[str, Counter[Key]] = field(default_factory=lambda: {name: Counter() for name in EXACT})
    gone: set[tuple[str, str]] = field(default_factory=set)
    """Workload series left with their counters: (pod, "") for a deleted pod, ("", policy)
    for a renamed policy's old name (their counters expired: the series are removed)."""

    def add(self, outcomes: Sequence[Outcome], packets: int) -> None:
        for outcome in outcomes:
            for family, key in _keys(outcome):
                self.series[family][key] += packets

    def want(self, family: str) -> Counter[Key]:
        want = +self.series[family]
        if family in WORKLOAD:
            pods = {pod for pod, _ in self.gone if pod}
            policies = {policy for _, policy in self.gone if policy}
            want = Counter(
                {
                    key: value
                    for key, value in want.items()
                    if key[2] not in pods and (family != WORKLOAD_POLICY or key[-1] not in policies)
                }
            )
        return want

    def mismatches(self, exposition: str) -> list[str]:
        """Every series of :data:`EXACT` whose value differs from the oracle (zero = absent)."""
        problems = []
        for family, labels in EXACT.items():
            got: Counter[Key] = Counter()
            for pairs, value in metric_samples(exposition, family).items():
                if value:
                    found = dict(pairs)
                    got[tuple(found.get(name, "") for name in labels)] += int(value)
            want = self.want(family)
            for key in sorted(set(got) | set(want)):
                if got[key] != want[key]:
                    shown = dict(zip(labels, key, strict=True))
                    problems.append(f"{family}{shown}: exported {got[key]}, counted {want[key]}")
        return problems


def accounting_series(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every accounting counter series of an exposition: (name, labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    names = {
        line.split()[2]
        for line in exposition.splitlines()
        if line.startswith("# TYPE ") and line.split()[2].startswith(ACCOUNTING)
    }
    for name in names:
        if name.endswith("_total"):
            for labels, value in metric_samples(exposition, name).items():
                out[(name, labels)] = value
    return out


class ClusterWriter(Protocol):
    """Where a test cluster's objects go: etcd (the demo's
    :class:`~calico_accountant_cli.demo.store.ClusterStore`) or the stand-in Kubernetes API
    (:class:`~tests.support.kube_objects.KubeClusterStore`)."""

    spec: str

    def write(self, cluster: Cluster) -> None: ...


class SimulatedCluster:
    """The sample cluster's nodes as dump files whose counters move with simulated traffic."""

    def __init__(self, directory: Path, store: ClusterWriter, layout: Layout = Layout.V3_30) -> None:
        self.cluster = load_sample_cluster()
        self.layout = layout
        self.store = store
        self.nodes = self.cluster.nodes
        self.paths = {node: directory / f"{node}.save" for node in self.nodes}
        self.texts = {node: render_node_table(self.cluster, node, layout) for node in self.nodes}
        self.expected = Expected()
        store.write(self.cluster)
        self._write()

    def command(self, node: str) -> str:
        """What an agent runs instead of ``iptables-save``."""
        return f"cat {self.paths[node]}"

    def _write(self) -> None:
        for node in self.nodes:
            write_atomic(self.paths[node], self.texts[node])

    def traffic(
        self, rounds: int = 1, *, counted: bool = True, plan: Sequence[PlannedFlow] = DEFAULT_PLAN
    ) -> int:
        """``rounds`` rounds of the traffic plan (the demo's, or ``plan``) through every node;
        the packets sent.  ``counted``: an aggregator has its baseline, the oracle books them."""
        flows = flows_of(self.cluster, plan)
        for node in self.nodes:
            packets = [(p, n * rounds) for p, n in node_packets(self.cluster, node, flows)]
            self.texts[node] = advance_counters(
                self.texts[node], packets, node_ipsets(self.cluster, node, self.layout)
            )
        self._write()
        if counted:
            for flow, count in flows:
                self.expected.add(outcomes_for(self.cluster, self.layout, [flow]), count * rounds)
        return sum(count for _, count in flows) * rounds

    def rerender(self, cluster: Cluster, *, reset_chains: frozenset[str] = frozenset()) -> None:
        """Felix renders ``cluster``: unchanged rules keep their counters, the others (and
        every rule of ``reset_chains``) start at zero.  The datastore is not written."""
        for node in self.nodes:
            rendered = render_node_table(cluster, node, self.layout)
            self.texts[node] = carry_counters(self.texts[node], rendered, reset_chains=reset_chains)
        self.cluster = cluster
        self._write()

    def publish(self) -> None:
        """Write the current cluster to the datastore."""
        self.store.write(self.cluster)

    # -- the changes the tests make -------------------------------------------------------

    def renamed(self, name: str, namespace: str, new_name: str) -> Cluster:
        old = self.cluster.policy(name, namespace)
        self.expected.gone.add(("", old.shown_name))
        policies = tuple(replace(p, name=new_name) if p == old else p for p in self.cluster.policies)
        return replace(self.cluster, policies=policies)

    def rewritten(self, name: str, namespace: str, extra_port: int) -> Cluster:
        """The policy with a port added to its ingress rules (new rule hashes)."""
        policy = self.cluster.policy(name, namespace)
        rules = tuple(replace(rule, ports=(*rule.ports, extra_port)) for rule in policy.ingress)
        return self.cluster.with_policy(replace(policy, ingress=rules))

    def without(self, pod: str) -> Cluster:
        self.expected.gone.add((pod, ""))
        return self.cluster.without_workload(pod)
