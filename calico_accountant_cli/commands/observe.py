"""``calico-accountant observe``: policy hits as they arrive, like ``hubble observe``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from calico_accountant.runtime.flags import FlagSet, positive_int
from calico_accountant_cli.commands.command import add_command
from calico_accountant_cli.terminal import ColorMode

if TYPE_CHECKING:
    from calico_accountant.v1 import hits_pb2 as hpb

DEFAULT_LAST = 20
"""Hits printed without --follow and without any other selection, as ``hubble observe``."""


def register(subparsers: Any) -> None:
    from calico_accountant_cli.commands.hit_args import add_filter_arguments, add_server_argument

    parser = add_command(
        subparsers,
        "observe",
        help="print policy hits (counter increases per workload and policy) as they arrive",
        description="Prints policy hits from the aggregator's Watch API: each hit is how much one "
        "workload/policy counter (or one policy rule's counter) grew between two reads of its node. "
        f"Without --follow it prints the last {DEFAULT_LAST} hits the aggregator kept and exits "
        "(--last, --first, --all, --since and --until choose others); with --follow it keeps printing "
        "new hits.\n\n"
        "Times are the nodes' read times, printed in the local time zone (--utc for UTC; the JSON "
        "forms are always RFC 3339 in UTC). --since and --until take a duration back from now (30s, "
        "5m, 1h30m) or an RFC 3339 time. The table sizes its columns from the hits; with --follow "
        "columns only widen and the header is printed again when one does.",
        examples=(
            "calico-accountant observe --server aggregator:9010",
            "calico-accountant observe -f --verdict deny -n shop",
            "# everything kept from the last 10 minutes except kube-system, as JSON lines",
            "calico-accountant observe --since 10m --all --not --namespace kube-system -o json",
            "calico-accountant observe --since 2026-05-01T12:00:00Z --until 2026-05-01T12:05:00Z -o compact",
        ),
    )
    add_server_argument(parser)
    flags = FlagSet(parser)
    flags.add("--follow", "-f", action="store_true", default=False, help="keep printing new hits")
    which = FlagSet(parser.add_mutually_exclusive_group())
    which.add(
        "--last",
        type=positive_int,
        default=None,
        metavar="N",
        shown_default=f"{DEFAULT_LAST} without --follow, --since or --until",
        help="print the newest N kept hits (with --follow: then the new ones)",
    )
    which.add("--first", type=positive_int, default=None, metavar="N", help="print the oldest N kept hits")
    which.add("--all", action="store_true", default=False, help="print every kept hit")
    flags.add("--since", default=None, metavar="WHEN", help="only hits read at or after WHEN (5m, RFC 3339)")
    flags.add("--until", default=None, metavar="WHEN", help="only hits read before WHEN (5m, RFC 3339)")
    flags.add(
        "-o",
        "--output",
        choices=("table", "compact", "json", "jsonpb"),
        default="table",
        help="table (columns), compact (one sentence per hit), json (one flat object per hit), "
        "jsonpb (the HitBatch messages in protobuf's JSON mapping)",
    )
    flags.add(
        "--color",
        choices=tuple(mode.value for mode in ColorMode),
        default=ColorMode.AUTO.value,
        help="colour verdicts; auto: only on a terminal and without $NO_COLOR",
    )
    flags.add("--utc", action="store_true", default=False, help="print times in UTC instead of local time")
    add_filter_arguments(parser, negatable=True)
    parser.set_defaults(func=_run)


def build_request(args: argparse.Namespace) -> hpb.WatchRequest:
    """The WatchRequest of the flags; :class:`ClientError` for a combination that cannot work."""
    from datetime import UTC, datetime

    from calico_accountant.v1 import hits_pb2 as hpb
    from calico_accountant_cli.hits_client import (
        ClientError,
        exclusions_from_args,
        filter_from_args,
        parse_moment,
    )

    if args.follow and (args.first or args.until):
        raise ClientError("--first and --until end the output; they cannot be combined with --follow")
    request = hpb.WatchRequest(
        filter=filter_from_args(args), exclude=exclusions_from_args(args), follow=args.follow
    )
    now = datetime.now(UTC)
    if args.since is not None:
        request.since_time.FromDatetime(parse_moment(args.since, now).astimezone(UTC))
    if args.until is not None:
        request.until.FromDatetime(parse_moment(args.until, now).astimezone(UTC))
    if args.first:
        request.first = args.first
    elif args.last:
        request.last = args.last
    elif not (args.all or args.follow or args.since or args.until):
        request.last = DEFAULT_LAST
    return request


def _run(args: argparse.Namespace) -> int:
    from calico_accountant_cli.commands.hit_args import check_negation
    from calico_accountant_cli.hits_client import ClientError, HitsClient

    problem = check_negation(args)
    if problem:
        print(f"calico-accountant observe: error: {problem}", file=sys.stderr)
        return 2
    try:
        request = build_request(args)
        with HitsClient.from_args(args) as client:
            client.server_status()
            _print(client.watch(request), args, sys.stdout)
    except ClientError as error:
        print(f"calico-accountant observe: {error}", file=sys.stderr)
        return 1
    return 0


def _print(batches: Iterable[hpb.HitBatch], args: argparse.Namespace, out: TextIO) -> None:
    from calico_accountant_cli.hit_format import (
        format_batch_jsonpb,
        format_hit_compact,
        format_hit_json,
        format_lost,
    )
    from calico_accountant_cli.terminal import use_color

    color = use_color(ColorMode(args.color), out)
    if args.output == "table":
        _print_table(batches, args, out, color)
        return
    for batch in batches:
        if args.output == "jsonpb":
            print(format_batch_jsonpb(batch), file=out)
        elif args.output == "json":
            for hit in batch.hits:
                print(format_hit_json(hit), file=out)
            if batch.lost:
                print(f'{{"lost":{batch.lost}}}', file=out)
        else:
            for hit in batch.hits:
                print(format_hit_compact(hit, utc=args.utc, color=color), file=out)
            if batch.lost:
                print(format_lost(batch.lost), file=out)
        out.flush()


def _print_table(batches: Iterable[hpb.HitBatch], args: argparse.Namespace, out: TextIO, color: bool) -> None:
    """All rows sized together when the stream ends by itself; batch by batch with --follow
    (whose header comes at once, so a quiet cluster still shows the command is running)."""
    from calico_accountant_cli.hit_format import format_lost, hit_cells
    from calico_accountant_cli.hit_table import HitTable
    from calico_accountant_cli.terminal import Color

    table = HitTable(color=color)
    if args.follow:
        print("\n".join(table.render([])), file=out, flush=True)
        groups: Iterable[list[list[hpb.Hit] | int]] = (_merged([batch]) for batch in batches)
    else:
        groups = [_merged(list(batches))]
    for parts in groups:
        for part in parts:
            if isinstance(part, int):
                print(Color.YELLOW.wrap(format_lost(part), color), file=out)
            else:
                print("\n".join(table.render([hit_cells(hit, utc=args.utc) for hit in part])), file=out)
        out.flush()


def _merged(batches: list[hpb.HitBatch]) -> list[list[hpb.Hit] | int]:
    """A finished stream as one sequence of hit runs and lost-N notices, in order."""
    parts: list[list[hpb.Hit] | int] = []
    for batch in batches:
        if batch.hits:
            if parts and isinstance(parts[-1], list):
                parts[-1].extend(batch.hits)
            else:
                parts.append(list(batch.hits))
        if batch.lost:
            parts.append(batch.lost)
    return parts
