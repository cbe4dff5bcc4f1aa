"""Flags shared by ``observe``, ``top`` and ``nodes`` (argparse only: cheap to import,
since every subcommand registers at start-up)."""

from __future__ import annotations

import os
from typing import Any

from calico_accountant.contract import DEFAULT_AGGREGATOR_ADDRESS
from calico_accountant.runtime.client_tls import add_client_tls_arguments


def add_server_argument(parser: Any) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("CALICO_ACCOUNTANT_SERVER", DEFAULT_AGGREGATOR_ADDRESS),
        metavar="HOST:PORT",
        help="the aggregator's gRPC address "
        f"(default: $CALICO_ACCOUNTANT_SERVER or {DEFAULT_AGGREGATOR_ADDRESS})",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the server (default 10)"
    )
    add_client_tls_arguments(parser)


def add_filter_arguments(parser: Any) -> None:
    """Filters; each may be repeated (values of one filter are alternatives)."""
    group = parser.add_argument_group("filters (repeat a flag to allow several values)")
    group.add_argument("--node", action="append", default=[], help="node name")
    group.add_argument("--namespace", "-n", action="append", default=[], help="workload namespace")
    group.add_argument("--pod", action="append", default=[], help="pod name, or namespace/pod")
    group.add_argument("--app", action="append", default=[], help="the pod's app label")
    group.add_argument("--policy", action="append", default=[], help="policy name, or namespace/name")
    group.add_argument("--verdict", action="append", default=[], help="accept, deny, pass or log")
    group.add_argument("--direction", action="append", default=[], help="ingress or egress")
    group.add_argument("--min-packets", type=int, default=0, help="only hits of at least this many packets")
