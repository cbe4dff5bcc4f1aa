"""The ``calico-accountant`` command: one entry point, one module per subcommand.

Each module in :mod:`calico_accountant_cli.commands` exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (``Callable[[argparse.Namespace], int]``).  Modules are
imported only when listed here, so ``parse`` never pays for gRPC or etcd imports it does
not use... beyond what the registering module itself imports at top level (keep those light).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from calico_accountant import __version__
from calico_accountant.runtime.flags import HelpFormatter

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "demo",
    "agent",
    "aggregator",
    "parse",
    "report",
    "observe",
    "top",
    "nodes",
    "completion",
    "audit",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; subcommands whose module is not there yet are skipped.

    With ``only``, just that subcommand is registered: a daemon started as ``calico-accountant
    agent`` then never imports the other commands' flag modules (the aggregator's pull in
    JWT and X.509 libraries), which kept ~10 MiB of the agent's resident memory for nothing.
    """
    parser = argparse.ArgumentParser(
        prog="calico-accountant",
        formatter_class=HelpFormatter,
        description="What your Calico network policies actually do: per-workload, per-node and "
        "cluster-wide policy counters for Prometheus, and a live policy-hit API.",
        epilog="examples:\n"
        "  $ calico-accountant demo\n"
        "  $ calico-accountant observe --server aggregator:9010 -f --verdict deny\n"
        "  $ calico-accountant COMMAND --help\n\n"
        "Every flag: docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"calico-accountant {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"calico_accountant_cli.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"calico_accountant_cli.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    named = arguments[0] if arguments and arguments[0] in SUBCOMMANDS else None
    parser = build_parser(only=named)
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status = int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `calico-accountant parse big.save | head` is normal use, not an error.
        return 0
    if argv is None and getattr(args, "exit_without_teardown", False):
        _exit_now(status)
    return status


def _exit_now(status: int) -> NoReturn:
    """End the process without the interpreter's teardown, for a one-shot command that
    leaves a big heap behind (``parse`` of a big node: ~1M tuples whose freeing one by one
    cost 60-100 ms of the command's time).  Only from the command line (``main()`` with no
    ``argv``), never when called in-process; buffered output is flushed first."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
