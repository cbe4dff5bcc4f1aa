"""``calico-accountant audit``: canary coverage, unused policies and rules, default-deny
drops, top denies and changes, from Prometheus or the aggregator (see
:mod:`calico_accountant_cli.audit`)."""

from __future__ import annotations

from typing import Any

from calico_accountant_cli.commands.command import add_command


def register(subparsers: Any) -> None:
    from calico_accountant_cli.audit.command import add_arguments, run

    parser = add_command(
        subparsers,
        "audit",
        help="answer the usual policy questions at once: canaries, unused policies and rules, "
        "default-deny drops, top denies, changes",
        description="Reads the policy counters of a window from Prometheus (increase() over the "
        "aggregator's families) or the aggregator's totals, and reports: canary coverage, unused "
        "policies and rules (never rendered on any node, or no traffic), default-deny drops with "
        "the policies that select the workloads, the top denies, and policies whose accepts fell. "
        "Exit status: 0 nothing found, 1 findings of a --fail-on category, 2 usage or connection error.",
        examples=(
            "calico-accountant audit --prometheus http://prometheus:9090 --window 7d",
            "# in CI: fail only when a canary saw traffic or pods hit the default deny",
            "calico-accountant audit --prometheus http://prometheus:9090 --fail-on canary-hit,default-deny",
            "calico-accountant audit --server aggregator:9010 -o json",
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
