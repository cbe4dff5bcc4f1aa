"""``calico-accountant aggregator``: the cluster-wide service (ingest, /metrics, policy-hit API)."""

from __future__ import annotations

import argparse
from typing import Any

from calico_accountant_cli.commands.command import add_command


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "aggregator",
        help="run the aggregator: agents' snapshots in, Prometheus metrics and the policy-hit API out",
        description="Receives the node agents' snapshots over gRPC, resolves interfaces and chains to pods "
        "and policies from the Calico datastore, serves /metrics and the PolicyHits gRPC API.",
        examples=(
            "calico-accountant aggregator --datastore kubernetes",
            "calico-accountant aggregator --datastore etcd://10.0.0.1:2379 --checkpoint etcd",
            "CALICO_ACCOUNTANT_DATASTORE=file:cluster.yaml calico-accountant aggregator --log-format json",
        ),
    )
    from aggregator.flags import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from aggregator.cli import run

    return run(args)
