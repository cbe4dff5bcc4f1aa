"""``calico-accountant parse``: what a node's filter table says, without any datastore.

Several files are one node (e.g. ``iptables-save -c`` and ``ip6tables-save -c``, or, in
felix's nftables mode, ``nft -j list table ip calico`` and ``ip6 calico``: each file is
told apart by its content).
Zero-valued counters are printed: a zero says the policy applies and saw nothing.
Diagnostics go to stderr; the exit status is non-zero only when nothing could be parsed.
"""

from __future__ import annotations

import argparse
import gc
import json
import mmap
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any, BinaryIO, TextIO

from calico_accountant.records import CounterRecord, Diagnostic, Kind, ParseResult
from calico_accountant.runtime.flags import FlagSet
from calico_accountant_cli.commands.command import add_command
from node_agent.parsing import parse_node


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "parse",
        help="parse iptables-save -c (or nft -j list table ip/ip6 calico) dumps of one node into records",
        description="What a node's filter table says, without any datastore. Several files are one "
        "node (e.g. the output of iptables-save -c and of ip6tables-save -c). Zero-valued counters are "
        "printed: a zero says the policy applies and saw nothing. Diagnostics go to stderr; the exit "
        "status is non-zero only when nothing could be parsed.",
        examples=(
            "calico-accountant parse --format summary node1.save node1-v6.save",
            "iptables-save -c -t filter | calico-accountant parse --format json -",
            "# felix's nftables mode: the JSON listing, told apart from iptables-save by its content",
            "nft -j list table ip calico > node1.json && calico-accountant parse node1.json",
        ),
    )
    parser.add_argument("files", nargs="*", default=["-"], metavar="FILE", help="dumps to read; - is stdin")
    flags = FlagSet(parser)
    flags.add("--format", choices=("json", "table", "summary"), default="table", help="output form")
    flags.add(
        "--family",
        type=int,
        choices=(4, 6),
        shown_default="from each dump",
        help="force the IP family of every input",
    )
    # Nothing is left to do after the output: the big heap of a parse need not be freed.
    parser.set_defaults(func=run, exit_without_teardown=True)


def read_inputs(files: Iterable[str]) -> list[tuple[str, str | bytes]]:
    """(name, text) for each file, or (name, bytes) when it is not valid UTF-8, so that bad
    UTF-8 is diagnosed by the parse, not fatal; ``-`` reads stdin."""
    inputs: list[tuple[str, str | bytes]] = []
    for name in files:
        if name == "-":
            inputs.append(("-", sys.stdin.buffer.read()))
        else:
            with open(name, "rb") as handle:
                inputs.append((name, _contents(handle)))
    return inputs


def _contents(handle: BinaryIO) -> str | bytes:
    """A file's text, decoded straight from a read-only map of it when it is a regular file:
    a big node's dump is ~25 MB, and reading it into bytes before decoding them doubles the
    memory the process touches (~6k page faults, ~10 ms).  The map lives only while it is
    decoded."""
    try:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # not a regular file (a pipe, a device), or empty
        return handle.read()
    with mapping:
        try:
            return str(mapping, "utf-8")
        except UnicodeDecodeError:
            return bytes(mapping)


def record_as_json(record: CounterRecord) -> dict[str, Any]:
    """The JSON object ``parse --format json`` prints for one record."""
    key = record.key
    return {
        "interface": key.interface,
        "endpoint": key.endpoint.value,
        "direction": key.direction.value,
        "family": key.family,
        "kind": key.kind.value,
        "chain": key.chain,
        "tier": key.tier,
        "rule": {"index": key.rule_index, "action": key.action} if key.kind is Kind.POLICY_RULE else None,
        "packets": record.packets,
        "bytes": record.bytes,
        "rule_ids": list(record.rule_ids),
        "chain_comment": record.chain_comment,
        "group_members": list(record.group_members),
    }


def write_table(records: list[CounterRecord], out: TextIO) -> None:
    header = ("KIND", "ENDPOINT", "IFACE", "DIR", "FAM", "TIER", "CHAIN", "RULE", "PACKETS", "BYTES")
    rows = [header]
    for record in records:
        key = record.key
        rule = f"{key.rule_index}:{key.action}" if key.kind is Kind.POLICY_RULE else ""
        rows.append(
            (
                key.kind.value,
                key.endpoint.value if key.interface else "-",
                key.interface or "-",
                key.direction.value,
                f"v{key.family}",
                key.tier or "-",
                key.chain or "-",
                rule or "-",
                str(record.packets),
                str(record.bytes),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def write_diagnostics(diagnostics: Iterable[Diagnostic], out: TextIO) -> None:
    for diagnostic in diagnostics:
        where = (
            f"{diagnostic.source or '-'}:{diagnostic.line}" if diagnostic.line else diagnostic.source or "-"
        )
        out.write(f"{where}: {diagnostic.code}: {diagnostic.message}\n")


def write_summary(result: ParseResult, out: TextIO) -> None:
    kinds = Counter(record.key.kind for record in result.records)
    out.write(f"lines: {result.lines_seen}\nrules: {result.rules_seen}\nrecords: {len(result.records)}\n")
    for kind in Kind:
        out.write(f"  {kind.value}: {kinds.get(kind, 0)}\n")
    codes = result.diagnostic_counts()
    out.write(f"diagnostics: {sum(codes.values())}\n")
    for code, count in sorted(codes.items()):
        out.write(f"  {code}: {count}\n")


def run(args: argparse.Namespace) -> int:
    try:
        inputs = read_inputs(args.files)
    except OSError as error:
        print(f"calico-accountant parse: {error}", file=sys.stderr)
        return 1
    # A big node's parse makes about a million objects that live until the command ends:
    # the cyclic collector (they hold no cycles) would only walk them again and again.  Back
    # on when done: ``main(["parse", ...])`` may run inside a longer-lived process.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _parse_and_write(args, inputs)
    finally:
        if collecting:
            gc.enable()


def _parse_and_write(args: argparse.Namespace, inputs: list[tuple[str, str | bytes]]) -> int:
    result = parse_node(inputs, family=args.family)
    out = sys.stdout
    records = result.records
    if args.format == "json":
        for record in records:
            out.write(json.dumps(record_as_json(record), separators=(",", ":")) + "\n")
    elif args.format == "table":
        write_table(records, out)
    else:
        write_summary(result, out)
    write_diagnostics(result.diagnostics, sys.stderr)
    # Held by ``args`` until main() ends the process without teardown (see
    # ``exit_without_teardown``): dropped here, its ~1M tuples would be freed one by one.
    args.parsed = result
    return 0 if result.rules_seen else 1
