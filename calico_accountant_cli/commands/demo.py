"""``calico-accountant demo``: the whole system on the bundled sample cluster, in one command."""

from __future__ import annotations

import argparse
from typing import Any

from calico_accountant.runtime.flags import FlagSet, non_negative_float, port, positive_float
from calico_accountant_cli.commands.command import add_command


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "demo",
        help="run the whole system on a bundled sample cluster: simulated nodes, real traffic, "
        "real agents and aggregator, a live summary",
        description="Runs an aggregator on the bundled sample cluster and one node agent per simulated node. "
        "As root, each node is a network namespace with a felix-shaped filter table rendered from the "
        "sample's Calico policies and real TCP connections and pings flow between pod namespaces; "
        "without root or iptables, the agents replay the bundled node dumps with advancing counters. "
        "Prints the /metrics URL, the gRPC address and a live summary; Ctrl-C or SIGTERM stops "
        "every process and deletes every namespace it created.",
        examples=(
            "sudo calico-accountant demo",
            "calico-accountant demo --replay --duration 60 --plain",
            "# the sample cluster in a real etcd, the v3.27 layout",
            "sudo calico-accountant demo --datastore etcd://127.0.0.1:2379 --layout v3.27",
        ),
    )
    flags = FlagSet(parser)
    flags.add(
        "--datastore",
        default=None,
        metavar="etcd://HOST:PORT",
        shown_default="the bundled sample in a file: datastore",
        help="write the sample cluster into this etcd (as Calico stores it) and read it from there",
    )
    flags.add("--layout", choices=("v3.27", "v3.30"), default="v3.30", help="felix layout")
    flags.add("--duration", type=non_negative_float, default=0.0, help="seconds to run; 0: until Ctrl-C")
    flags.add("--metrics-port", type=port, default=9009, help="aggregator /metrics port; 0 picks one")
    flags.add("--grpc-port", type=port, default=9010, help="aggregator gRPC port; 0 picks one")
    flags.add(
        "--no-traffic", action="store_true", default=False, help="set everything up but send no traffic"
    )
    flags.add("--interval", type=positive_float, default=2.0, help="agents' read interval, seconds")
    flags.add("--traffic-period", type=positive_float, default=2.0, help="seconds between traffic rounds")
    flags.add("--refresh", type=positive_float, default=2.0, help="seconds between summary updates")
    mode = FlagSet(parser.add_mutually_exclusive_group())
    mode.add("--replay", action="store_true", default=False, help="replay bundled dumps even when root")
    mode.add("--kernel", action="store_true", default=False, help="fail instead of falling back to replay")
    flags.add(
        "--iptables-backend",
        choices=("legacy", "nft"),
        default="legacy",
        help="iptables of the simulated nodes",
    )
    flags.add(
        "--plain",
        action="store_true",
        default=False,
        help="print successive summaries instead of redrawing one screen",
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
        screen=False if args.plain else None,
        refresh=args.refresh,
    )
    return run_demo(options)
