"""Flags shared by ``observe``, ``top`` and ``nodes`` (argparse only: cheap to import,
since every subcommand registers at start-up)."""

from __future__ import annotations

import argparse
from typing import Any

from calico_accountant.contract import DEFAULT_AGGREGATOR_ADDRESS
from calico_accountant.records import Verdict
from calico_accountant.runtime.client_tls import add_client_tls_arguments
from calico_accountant.runtime.flags import ENV_PREFIX, FlagSet, non_negative_int, positive_float

__all__ = ["VERDICT_CHOICES", "add_filter_arguments", "add_server_argument", "check_negation"]

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


class _Negate(argparse.Action):
    """``--not``: the next filter flag excludes instead of selects (``hubble observe --not``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        namespace.negate_next = True


class _Filter(argparse.Action):
    """A filter flag: appends its value (``--min-packets`` sets it), or, right after
    ``--not``, records it in ``excluded`` as (field, value)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if getattr(namespace, "negate_next", False):
            namespace.excluded = [*getattr(namespace, "excluded", []), (self.dest, values)]
            namespace.negate_next = False
        elif self.dest == "min_packets":
            setattr(namespace, self.dest, values)
        else:
            setattr(namespace, self.dest, [*getattr(namespace, self.dest, []), values])


def add_filter_arguments(parser: Any, *, negatable: bool = False) -> None:
    """Filters; each may be repeated (values of one filter are alternatives, different
    filters must all match).  ``negatable`` adds ``--not``."""
    title = "filters (repeat a flag to allow several values"
    title += "; --not before a filter excludes what it matches)" if negatable else ")"
    group = FlagSet(parser).group(title)
    if negatable:
        parser.set_defaults(negate_next=False, excluded=[])
        group.add(
            "--not",
            action=_Negate,
            nargs=0,
            shown_default="off",
            help="the next filter excludes the hits it matches (e.g. --not --verdict accept)",
        )
    group.add("--node", action=_Filter, default=[], shown_default="any", help="node name")
    group.add("--namespace", "-n", action=_Filter, default=[], shown_default="any", help="workload namespace")
    group.add("--pod", action=_Filter, default=[], shown_default="any", help="pod name, or namespace/pod")
    group.add("--app", action=_Filter, default=[], shown_default="any", help="the pod's app label")
    group.add(
        "--policy", action=_Filter, default=[], shown_default="any", help="policy name, or namespace/name"
    )
    group.add(
        "--verdict",
        action=_Filter,
        default=[],
        shown_default="any",
        choices=VERDICT_CHOICES,
        help="the verdict",
    )
    group.add(
        "--direction",
        action=_Filter,
        default=[],
        shown_default="any",
        choices=("ingress", "egress"),
        help="the direction",
    )
    group.add(
        "--min-packets",
        action=_Filter,
        type=non_negative_int,
        default=0,
        help="only hits of at least this many packets",
    )


def check_negation(args: argparse.Namespace) -> str | None:
    """A trailing ``--not`` negates nothing: the usage error to report, never ignored."""
    if getattr(args, "negate_next", False):
        return "--not must be followed by a filter flag (e.g. --not --namespace kube-system)"
    return None
