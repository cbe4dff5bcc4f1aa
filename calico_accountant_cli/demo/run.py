"""``calico-accountant demo``: the whole system on the sample cluster, in one command.

Kernel mode (root, ``ip`` and iptables): every node of the sample cluster is a network
namespace with a felix-shaped filter table rendered from the cluster's Calico objects,
every pod a namespace behind a Calico-named veth, and real TCP connections and pings
flow between pods in rounds (some allowed, some denied explicitly, some dropped by the
default deny, some accepted by a profile).  A real node agent per node reads its
namespace's ``iptables-save -c``; a real aggregator resolves against the datastore (the
sample in a ``file:`` datastore, or written into etcd with ``--datastore etcd://``).

Replay mode (no root or no iptables, or ``--replay``): the same agents and aggregator,
but each agent reads the bundled dump of its node with counters advancing as if the
traffic ran (:mod:`calico_accountant_cli.demo.replay`).

Either way the screen shows the ``/metrics`` URL, the gRPC address and a live summary
from the aggregator's API; Ctrl-C or SIGTERM stops every process (by PID) and deletes
every namespace.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from calico_accountant_cli.demo.cluster import Cluster, load_sample_cluster
from calico_accountant_cli.demo.dataplane import program_node, save_command
from calico_accountant_cli.demo.plan import flows_of
from calico_accountant_cli.demo.store import ClusterStore
from calico_accountant_cli.demo.summary import fetch_summary, render_summary
from calico_accountant_cli.demo.supervisor import (
    ProcessFailed,
    Supervisor,
    calico_accountant_argv,
    free_port,
    wait_for_http,
)
from calico_accountant_cli.hits_client import ClientError, HitsClient
from calico_accountant_cli.lab.calico_rules import Layout
from calico_accountant_cli.lab.iptables import Backend, missing_backend_tools
from calico_accountant_cli.lab.netns import LabNetwork, missing_tools

if TYPE_CHECKING:
    from calico_accountant_cli.demo.verdicts import Flow
    from calico_accountant_cli.demo.wiring import LabCluster

__all__ = ["DemoOptions", "kernel_unavailable_reason", "run_demo"]

_CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    datastore: str | None = None
    """None: the bundled sample in a ``file:`` datastore; else ``etcd://HOST:PORT``."""
    layout: Layout = Layout.V3_30
    duration: float = 0.0
    """Seconds to run; 0 runs until Ctrl-C / SIGTERM."""
    metrics_port: int = 9009
    grpc_port: int = 9010
    """0 picks a free port."""
    traffic: bool = True
    interval: float = 2.0
    """The agents' read interval."""
    traffic_period: float = 2.0
    """Seconds between traffic rounds."""
    mode: str = "auto"
    """``auto``, ``kernel`` or ``replay``."""
    backend: Backend = Backend.LEGACY
    nftables: bool = False
    """Felix's nftables mode: each node's policy in ``table ip calico`` (``nft``), read by the
    agents with ``--nft-list`` (the pods' send guards stay in iptables ``backend``)."""
    screen: bool | None = None
    """Redraw one screen (True), print successive summaries (False), or decide by TTY (None)."""
    refresh: float = 2.0
    prometheus_port: int | None = None
    """Start a real Prometheus with the deploy's rules on this port (0 picks one); None: none."""


