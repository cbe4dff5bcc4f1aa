"""The whole system, for real: etcd, iptables in namespaces, agents, aggregator, Prometheus.

For each felix layout (v3.27: no tiers; v3.30: tiers and deny marks), with the bundled
sample cluster written into a real etcd the way Calico stores it (and, for v3.30, once more
as a KDD cluster: Pods, Namespaces, ServiceAccounts, NetworkPolicies and Calico CRDs served by
the stand-in API server of :mod:`tests.support.kube_api`, which is not a kube-apiserver, to an
aggregator on ``--datastore kubernetes``; and once more with the nodes in felix's nftables
mode: ``table ip calico`` loaded with Debian's ``nft``, the agents on ``--nft-list``, counters
carried over by hash on every reprogramming and an endpoint chain's counters zeroed by
re-adding its rules):

* two node namespaces with felix-shaped tables rendered from the cluster, eight pod
  namespaces behind Calico-named veths, a real agent process per node reading
  ``iptables-save -c`` of its namespace, a real aggregator process reading etcd, and a
  real Prometheus scraping the aggregator every second;
* real traffic with known counts (every TCP attempt and every ping is exactly one
  new-flow packet, see :mod:`calico_accountant_cli.lab.traffic`), and the oracle
  :mod:`calico_accountant_cli.demo.verdicts` saying, from the Calico objects alone, which
  counter each packet must move.

What is asserted, each time *exactly* (equality of integers read from Prometheus's HTTP
API), after every phase:

1. every per-workload series -- (pod, direction, policy, verdict), no-policy drops per
   tier, profile accepts -- equals the packets the test sent that Calico semantics
   attribute to it, and no other series is non-zero (nothing unresolved, nothing extra);
   it stays so two scrape intervals later (nothing counted late, e.g. a retransmission);
2. per-rule series per node equal the packets each verdict rule decided;
3. per-node and cluster-wide series equal the sums of the per-workload figures they
   sum (deleted pods included);
4. phase "churn": a pod added (etcd, namespace, veth, chains) gets its own series with
   exact counts; a deleted pod's per-workload series go stale (absent from an instant
   query) while node and cluster sums keep its counts;
5. phase "rewrite": a policy's rules are rewritten (new rule hashes) and the kernel
   counters of an endpoint chain are zeroed: every total stays monotonic and exact;
6. ``calico-accountant observe --follow`` (a real subprocess) sees the hits of a round
   as they happen, and per workload their packets sum to the counters' increase;
7. latency from a packet counted in the kernel to its appearance in ``/metrics`` and in
   ``observe`` is measured and printed (``-s`` shows it), with a loose upper bound.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path

import pytest

from calico_accountant.felix.naming import veth_name
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.demo.cluster import Cluster, Workload, load_sample_cluster
from calico_accountant_cli.demo.dataplane import program_node, save_command, zero_chains
from calico_accountant_cli.demo.plan import flows_of
from calico_accountant_cli.demo.store import ClusterStore
from calico_accountant_cli.demo.supervisor import (
    ManagedProcess,
    Supervisor,
    calico_accountant_argv,
    wait_for_http,
)
from calico_accountant_cli.demo.traffic import SentFlow, guard_pod, lab_pod, send_flows, start_listeners
from calico_accountant_cli.demo.verdicts import Flow, Outcome, OutcomeKind, outcomes_for
from calico_accountant_cli.demo.wiring import LabCluster, build_lab_cluster
from calico_accountant_cli.hits_client import HitsClient
from calico_accountant_cli.lab.calico_rules import Layout
from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools
from calico_accountant_cli.lab.netns import LabNetwork, list_namespaces
from calico_accountant_cli.lab.traffic import Listener, start_listener
from tests.support.etcd_server import SKIP_REASON as ETCD_SKIP
from tests.support.etcd_server import EtcdServer, etcd_available
from tests.support.kube_api import KubeApiServer
from tests.support.kube_objects import KubeClusterStore
from tests.support.ports import free_port
from tests.support.prometheus_server import SKIP_REASON as PROMETHEUS_SKIP
from tests.support.prometheus_server import PrometheusServer, prometheus_available
from tests.support.skips import kernel_skip_reason

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(200)]

AGENT_INTERVAL = 0.5
BACKEND = Backend.LEGACY

WORKLOAD_POLICY = "calico_accountant_workload_policy_packets_total"
WORKLOAD_NO_POLICY = "calico_accountant_workload_no_policy_drop_packets_total"
WORKLOAD_PROFILE = "calico_accountant_workload_profile_packets_total"
NODE_POLICY = "calico_accountant_node_policy_packets_total"
NODE_NO_POLICY = "calico_accountant_node_no_policy_drop_packets_total"
NODE_RULE = "calico_accountant_node_policy_rule_packets_total"
CLUSTER_POLICY = "calico_accountant_cluster_policy_packets_total"
CLUSTER_NO_POLICY = "calico_accountant_cluster_no_policy_drop_packets_total"

LABELS = {
    WORKLOAD_POLICY: ("node", "namespace", "pod", "app", "direction", "verdict", "tier", "policy_kind",
                      "policy_namespace", "policy"),
    WORKLOAD_NO_POLICY: ("node", "namespace", "pod", "app", "direction", "tier"),
    WORKLOAD_PROFILE: ("node", "namespace", "pod", "app", "direction", "verdict", "profile"),
    NODE_POLICY: ("node", "direction", "verdict", "tier", "policy_kind", "policy_namespace", "policy"),
    NODE_NO_POLICY: ("node", "direction"),
    NODE_RULE: ("node", "direction", "tier", "policy_kind", "policy_namespace", "policy", "rule", "action"),
    CLUSTER_POLICY: ("direction", "verdict", "tier", "policy_kind", "policy_namespace", "policy"),
    CLUSTER_NO_POLICY: ("namespace", "app", "direction"),
}  # fmt: skip

Key = tuple[str, ...]


def _skip_reason() -> str | None:
    # ipset: rule sources are IP sets, as felix renders them
    backend_tools = [t for t in missing_backend_tools((BACKEND,)) if not t.startswith("ip6")]
    kernel = kernel_skip_reason("ip", "ipset", *backend_tools)
    if kernel:
        return kernel
    if not etcd_available():
        return ETCD_SKIP
    if not prometheus_available():
        return PROMETHEUS_SKIP
    return None


# ----------------------------------------------------------------------------- expectations


def _workload_key(o: Outcome) -> tuple[str, Key]:
    base = (o.node, o.namespace, o.pod, o.app, o.direction)
    if o.kind is OutcomeKind.POLICY:
        return WORKLOAD_POLICY, (*base, o.verdict, o.tier, o.policy_kind, o.policy_namespace, o.policy)
    if o.kind is OutcomeKind.NO_POLICY_DROP:
        return WORKLOAD_NO_POLICY, (*base, o.tier)
    return WORKLOAD_PROFILE, (*base, o.verdict, o.profile)


@dataclass
class Expected:
    """Packets per series the system must show, accumulated over the whole run."""

    series: dict[str, Counter[Key]] = field(default_factory=lambda: {name: Counter() for name in LABELS})

    def add(self, outcomes: Sequence[Outcome], packets: int) -> None:
        for o in outcomes:
            family, key = _workload_key(o)
            self.series[family][key] += packets
            if o.kind is OutcomeKind.POLICY:
                self.series[NODE_POLICY][(o.node, o.direction, o.verdict, o.tier, o.policy_kind,
                                          o.policy_namespace, o.policy)] += packets  # fmt: skip
                self.series[CLUSTER_POLICY][(o.direction, o.verdict, o.tier, o.policy_kind,
                                             o.policy_namespace, o.policy)] += packets  # fmt: skip
                self.series[NODE_RULE][(o.node, o.direction, o.tier, o.policy_kind, o.policy_namespace,
                                        o.policy, str(o.rule_index), o.rule_action)] += packets  # fmt: skip
            elif o.kind is OutcomeKind.NO_POLICY_DROP:
                self.series[NODE_NO_POLICY][(o.node, o.direction)] += packets
                self.series[CLUSTER_NO_POLICY][(o.namespace, o.app, o.direction)] += packets

    def workload_keys_of(self, pod: str) -> dict[str, set[Key]]:
        return {
            family: {key for key in self.series[family] if key[2] == pod}
            for family in (WORKLOAD_POLICY, WORKLOAD_NO_POLICY, WORKLOAD_PROFILE)
        }


# ----------------------------------------------------------------------------- observe


class Observer:
    """``calico-accountant observe --follow -o json`` as a subprocess; lines timestamped on arrival."""

    def __init__(self, supervisor: Supervisor, grpc_address: str) -> None:
        self.process: ManagedProcess = supervisor.start(
            "observe", calico_accountant_argv("observe", "--server", grpc_address, "--follow", "-o", "json")
        )
        self.supervisor = supervisor
        self.hits: list[tuple[float, dict[str, object]]] = []
        self._lock = threading.Lock()
        self._offset = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _read(self) -> None:
        # observe writes to its log file (the supervisor's convention); tail it.
        buffer = ""
        while not self._stop.is_set():
            try:
                with open(self.process.log_path) as log:
                    log.seek(self._offset)
                    chunk = log.read()
                    self._offset = log.tell()
            except OSError:
                chunk = ""
            if chunk:
                now = time.time()
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                with self._lock:
                    for line in lines:
                        if line.startswith("{") and '"pod"' in line:
                            self.hits.append((now, json.loads(line)))
            else:
                time.sleep(0.005)

    def snapshot(self) -> list[tuple[float, dict[str, object]]]:
        with self._lock:
            return list(self.hits)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.supervisor.stop(self.process)


def _hit_key(hit: dict[str, object]) -> Key:
    policy = hit.get("policy")
    name = str(policy.get("name", "")) if isinstance(policy, dict) else ""
    return (str(hit["namespace"]), str(hit["pod"]), str(hit["direction"]), str(hit["verdict"]),
            str(hit["kind"]), name, str(hit.get("profile", "")))  # fmt: skip


def _outcome_hit_key(o: Outcome) -> Key:
    kind = {
        OutcomeKind.POLICY: "policy_accept" if o.verdict == "accept" else "policy_deny",
        OutcomeKind.NO_POLICY_DROP: "no_policy_drop",
        OutcomeKind.PROFILE: "profile_accept" if o.verdict == "accept" else "no_profile_drop",
    }[o.kind]
    return (o.namespace, o.pod, o.direction, o.verdict, kind, o.policy, o.profile)


# ----------------------------------------------------------------------------- the system


@dataclass
class System:
    layout: Layout
    cluster: Cluster
    store: ClusterStore | KubeClusterStore
    wired: LabCluster
    supervisor: Supervisor
    prometheus: PrometheusServer
    metrics_port: int
    grpc_address: str
    listeners: dict[str, Listener]
    expected: Expected = field(default_factory=Expected)
    latencies_metrics: list[tuple[float, float]] = field(default_factory=list)
    latencies_observe: list[tuple[float, float]] = field(default_factory=list)
    """(lower bound, upper bound): from the probe's return / from its start."""
    deferred: list[str] = field(default_factory=list)
    nftables: bool = False
    """The nodes are in felix's nftables mode (``table ip calico``)."""

    # -- traffic ---------------------------------------------------------------------------
    def send(self, flows: Sequence[tuple[Flow, int]]) -> list[SentFlow]:
        """Send flows; every attempt must be answered iff Calico accepts it; book the outcomes."""
        sent = send_flows(self.wired, flows)
        problems = []
        for item in sent:
            outcomes = outcomes_for(self.cluster, self.layout, [item.flow])
            accepted = all(o.verdict == "accept" for o in outcomes)
            if item.answered != (item.attempts if accepted else 0):
                problems.append(f"{item.flow}: {item.answered}/{item.attempts} answered, accepted={accepted}")
            self.expected.add(outcomes, item.attempts)
        assert not problems, "the dataplane disagrees with Calico semantics:\n" + "\n".join(problems)
        return sent

    # -- reading the system ----------------------------------------------------------------
    def prometheus_series(self, family: str) -> Counter[Key]:
        out: Counter[Key] = Counter()
        for labels, value in self.prometheus.query(family):
            if value != 0:
                out[tuple(labels.get(name, "") for name in LABELS[family])] += int(value)
        return out

    def mismatches(
        self, families: Sequence[str] = tuple(LABELS), *, deleted: Sequence[str] = ()
    ) -> list[str]:
        problems = []
        for family in families:
            want = Counter({k: v for k, v in self.expected.series[family].items() if v})
            if family in (WORKLOAD_POLICY, WORKLOAD_NO_POLICY, WORKLOAD_PROFILE):
                want = Counter({k: v for k, v in want.items() if k[2] not in deleted})
            got = self.prometheus_series(family)
            for key in sorted(set(want) | set(got)):
                if want[key] != got[key]:
                    problems.append(f"{family}{dict(zip(LABELS[family], key, strict=True))}: "
                                    f"prometheus {got[key]}, sent {want[key]}")  # fmt: skip
        return problems

    def assert_exact(self, phase: str, *, deleted: Sequence[str] = (), timeout: float = 25.0) -> None:
        """Prometheus shows exactly the expected figures, and still does two scrapes later.

        The cluster-wide no-policy drops (by namespace and app) are checked too, but a
        mismatch there is collected in :attr:`deferred` and fails the test at its end, so
        that the later phases (and the latency figures) still run: see the report on
        retired counters of a deleted pod."""
        families = tuple(family for family in LABELS if family != CLUSTER_NO_POLICY)
        with contextlib.suppress(TimeoutError):
            self.prometheus.wait_for(
                lambda: not self.mismatches(families, deleted=deleted), timeout=timeout, interval=0.3
            )
        problems = self.mismatches(families, deleted=deleted)
        assert not problems, "\n".join(problems)
        time.sleep(2.5)  # two more scrapes and several agent reads: nothing counted late
        problems = self.mismatches(families, deleted=deleted)
        assert not problems, "\n".join(problems)
        self.assert_sums()
        self.deferred += [f"{phase}: {p}" for p in self.mismatches([CLUSTER_NO_POLICY], deleted=deleted)]

    def assert_sums(self) -> None:
        """Node and cluster series equal the sums of the per-workload figures (deleted pods included)."""
        workload = self.expected.series[WORKLOAD_POLICY]
        node: Counter[Key] = Counter()
        cluster: Counter[Key] = Counter()
        for (n, _ns, _pod, _app, direction, verdict, tier, kind, pns, policy), value in workload.items():
            node[(n, direction, verdict, tier, kind, pns, policy)] += value
            cluster[(direction, verdict, tier, kind, pns, policy)] += value
        assert self.prometheus_series(NODE_POLICY) == +node
        assert self.prometheus_series(CLUSTER_POLICY) == +cluster
        drops = self.expected.series[WORKLOAD_NO_POLICY]
        node_drops: Counter[Key] = Counter()
        cluster_drops: Counter[Key] = Counter()
        for (n, ns, _pod, app, direction, _tier), value in drops.items():
            node_drops[(n, direction)] += value
            cluster_drops[(ns, app, direction)] += value
        assert self.prometheus_series(NODE_NO_POLICY) == +node_drops
        if self.prometheus_series(CLUSTER_NO_POLICY) != +cluster_drops:
            self.deferred.append(
                f"cluster no-policy drops are not the sums of the workloads': {+cluster_drops}"
            )

    def wait_for_reads_after(self, moment: float, timeout: float = 15.0) -> None:
        """Until every node's agent has delivered a snapshot read after ``moment``."""
        with HitsClient(self.grpc_address) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                nodes = client.list_nodes().nodes
                times = [
                    n.last_snapshot_time.ToDatetime(tzinfo=UTC).timestamp() for n in nodes if n.connected
                ]
                if len(times) == len(self.cluster.nodes) and all(t > moment for t in times):
                    return
                time.sleep(0.05)
        raise AssertionError(f"agents did not report a read after {moment}")

    def metrics_value(self, pattern: re.Pattern[str]) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(int(float(m.group(1))) for m in pattern.finditer(text))

    # -- changes ---------------------------------------------------------------------------
    def reprogram(self, reset_chains: frozenset[str] = frozenset()) -> None:
        for node in self.cluster.nodes:
            program_node(self.wired.nodes[node], self.cluster, node, self.layout, backend=BACKEND,
                         reset_chains=reset_chains, nftables=self.nftables)  # fmt: skip


