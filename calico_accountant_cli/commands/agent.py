"""``calico-accountant agent``: the per-node agent (reads iptables, streams to the aggregator)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "agent",
        help="run the node agent: read the filter tables every interval and stream them to the aggregator",
        description="Reads the node's iptables filter tables every --interval and streams the counters "
        "to the aggregator over one long-lived gRPC stream. Serves /healthz, /readyz and /metrics.",
    )
    from node_agent.agent import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from node_agent.agent import run

    return run(args)
