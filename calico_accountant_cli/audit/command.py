"""The ``audit`` subcommand's flags and run: read a source, build the report, print it, and
exit 0 (no finding of a ``--fail-on`` category), 1 (some) or 2 (usage or connection error)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calico_accountant.runtime.client_tls import add_client_tls_arguments
from calico_accountant.runtime.flags import ENV_PREFIX, FlagSet, positive_float, positive_int
from calico_accountant_cli.audit.findings import Category

__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "add_arguments", "run"]

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = FlagSet(parser.add_mutually_exclusive_group())
    source.add(
        "--prometheus",
        metavar="URL",
        env=f"{ENV_PREFIX}PROMETHEUS",
        shown_default="none",
        help="a Prometheus server that scrapes the aggregator",
    )
    source.add(
        "--server",
        metavar="HOST:PORT",
        shown_default="none",
        help="the aggregator's gRPC address instead: its totals since it started (no previous "
        "window, no datastore view)",
    )
    flags = FlagSet(parser)
    flags.add("--window", default="7d", help="Prometheus duration the audit covers")
    flags.add(
        "--at",
        metavar="TIME",
        shown_default="now",
        help="end of the window, Unix seconds or RFC 3339",
    )
    flags.add(
        "--canary",
        action="append",
        default=[],
        metavar="NAME",
        shown_default="none besides the labelled ones",
        help="a canary policy (name, namespace/name or tier/namespace/name); repeatable. Policies "
        'labelled or annotated calico-accountant.io/canary: "true" are canaries too',
    )
    flags.add(
        "--threshold",
        default="50%",
        help="a change is accepts falling by more than this versus the previous window",
    )
    flags.add("--top", type=positive_int, default=10, help="rows per top-deny list")
    flags.add("-o", "--output", choices=("table", "json", "markdown"), default="table", help="output format")
    flags.add(
        "--fail-on",
        default="all",
        metavar="LIST",
        help="which findings make the exit status 1: all, none, or a comma-separated list of "
        + ", ".join(c.value for c in Category),
    )
    flags.add("--timeout", type=positive_float, default=30.0, help="seconds to wait for the source")
    add_client_tls_arguments(flags)


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