@pytest.fixture
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    layout, datastore, *dataplane = request.param
    nftables = dataplane == ["nftables"]
    if nftables and shutil.which("nft") is None:
        pytest.skip("nft is not installed (Debian package nftables)")
    cluster = load_sample_cluster()
    with contextlib.ExitStack() as stack:
        store: ClusterStore | KubeClusterStore
        if datastore == "kubernetes":
            store = KubeClusterStore(stack.enter_context(KubeApiServer(tmp_path / "kube-api")))
            datastore_args = store.args
        else:
            etcd = stack.enter_context(EtcdServer())
            store = stack.enter_context(ClusterStore(f"etcd://{etcd.endpoint}"))
            datastore_args = ["--datastore", store.spec]
        lab = stack.enter_context(LabNetwork())
        store.write(cluster)
        wired = build_lab_cluster(lab, cluster)
        for node in cluster.nodes:
            program_node(
                wired.nodes[node], cluster, node, layout, backend=BACKEND, fresh=True, nftables=nftables
            )
        for workload in cluster.workloads:
            guard_pod(wired, workload, BACKEND)
        listeners = start_listeners(wired, cluster.workloads, flows_of(cluster))
        metrics_port, grpc_port = free_port(), free_port()
        with Supervisor(log_dir=tmp_path) as supervisor:
            aggregator = supervisor.start(
                "aggregator",
                calico_accountant_argv(
                    "aggregator", "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
                    "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port),
                    "--health-host", "127.0.0.1", "--health-port", "0",
                    *datastore_args, "--retired-grace", "1",
                ),
            )  # fmt: skip
            wait_for_http(f"http://127.0.0.1:{metrics_port}/metrics", 30, aggregator)
            for node in cluster.nodes:
                supervisor.start(
                    f"agent-{node}",
                    calico_accountant_argv(
                        "agent", "--node", node, "--aggregator", f"127.0.0.1:{grpc_port}",
                        "--interval", str(AGENT_INTERVAL), "--no-ipv6", "--listen", "127.0.0.1:0",
                        "--nft-list" if nftables else "--iptables-save",
                        save_command(wired.nodes[node], BACKEND, nftables=nftables),
                    ),
                )  # fmt: skip
            with PrometheusServer([f"127.0.0.1:{metrics_port}"]) as prometheus:
                prometheus.wait_for_target_up()
                yield System(
                    layout, cluster, store, wired, supervisor, prometheus, metrics_port,
                    f"127.0.0.1:{grpc_port}", listeners, nftables=nftables,
                )  # fmt: skip
                supervisor.check()
    assert list_namespaces(lab.prefix) == [], "namespaces left behind"