def kernel_unavailable_reason(backend: Backend = Backend.LEGACY, *, nftables: bool = False) -> str | None:
    """Why kernel mode cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "not running as root (network namespaces and iptables need it)"
    missing = missing_tools(("ip", "nft") if nftables else ("ip",)) + [
        name for name in missing_backend_tools((backend,)) if not name.startswith("ip6")
    ]
    if missing:
        return f"missing {', '.join(missing)} (Debian packages iproute2, iptables, nftables)"
    return None


class DatastoreError(Exception):
    """The datastore flag is unusable, or the sample cannot be written into it."""


def _open_store(datastore: str | None, cluster: Cluster) -> ClusterStore:
    try:
        store = ClusterStore(datastore)
    except ValueError as error:
        raise DatastoreError(str(error)) from None
    try:
        store.write(cluster)
    except Exception as error:  # aetcd/gRPC errors: say what failed, not a traceback
        store.close()
        raise DatastoreError(f"cannot write the sample cluster into {store.spec}: {error!r}") from None
    return store


class _Screen:
    def __init__(self, out: TextIO, redraw: bool) -> None:
        self.out = out
        self.redraw = redraw

    def show(self, text: str) -> None:
        if self.redraw:
            self.out.write(_CLEAR + text + "\n")
        else:
            self.out.write(text + "\n" + "-" * 60 + "\n")
        self.out.flush()


def _replay_command(node: str, options: DemoOptions, started: float) -> str:
    argv = [
        sys.executable, "-m", "calico_accountant_cli.demo.replay",
        "--node", node, "--layout", options.layout.value,
        "--started", f"{started:.3f}", "--period", str(options.traffic_period),
    ]  # fmt: skip
    if not options.traffic:
        argv.append("--no-traffic")
    return shlex.join(argv)


def _start_system(
    supervisor: Supervisor,
    options: DemoOptions,
    cluster: Cluster,
    store: ClusterStore,
    commands: dict[str, str],
    metrics_port: int,
    grpc_port: int,
    *,
    nft_list: bool = False,
) -> list[str]:
    """Start the aggregator and the agents (``nft_list``: the commands print felix's nft table);
    the agents' ``/metrics`` addresses."""
    aggregator = supervisor.start(
        "aggregator",
        calico_accountant_argv(
            "aggregator",
            "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port),
            "--health-host", "127.0.0.1", "--health-port", "0",
            "--datastore", store.spec,
        ),
    )  # fmt: skip
    wait_for_http(f"http://127.0.0.1:{metrics_port}/metrics", 30.0, aggregator)
    agents = []
    for node in cluster.nodes:
        agents.append(f"127.0.0.1:{free_port()}")
        supervisor.start(
            f"agent-{node}",
            calico_accountant_argv(
                "agent",
                "--node", node, "--aggregator", f"127.0.0.1:{grpc_port}",
                "--interval", str(options.interval),
                "--nft-list" if nft_list else "--iptables-save", commands[node],
                "--no-ipv6", "--listen", agents[-1],
            ),
        )  # fmt: skip
    return agents


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo until ``options.duration`` passes or a signal stops it; returns an exit status."""
    out = out or sys.stdout
    reason = (
        "--replay was given"
        if options.mode == "replay"
        else kernel_unavailable_reason(options.backend, nftables=options.nftables)
    )
    if reason is not None and options.mode == "kernel":
        print(f"calico-accountant demo: cannot run on the kernel: {reason}", file=sys.stderr)
        return 2
    kernel = reason is None
    if not kernel:
        print(
            f"calico-accountant demo: {reason}; falling back to replaying the bundled node dumps "
            "with advancing counters (the agents and the aggregator are real)",
            file=out,
        )
    cluster = load_sample_cluster()
    metrics_port = options.metrics_port or free_port()
    grpc_port = options.grpc_port or free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    grpc_address = f"127.0.0.1:{grpc_port}"
    started = time.time()
    how = "replay of bundled dumps"
    if kernel:
        how = "kernel: namespaces and " + (
            "nftables (felix's nftables mode)" if options.nftables else "iptables"
        )
    header = [
        f"calico-accountant demo ({how}, "
        f"felix {options.layout.value} layout, {len(cluster.nodes)} nodes, {len(cluster.workloads)} pods)",
        f"  /metrics:     {metrics_url}",
        f"  gRPC (hits):  {grpc_address}    e.g. calico-accountant observe --server {grpc_address} --follow",
        "  Ctrl-C to stop",
    ]
    stopped_by = "duration"
    try:
        with contextlib.ExitStack() as stack:
            store = stack.enter_context(_open_store(options.datastore, cluster))
            header.insert(3, f"  datastore:    {store.spec}")
            if options.datastore:
                stack.callback(store.delete, cluster)
            flows = flows_of(cluster)
            commands: dict[str, str] = {}
            wired: LabCluster | None = None
            if kernel:
                from calico_accountant_cli.demo.traffic import guard_pod, start_listeners
                from calico_accountant_cli.demo.wiring import build_lab_cluster

                lab = stack.enter_context(LabNetwork())
                wired = build_lab_cluster(lab, cluster)
                for node in cluster.nodes:
                    program_node(
                        wired.nodes[node],
                        cluster,
                        node,
                        options.layout,
                        backend=options.backend,
                        fresh=True,
                        nftables=options.nftables,
                    )
                    commands[node] = save_command(
                        wired.nodes[node], options.backend, nftables=options.nftables
                    )
                for workload in cluster.workloads:
                    guard_pod(wired, workload, options.backend)
                start_listeners(wired, cluster.workloads, flows)
            else:
                commands = {node: _replay_command(node, options, started) for node in cluster.nodes}
            supervisor = stack.enter_context(Supervisor())
            agents = _start_system(
                supervisor,
                options,
                cluster,
                store,
                commands,
                metrics_port,
                grpc_port,
                nft_list=kernel and options.nftables,
            )
            if options.prometheus_port is not None:
                from calico_accountant_cli.demo.prometheus import DEMO_FOR, start_prometheus

                prometheus_port = options.prometheus_port or free_port()
                start_prometheus(
                    supervisor, supervisor.log_dir, prometheus_port, f"127.0.0.1:{metrics_port}", agents
                )
                header.insert(
                    -1,
                    f"  Prometheus:   http://127.0.0.1:{prometheus_port}/alerts    (the deploy's rules; "
                    f"alerts fire after {DEMO_FOR}, not 5-15m, and drop alerts above 0 flows/s)",
                )
            print("\n".join(header), file=out, flush=True)
            client = stack.enter_context(HitsClient(grpc_address, timeout=5.0))
            redraw = options.screen if options.screen is not None else out.isatty()
            screen = _Screen(out, redraw)
            stopped_by = _loop(options, supervisor, client, screen, header, wired, flows, started)
    except KeyboardInterrupt:
        stopped_by = "Ctrl-C"
    except SystemExit as stop:
        stopped_by = f"signal (exit {stop.code})"
    except ProcessFailed as error:
        print(f"calico-accountant demo: {error}", file=sys.stderr)
        return 1
    except DatastoreError as error:
        print(f"calico-accountant demo: {error}", file=sys.stderr)
        return 2
    print(
        f"calico-accountant demo: stopped ({stopped_by}); every process and namespace it made is gone",
        file=out,
    )
    return 0


def _loop(
    options: DemoOptions,
    supervisor: Supervisor,
    client: HitsClient,
    screen: _Screen,
    header: Sequence[str],
    wired: LabCluster | None,
    flows: Sequence[tuple[Flow, int]],
    started: float,
) -> str:
    from calico_accountant_cli.demo.traffic import send_flows

    deadline = started + options.duration if options.duration > 0 else float("inf")
    next_traffic = time.time()
    next_refresh = time.time() + min(1.0, options.refresh)
    while True:
        now = time.time()
        if now >= deadline:
            return "duration"
        supervisor.check()
        if wired is not None and options.traffic and now >= next_traffic:
            send_flows(wired, flows)
            next_traffic = max(next_traffic + options.traffic_period, time.time())
        if now >= next_refresh:
            try:
                shown = header if screen.redraw else header[:1]
                text = render_summary(fetch_summary(client), header=shown, elapsed=now - started)
            except ClientError as error:
                text = "\n".join([*header, f"waiting for the aggregator: {error}"])
            screen.show(text)
            next_refresh = now + options.refresh
        time.sleep(max(0.0, min(0.2, deadline - time.time())))
