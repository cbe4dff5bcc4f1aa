"""How a subcommand's parser is made: one help layout for every command.

Every subcommand gets :class:`~calico_accountant.runtime.flags.HelpFormatter` (paragraphs
wrapped, example lines kept as written) and an epilog of examples, so ``--help`` of any
command shows how to use it.  Descriptions are plain text: docstrings use reStructuredText
(````name````), which must not reach a terminal, so a command's description is written
for ``--help`` and never taken from ``__doc__``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from calico_accountant.runtime.flags import HelpFormatter

__all__ = ["add_command"]


def add_command(
    subparsers: Any, name: str, *, help: str, description: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``; ``examples`` are command lines (``# comment``
    lines explain the next one)."""
    lines = ["examples:"]
    for example in examples:
        lines.append(f"  {example}" if example.startswith("#") else f"  $ {example}")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="\n".join(lines),
        formatter_class=HelpFormatter,
    )
    return parser
