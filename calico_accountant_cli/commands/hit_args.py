"""Flags shared by ``observe``, ``top`` and ``nodes`` (argparse only: cheap to import,
since every subcommand registers at start-up)."""

from __future__ import annotations

from typing import Any

from calico_accountant.contract import DEFAULT_AGGREGATOR_ADDRESS
from calico_accountant.records import Verdict
from calico_accountant.runtime.client_tls import add_client_tls_arguments
from calico_accountant.runtime.flags import ENV_PREFIX, FlagSet, non_negative_int, positive_float

VERDICT_CHOICES = tuple(verdict.value for verdict in Verdict)


def add_server_argument(parser: Any) -> None:
    flags = FlagSet(parser)
    flags.add(
        "--server",
        default=DEFAULT_AGGREGATOR_ADDRESS,
        env=f"{ENV_PREFIX}SERVER",
        metavar="HOST:PORT",
        help="the aggregator's gRPC address",
    )
    flags.add("--timeout", type=positive_float, default=10.0, help="seconds to wait for the server")
    add_client_tls_arguments(flags)


def add_filter_arguments(parser: Any) -> None:
    """Filters; each may be repeated (values of one filter are alternatives)."""
    group = FlagSet(parser).group("filters (repeat a flag to allow several values)")
    group.add("--node", action="append", default=[], help="node name")
    group.add("--namespace", "-n", action="append", default=[], help="workload namespace")
    group.add("--pod", action="append", default=[], help="pod name, or namespace/pod")
    group.add("--app", action="append", default=[], help="the pod's app label")
    group.add("--policy", action="append", default=[], help="policy name, or namespace/name")
    group.add("--verdict", action="append", default=[], choices=VERDICT_CHOICES, help="the verdict")
    group.add("--direction", action="append", default=[], choices=("ingress", "egress"), help="the direction")
    group.add(
        "--min-packets", type=non_negative_int, default=0, help="only hits of at least this many packets"
    )
