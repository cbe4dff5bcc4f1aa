"""``calico-accountant nodes``: the nodes the aggregator knows and the state of their agents."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from calico_accountant.runtime.flags import FlagSet
from calico_accountant.wire.snapshots import dataplane_name
from calico_accountant_cli.commands.command import add_command
from calico_accountant_cli.terminal import terminal_safe


def register(subparsers: Any) -> None:
    from calico_accountant_cli.commands.hit_args import add_server_argument

    parser = add_command(
        subparsers,
        "nodes",
        help="list nodes with their agent's state (connected, last snapshot, sequence, diagnostics)",
        description="Lists the nodes the aggregator has heard from, whether their agent is connected, "
        "when it last read its tables, and the parse diagnostics it reported.",
        examples=("calico-accountant nodes --server aggregator:9010", "calico-accountant nodes -o json"),
    )
    add_server_argument(parser)
    FlagSet(parser).add("-o", "--output", choices=("table", "json"), default="table", help="output form")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from google.protobuf import json_format

    from calico_accountant_cli.hit_format import age_text
    from calico_accountant_cli.hits_client import ClientError, HitsClient

    try:
        with HitsClient.from_args(args) as client:
            status = client.server_status()
            nodes = client.list_nodes()
    except ClientError as error:
        print(f"calico-accountant nodes: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(
            json.dumps(
                {
                    "server": json_format.MessageToDict(status, preserving_proto_field_name=True),
                    "nodes": [
                        json_format.MessageToDict(n, preserving_proto_field_name=True) for n in nodes.nodes
                    ],
                },
                indent=2,
            )
        )
        return 0
    now = datetime.now(UTC)
    print(
        terminal_safe(
            f"aggregator {status.version}: {status.agents_connected} of {status.nodes_known} agents "
            f"connected, up {status.uptime.seconds}s"
        )
    )
    print(f"{'NODE':<24} {'AGENT':<13} {'LAST SNAPSHOT':<14} {'SEQUENCE':>8}  {'DATAPLANE':<16} DIAGNOSTICS")
    for node in nodes.nodes:
        state = "connected" if node.connected else "disconnected"
        if node.stale:
            state += ",stale"
        last = (
            age_text(node.last_snapshot_time.ToDatetime(tzinfo=UTC), now)
            if node.HasField("last_snapshot_time")
            else "never"
        )
        diagnostics = ", ".join(
            f"{code}={count}" for code, count in sorted(node.diagnostic_counts.items()) if count
        )
        dataplane = "+".join(dataplane_name(value) for value in node.dataplanes) or "-"
        print(
            terminal_safe(
                f"{node.node:<24} {state:<13} {last:<14} {node.sequence:>8}  "
                f"{dataplane:<16} {diagnostics or '-'}"
            )
        )
    return 0
