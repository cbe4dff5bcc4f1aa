"""``calico-accountant agent``: the per-node agent (reads iptables, streams to the aggregator)."""

from __future__ import annotations

import argparse
from typing import Any

from calico_accountant_cli.commands.command import add_command


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "agent",
        help="run the node agent: read the filter tables every interval and stream them to the aggregator",
        description="Reads the node's iptables filter tables every --interval and streams the counters "
        "to the aggregator over one long-lived gRPC stream. Serves /healthz, /readyz and /metrics.",
        examples=(
            "calico-accountant agent --aggregator calico-accountant.calico-accountant:9010",
            "# read a saved dump instead of the node's tables",
            "calico-accountant agent --node node-a --iptables-save 'cat node-a.save' --no-ipv6",
            "NODENAME=node-a CALICO_ACCOUNTANT_LOG_FORMAT=json calico-accountant agent",
        ),
    )
    from node_agent.flags import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from node_agent.agent import run

    return run(args)