def _new_cart(cluster: Cluster) -> Workload:
    """A second cart pod, on the other node, with the labels the policies select on."""
    old = next(w for w in cluster.workloads if w.app == "cart")
    node = next(n for n in cluster.nodes if n != old.node)
    pod = "cart-5f7c6b9d4-zz9kq"
    return replace(old, node=node, pod=pod, interface=veth_name(old.namespace, pod), ipv4="169.254.20.15")


@pytest.mark.parametrize(
    "system",
    [
        (Layout.V3_27, "etcd"),
        (Layout.V3_30, "etcd"),
        (Layout.V3_30, "kubernetes"),
        (Layout.V3_30, "etcd", "nftables"),
    ],
    indirect=True,
    ids=["v3.27", "v3.30", "v3.30-kdd", "v3.30-nftables"],
)
def test_end_to_end(system: System) -> None:
    s = system
    flows = flows_of(s.cluster)

    # -- phase 1: two rounds of the plan; observe --follow watches the second ---------------
    s.send(flows)
    s.assert_exact("round 1")
    observer = Observer(s.supervisor, s.grpc_address)
    watchers = re.compile(r"^calico_accountant_hits_watch_streams (\S+)$", re.MULTILINE)
    s.prometheus.wait_for(lambda: s.metrics_value(watchers) >= 1, timeout=15)
    round_two: Counter[Key] = Counter()
    for item in s.send(flows):
        for o in outcomes_for(s.cluster, s.layout, [item.flow]):
            round_two[_outcome_hit_key(o)] += item.attempts
    s.assert_exact("round 2")
    time.sleep(0.5)
    observed: Counter[Key] = Counter()
    for _arrival, hit in observer.snapshot():
        if hit["kind"] != "policy_rule":
            observed[_hit_key(hit)] += int(str(hit["packets"]))
    assert +observed == +round_two, "observe --follow hits must sum to the counters' increase"
    if s.nftables:  # felix's nftables mode: ListNodes says what the agents read
        with HitsClient(s.grpc_address) as client:
            dataplanes = {n.node: list(n.dataplanes) for n in client.list_nodes().nodes}
        assert dataplanes == {node: [spb.NFTABLES] for node in s.cluster.nodes}

    # -- phase 2: a pod is added and another deleted while everything runs -----------------
    new_cart = _new_cart(s.cluster)
    old_cart = next(w for w in s.cluster.workloads if w.app == "cart")
    s.cluster = s.cluster.with_workload(new_cart)
    s.store.write(s.cluster)
    s.wired.add_pod(new_cart)
    guard_pod(s.wired, new_cart, BACKEND)
    ports = sorted({f.port for f, _ in flows_of(s.cluster) if f.dest.pod == new_cart.pod and f.port})
    s.listeners[new_cart.pod] = start_listener(s.wired.lab, lab_pod(s.wired, new_cart), ports)
    s.reprogram()
    # the old cart goes away: its listener, its chains (felix first), then its WorkloadEndpoint
    s.listeners.pop(old_cart.pod).stop()
    s.cluster = s.cluster.without_workload(old_cart.pod)
    s.reprogram()
    s.wired.remove_pod(old_cart)
    s.wait_for_reads_after(time.time())
    s.store.write(s.cluster)
    s.send(flows_of(s.cluster))
    assert s.expected.workload_keys_of(new_cart.pod)[WORKLOAD_POLICY], "the new pod got no policy traffic"
    s.assert_exact("pod churn", deleted=[old_cart.pod], timeout=45)
    stale = s.prometheus.query(f'{{__name__=~"calico_accountant_workload_.*",pod="{old_cart.pod}"}}')
    assert stale == [], f"the deleted pod's series are still exported: {stale[:3]}"

    # -- phase 3: a policy's rules are rewritten and an endpoint chain's counters reset ------
    rewritten = s.cluster.policy("knp.default.allow-frontend-to-catalog", "shop")
    rules = tuple(replace(rule, ports=(*rule.ports, 8081)) for rule in rewritten.ingress)
    s.cluster = s.cluster.with_policy(replace(rewritten, ingress=rules))
    s.store.write(s.cluster)
    s.reprogram()
    catalog = next(w for w in s.cluster.workloads if w.app == "catalog")
    zero_chains(
        s.wired.nodes[catalog.node],
        frozenset({f"cali-tw-{catalog.interface}"}),
        backend=BACKEND,
        nftables=s.nftables,
    )
    s.wait_for_reads_after(time.time())
    s.send(flows_of(s.cluster))
    s.assert_exact("policy rewrite", deleted=[old_cart.pod])
    for selector in (
        f'calico_accountant_workload_policy_packets_total{{pod="{catalog.pod}"}}',
        f'calico_accountant_workload_no_policy_drop_packets_total{{pod="{catalog.pod}"}}',
        'calico_accountant_node_policy_rule_packets_total{policy="allow-frontend-to-catalog"}',
        'calico_accountant_cluster_policy_packets_total{policy="allow-frontend-to-catalog"}',
    ):
        assert s.prometheus.value(f"sum(resets({selector}[10m]))") == 0.0, f"{selector} went down"

    # -- phase 4: latency, kernel count -> /metrics and -> observe ---------------------------
    grafana = next(w for w in s.cluster.workloads if w.app == "grafana")
    source = next(w for w in s.cluster.workloads if w.app == "catalog")
    flow = Flow(source, grafana, "icmp")
    series = re.compile(
        r'^calico_accountant_workload_profile_packets_total\{[^}]*pod="' + re.escape(grafana.pod)
        + r'"[^}]*direction="ingress"[^}]*\} (\S+)$',
        re.MULTILINE,
    )  # fmt: skip
    for sample in range(8):
        time.sleep(0.13 * sample % AGENT_INTERVAL)  # spread the sends over the read cycle
        before = s.metrics_value(series)
        hits_before = len(observer.snapshot())
        launched = time.time()  # the kernel counts the echo request after this...
        s.send([(flow, 1)])
        counted = time.time()  # ...and before the probe has returned
        while s.metrics_value(series) == before:
            assert time.time() - counted < 10, "the packet never reached /metrics"
            time.sleep(0.005)
        seen = time.time()
        s.latencies_metrics.append((seen - counted, seen - launched))
        deadline = counted + 10
        while True:
            new = [
                arrival for arrival, hit in observer.snapshot()[hits_before:]
                if hit["pod"] == grafana.pod and hit["direction"] == "ingress"
            ]  # fmt: skip
            if new:
                s.latencies_observe.append((new[0] - counted, new[0] - launched))
                break
            assert time.time() < deadline, "the packet never reached observe"
            time.sleep(0.005)
    observer.stop()
    s.assert_exact("latency", deleted=[old_cart.pod])
    print(
        f"\n[{s.layout.value}] latency, kernel count -> visible (agent interval {AGENT_INTERVAL}s, "
        f"{len(s.latencies_metrics)} samples; lower-upper bound): /metrics {_spread(s.latencies_metrics)}; "
        f"observe --follow {_spread(s.latencies_observe)}"
    )
    assert max(upper for _, upper in s.latencies_metrics) < 3 * AGENT_INTERVAL + 2
    assert max(upper for _, upper in s.latencies_observe) < 3 * AGENT_INTERVAL + 2
    assert not s.deferred, "a deleted pod's counts must stay in the cluster sums:\n" + "\n".join(s.deferred)


def _spread(samples: Sequence[tuple[float, float]]) -> str:
    lower = [low for low, _ in samples]
    upper = [high for _, high in samples]
    return (
        f"min {min(lower):.3f}-{min(upper):.3f}s, median {statistics.median(lower):.3f}-"
        f"{statistics.median(upper):.3f}s, max {max(lower):.3f}-{max(upper):.3f}s"
    )
