"""The ``audit`` subcommand's flags and run: read a source, build the report, print it, and
exit 0 (no finding of a ``--fail-on`` category), 1 (some) or 2 (usage or connection error)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from calico_accountant.runtime.client_tls import add_client_tls_arguments
from calico_accountant_cli.audit.findings import Category

__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "add_arguments", "run"]

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus",
        metavar="URL",
        default=os.environ.get("CALICO_ACCOUNTANT_PROMETHEUS"),
        help="a Prometheus server that scrapes the aggregator (default: $CALICO_ACCOUNTANT_PROMETHEUS)",
    )
    source.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="the aggregator's gRPC address instead: its totals since it started (no previous "
        "window, no datastore view)",
    )
    parser.add_argument("--window", default="7d", help="Prometheus duration the audit covers (default 7d)")
    parser.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help="end of the window, Unix seconds or RFC 3339 (default: now)",
    )
    parser.add_argument(
        "--canary",
        action="append",
        default=[],
        metavar="NAME",
        help="a canary policy (name, namespace/name or tier/namespace/name); repeatable. Policies "
        'labelled or annotated calico-accountant.io/canary: "true" are canaries too',
    )
    parser.add_argument(
        "--threshold",
        default="50%",
        help="a change is accepts falling by more than this versus the previous window (default 50%%)",
    )
    parser.add_argument("--top", type=int, default=10, help="rows per top-deny list (default 10)")
    parser.add_argument("-o", "--output", choices=["table", "json", "markdown"], default="table")
    parser.add_argument(
        "--fail-on",
        default="all",
        metavar="LIST",
        help="which findings make the exit status 1: all (default), none, or a comma-separated list of "
        + ", ".join(c.value for c in Category),
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the source (default 30)"
    )
    add_client_tls_arguments(parser)


def _threshold(text: str) -> float:
    cleaned = text.strip()
    try:
        value = float(cleaned[:-1]) / 100 if cleaned.endswith("%") else float(cleaned)
    except ValueError:
        raise ValueError(f"bad --threshold {text!r}: use e.g. 50% or 0.5") from None
    if not 0 <= value <= 1:
        raise ValueError(f"bad --threshold {text!r}: between 0% and 100%")
    return value


def run(args: Any) -> int:
    from calico_accountant_cli.audit.findings import FailOnError, fails, parse_fail_on
    from calico_accountant_cli.audit.formatting import OutputFormat, format_report
    from calico_accountant_cli.audit.model import Observations
    from calico_accountant_cli.audit.prometheus_source import PrometheusSource, SourceError, check_window
    from calico_accountant_cli.audit.report import AuditOptions, build_report
    from calico_accountant_cli.hits_client import ClientError, HitsClient

    def error(message: str) -> int:
        print(f"calico-accountant audit: {message}", file=sys.stderr)
        return EXIT_ERROR

    try:
        fail_on = parse_fail_on(args.fail_on)
        options = AuditOptions(
            canaries=tuple(args.canary), top=args.top, threshold=_threshold(args.threshold)
        )
        if args.top < 1:
            raise ValueError("--top must be at least 1")
        observations: Observations
        if args.server:
            with HitsClient.from_args(args) as client:
                from calico_accountant_cli.audit.server_source import observe_server

                observations = observe_server(client)
        elif args.prometheus:
            source = PrometheusSource(args.prometheus, check_window(args.window), args.at, args.timeout)
            observations = source.observe()
        else:
            return error("say where to read: --prometheus URL or --server HOST:PORT")
    except (FailOnError, ValueError, SourceError, ClientError) as problem:
        return error(str(problem))
    report = build_report(observations, options)
    print(format_report(report, OutputFormat(args.output)), end="")
    return EXIT_FINDINGS if fails(report, fail_on) else EXIT_OK
