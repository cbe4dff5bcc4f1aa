"""``calico-accountant top``: a live table of the workloads and policies denying the most.

Follows the Watch API (replaying the last ``--window`` first, so the table is full at
once) and shows, every ``--interval``, packets per second over the window: which
workloads had the most packets denied or dropped, and by which policy (or by no policy
at all).  Rates use each hit's read time, so a replay and live hits mix correctly.
Per-rule counters (``policy_rule``) are left out: they count the same packets again, per
node rather than per workload.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from calico_accountant.runtime.flags import FlagSet, non_negative_int, positive_float, positive_int
from calico_accountant_cli.commands.command import add_command
from calico_accountant_cli.terminal import terminal_safe


def register(subparsers: Any) -> None:
    from calico_accountant_cli.commands.hit_args import add_filter_arguments, add_server_argument

    parser = add_command(
        subparsers,
        "top",
        help="live table of the workloads and policies with the most denied/dropped packets per second",
        description="A live table (refreshing in place) of the workloads and policies with the most "
        "denied and dropped packets per second. --verdict accept shows the busiest accepts instead.",
        examples=(
            "calico-accountant top --server aggregator:9010",
            "calico-accountant top -n shop --window 60 --limit 30",
            "calico-accountant top --verdict accept --iterations 1",
        ),
    )
    add_server_argument(parser)
    flags = FlagSet(parser)
    flags.add("--window", type=positive_float, default=30.0, help="seconds the rates are averaged over")
    flags.add("--interval", type=positive_float, default=2.0, help="seconds between refreshes")
    flags.add("--limit", type=positive_int, default=15, help="rows per table")
    flags.add(
        "--iterations",
        type=non_negative_int,
        default=0,
        help="stop after this many refreshes; 0: until Ctrl-C",
    )
    add_filter_arguments(parser)
    parser.set_defaults(func=_run)


@dataclass(slots=True)
class _Seen:
    at: float
    workload: str
    node: str
    policy: str
    packets: int
    bytes: int


class _Window:
    """Hits of the last ``seconds`` (by read time), fed from the watch thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.items: deque[_Seen] = deque()
        self.lost = 0
        self.error = ""
        self.lock = threading.Lock()

    def add(self, seen: _Seen) -> None:
        with self.lock:
            self.items.append(seen)

    def rates(self, now: float) -> tuple[dict[tuple[str, str], tuple[float, float]], dict[str, float]]:
        with self.lock:
            while self.items and self.items[0].at < now - self.seconds:
                self.items.popleft()
            items = list(self.items)
        workloads: dict[tuple[str, str], tuple[float, float]] = {}
        policies: dict[str, float] = {}
        for seen in items:
            if seen.at > now - self.seconds:
                packets, octets = workloads.get((seen.workload, seen.node), (0.0, 0.0))
                workloads[(seen.workload, seen.node)] = (packets + seen.packets, octets + seen.bytes)
                policies[seen.policy] = policies.get(seen.policy, 0.0) + seen.packets
        return (
            {k: (p / self.seconds, b / self.seconds) for k, (p, b) in workloads.items()},
            {k: v / self.seconds for k, v in policies.items()},
        )


def render(window: _Window, now: float, limit: int, title: str) -> str:
    workloads, policies = window.rates(now)
    lines = [title, "", f"{'WORKLOAD':<44} {'NODE':<20} {'PKTS/S':>10} {'BYTES/S':>12}"]
    for (workload, node), (pps, bps) in sorted(workloads.items(), key=lambda kv: -kv[1][0])[:limit]:
        lines.append(f"{workload:<44} {node:<20} {pps:>10.1f} {bps:>12.1f}")
    if not workloads:
        lines.append("(nothing in the window)")
    lines += ["", f"{'POLICY':<66} {'PKTS/S':>10}"]
    for policy, pps in sorted(policies.items(), key=lambda kv: -kv[1])[:limit]:
        lines.append(f"{policy:<66} {pps:>10.1f}")
    if window.lost:
        lines += ["", f"EVENTS LOST: {window.lost} hits (this client fell behind; rates are low)"]
    if window.error:
        lines += ["", f"error: {window.error}"]
    return "\n".join(terminal_safe(line) for line in lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from calico_accountant.records import Verdict
    from calico_accountant.v1 import hits_pb2 as hpb
    from calico_accountant.v1 import snapshot_pb2 as spb
    from calico_accountant_cli.hit_format import policy_text, workload_text
    from calico_accountant_cli.hits_client import ClientError, HitsClient, filter_from_args

    if args.window <= 0 or args.interval <= 0:
        print("calico-accountant top: --window and --interval must be positive", file=sys.stderr)
        return 2
    if not args.verdict:
        args.verdict = [Verdict.DENY.value]
    try:
        hit_filter = filter_from_args(args)
        client = HitsClient.from_args(args)
        status = client.server_status()
    except ClientError as error:
        print(f"calico-accountant top: {error}", file=sys.stderr)
        return 1
    request = hpb.WatchRequest(filter=hit_filter, follow=True)
    request.since.FromTimedelta(timedelta(seconds=args.window))
    window = _Window(args.window)

    def follow() -> None:
        try:
            for batch in client.watch(request):
                for hit in batch.hits:
                    if hit.kind == spb.POLICY_RULE:
                        continue  # per-rule counters repeat the per-workload ones
                    window.add(
                        _Seen(
                            hit.time.ToMicroseconds() / 1e6,
                            workload_text(hit),
                            hit.node,
                            f"{policy_text(hit)} ({hit.verdict})",
                            hit.packets,
                            hit.bytes,
                        )
                    )
                window.lost += batch.lost
        except ClientError as error:
            window.error = str(error)

    thread = threading.Thread(target=follow, name="watch", daemon=True)
    thread.start()
    out: TextIO = sys.stdout
    in_place = out.isatty()
    title = (
        f"calico-accountant top — {status.agents_connected}/{status.nodes_known} agents, "
        f"verdict {','.join(args.verdict)}, rates over {args.window:g}s"
    )
    refreshes = 0
    try:
        while True:
            time.sleep(args.interval)
            frame = render(window, time.time(), args.limit, title)
            out.write(("\x1b[H\x1b[J" if in_place else "\n") + frame)
            out.flush()
            refreshes += 1
            if args.iterations and refreshes >= args.iterations:
                return 0
    finally:
        client.close()
