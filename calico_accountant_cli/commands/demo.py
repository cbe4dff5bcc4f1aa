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
            "# and a real Prometheus with the deploy's alerts, at http://127.0.0.1:9090/alerts",
            "sudo calico-accountant demo --with-prometheus 9090",
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
    prometheus = FlagSet(parser.add_mutually_exclusive_group())
    prometheus.add(
        "--with-prometheus",
        nargs="?",
        type=port,
        const=0,
        default=None,
        metavar="PORT",
        shown_default="off; PORT defaults to a free one",
        help="also run a real Prometheus scraping the demo, with deploy/monitoring's recording rules and "
        "alerts (each alert's 'for' cut to 1m, the drop alerts' thresholds to 0) so its alerts fire on the "
        "demo's default-deny drops",
    )
    prometheus.add(
        "--prometheus-config",
        action="store_true",
        default=False,
        help="print a Prometheus configuration for the demo's aggregator (honor_labels, the deploy's rule "
        "file) and exit",
    )
    flags.add(
        "--dataplane",
        choices=("iptables", "nftables"),
        default="iptables",
        help="felix's dataplane on the nodes: iptables or nftables (felix's nftables mode, table ip calico; "
        "the agents read it with --nft-list)",
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

    if args.prometheus_config:
        return _print_prometheus_config(args)
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
        prometheus_port=args.with_prometheus,
    )
    if options.nftables and options.layout is not Layout.V3_30:
        print("calico-accountant demo: --dataplane nftables needs --layout v3.30 (felix's nft names)")
        return 2
    if options.prometheus_port is not None:
        from calico_accountant_cli.demo.prometheus import missing_prometheus

        missing = missing_prometheus()
        if missing is not None:
            print(f"calico-accountant demo: --with-prometheus: {missing}")
            return 2
    return run_demo(options)


def _print_prometheus_config(args: argparse.Namespace) -> int:
    from calico_accountant_cli.demo.prometheus import RULES, prometheus_config

    rules = [str(RULES)] if RULES.is_file() else []
    print(f"# calico-accountant demo: scrape its aggregator; the deploy's rules ({RULES})", end="\n")
    print(prometheus_config(f"127.0.0.1:{args.metrics_port or 9009}", [], rules, interval="15s"), end="")
    return 0
