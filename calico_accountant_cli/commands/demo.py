"""``calico-accountant demo``: the whole system on the bundled sample cluster, in one command."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole system on a bundled sample cluster: simulated nodes, real traffic, "
        "real agents and aggregator, a live summary",
        description="Runs an aggregator on the bundled sample cluster and one node agent per simulated node. "
        "As root, each node is a network namespace with a felix-shaped filter table rendered from the "
        "sample's Calico policies and real TCP connections and pings flow between pod namespaces; "
        "without root or iptables, the agents replay the bundled node dumps with advancing counters. "
        "Prints the /metrics URL, the gRPC address and a live summary; Ctrl-C or SIGTERM stops "
        "every process and deletes every namespace it created.",
    )
    parser.add_argument(
        "--datastore",
        default=None,
        metavar="etcd://HOST:PORT",
        help="write the sample cluster into this etcd (as Calico stores it) and read it from there; "
        "default: the bundled sample in a file: datastore",
    )
    parser.add_argument(
        "--layout", choices=["v3.27", "v3.30"], default="v3.30", help="felix layout (default v3.30)"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run; 0 (default) until Ctrl-C"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9009, help="aggregator /metrics port; 0 picks one"
    )
    parser.add_argument("--grpc-port", type=int, default=9010, help="aggregator gRPC port; 0 picks one")
    parser.add_argument("--no-traffic", action="store_true", help="set everything up but send no traffic")
    parser.add_argument("--interval", type=float, default=2.0, help="agents' read interval (default 2s)")
    parser.add_argument("--traffic-period", type=float, default=2.0, help="seconds between traffic rounds")
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between summary updates")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replay", action="store_true", help="replay bundled dumps even when root")
    mode.add_argument("--kernel", action="store_true", help="fail instead of falling back to replay")
    parser.add_argument("--iptables-backend", choices=["legacy", "nft"], default="legacy")
    parser.add_argument(
        "--dataplane",
        choices=["iptables", "nftables"],
        default="iptables",
        help="felix's dataplane on the nodes: iptables (default) or nftables (felix's nftables mode, "
        "table ip calico; the agents read it with --nft-list)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="print successive summaries instead of redrawing one screen"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from calico_accountant_cli.demo.run import DemoOptions, run_demo
    from calico_accountant_cli.lab.calico_rules import Layout
    from calico_accountant_cli.lab.iptables import Backend

    for name in ("duration", "interval", "traffic_period", "refresh"):
        value = getattr(args, name)
        if value < 0 or (name != "duration" and value == 0):
            print(f"calico-accountant demo: --{name.replace('_', '-')} must be positive")
            return 2
    options = DemoOptions(
        datastore=args.datastore,
        layout=Layout(args.layout),
        duration=args.duration,
        metrics_port=args.metrics_port,
        grpc_port=args.grpc_port,
        traffic=not args.no_traffic,
        interval=args.interval,
        traffic_period=args.traffic_period,
        mode="replay" if args.replay else "kernel" if args.kernel else "auto",
        backend=Backend(args.iptables_backend),
        nftables=args.dataplane == "nftables",
        screen=False if args.plain else None,
        refresh=args.refresh,
    )
    if options.nftables and options.layout is not Layout.V3_30:
        print("calico-accountant demo: --dataplane nftables needs --layout v3.30 (felix's nft names)")
        return 2
    return run_demo(options)
