"""``calico-accountant observe``: print policy hits as they arrive, like ``hubble observe``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    from calico_accountant_cli.commands.hit_args import add_filter_arguments, add_server_argument

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "observe",
        help="print policy hits (counter increases per workload and policy) as they arrive",
        description="Prints policy hits from the aggregator's Watch API: each hit is how much one "
        "workload/policy counter grew between two reads of its node. Without --follow it prints the "
        "hits the aggregator kept (all of them, or those of --since) and exits.",
    )
    add_server_argument(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new hits")
    parser.add_argument("--since", default=None, help="replay the kept hits this far back (e.g. 5m, 1h)")
    parser.add_argument("-o", "--output", choices=["table", "json", "jsonpb"], default="table")
    add_filter_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from calico_accountant.v1 import hits_pb2 as hpb
    from calico_accountant_cli.hit_format import (
        ROW_HEADER,
        format_batch_jsonpb,
        format_hit_json,
        format_hit_row,
        format_lost,
    )
    from calico_accountant_cli.hits_client import ClientError, HitsClient, filter_from_args, parse_duration

    try:
        request = hpb.WatchRequest(filter=filter_from_args(args), follow=args.follow)
        if args.since is not None:
            request.since.FromTimedelta(parse_duration(args.since))
        with HitsClient.from_args(args) as client:
            client.server_status()
            out = sys.stdout
            if args.output == "table":
                print(ROW_HEADER, file=out, flush=True)
            for batch in client.watch(request):
                if args.output == "jsonpb":
                    print(format_batch_jsonpb(batch), file=out)
                else:
                    for hit in batch.hits:
                        print(
                            format_hit_row(hit) if args.output == "table" else format_hit_json(hit), file=out
                        )
                    if batch.lost:
                        if args.output == "table":
                            print(format_lost(batch.lost), file=out)
                        else:
                            print(f'{{"lost":{batch.lost}}}', file=out)
                out.flush()
    except ClientError as error:
        print(f"calico-accountant observe: {error}", file=sys.stderr)
        return 1
    return 0
