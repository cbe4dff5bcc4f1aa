"""A load generator: many simulated agents streaming to one real aggregator process.

    .venv/bin/python -m bench.load_bench [--nodes 100] [--workers 4] [--interval 10]
                                         [--duration 60] [--levels workload,node,cluster]
                                         [--shards N]

Real gRPC clients on loopback speak the ingest protocol as agents do: each simulated node
(:mod:`bench.cluster_shape`: 110 pods x 10 policies, 4,620 counters) opens its own stream,
sends a full snapshot at start -- all nodes at once, as after an aggregator restart -- and
then, every ``--interval`` seconds (nodes spread evenly over the interval), a delta in which
10 % of its counters moved (a different tenth each time, so pod churn touches everything),
sent by key id once the aggregator advertised key ids, as agents do (``--encoding plain``:
whole counters, as agents before key ids).  As an agent, a node sends its next delta only
once the last one was acknowledged, and then its newest read's: an ack that came late (held
while full snapshots wait, the aggregator's ``--delta-hold``) makes it one delta of every
round read meanwhile (the tenths of up to ten rounds, each counter once).
``--workers`` processes share the nodes (one asyncio loop and one channel each).  The
aggregator runs without a datastore: names stay raw, which is the cheaper path for it.

Reported: the start-up (from the first full snapshot sent until every node's was
acknowledged) with its ack latencies; in the steady window, snapshots and counters applied
per second, ack latency p50/p99/max, acks later than the agent's 30 s timeout, resyncs;
the aggregator's CPU (cores, from /proc over the window, and the worst interval), its RSS and
peak RSS; one scrape of ``/metrics`` (time and size, plain and gzip); the load processes' peak
RSS (summed: what the generator leaves of the machine's memory).  Pauses: a gRPC health
check every second from outside (its latency, during the start-up and the steady window)
and the aggregator's own ``calico_accountant_event_loop_lag_seconds`` (its longest event
loop pause, and how many wake-ups were over 100 ms) beside its garbage collections
(``calico_accountant_gc_pause_seconds``: how many of each generation, their time, the
longest, those over 100 ms).  ``--scrape-every S`` scrapes
``/metrics`` (gzip'd) every S seconds meanwhile, as Prometheus does, and reports the steady
window's scrapes and the loop's wake-ups over 100 ms between its first and last scrape.
A measurement, not a test: nothing asserts a speed.

``--shards N`` runs N aggregators sharded over a real etcd (``--shards etcd``; N=1 is one
member, for a like-for-like comparison): simulated node i first reaches shard i mod N (as
agents reaching the shards through a Service do; ``--one-door``: all reach the first one)
and follows the redirect it gets, as agents do; CPU (start-up CPU seconds, steady cores),
RSS, pauses and ``/metrics`` are reported per shard.

``--pin`` gives one aggregator a CPU of its own (every thread of it on the first CPU, the
load processes on the others), as a pod with one core would have: its CPU and pause figures
are then its own, not the machine's sharing with the load processes building snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.cluster_shape import Shape, node_records
from bench.process_figures import children_on, cpu_seconds, percentile, rss_mib
from calico_accountant.records import CounterRecord
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.wire.chunks import split_snapshot
from calico_accountant.wire.keyed import EMPTY_COLUMNS, KeyedColumns, KeyIds
from calico_accountant.wire.snapshots import build_snapshot
from tests.support.etcd_server import EtcdServer
from tests.support.ports import free_port
from tests.support.processes import processes

CHUNK = 4 * 1024 * 1024 - 64 * 1024
ACK_TIMEOUT = 30.0
FIRST_ACK_TIMEOUT = 120.0
"""The agent's defaults (``--ack-timeout``, ``--first-ack-timeout``)."""


def _tenths(first: int, last: int) -> list[tuple[int, int]]:
    """The tenths of the counters that moved in rounds ``first`` to ``last`` (a different tenth
    each round), each with the last round it moved in: what an agent sends when its ack
    came after several reads (it sends its newest read, against the one acknowledged)."""
    return sorted({round_ % 10: round_ for round_ in range(max(first, last - 9), last + 1)}.items())


def _moved(records: list[CounterRecord], first: int, last: int) -> list[CounterRecord]:
    """The counters that moved in rounds ``first`` to ``last``, each one packet more a round."""
    return [
        r._replace(packets=r.packets + round_, bytes=r.bytes + 100 * round_)
        for tenth, round_ in _tenths(first, last)
        for r in records[tenth::10]
    ]


def _moved_by_id(
    ids: array[int], packets: array[int], octets: array[int], first: int, last: int
) -> KeyedColumns:
    """:func:`_moved` by key id: the values only."""
    moved_ids: list[int] = []
    moved_packets: list[int] = []
    moved_bytes: list[int] = []
    for tenth, round_ in _tenths(first, last):
        picked = slice(tenth, None, 10)
        moved_ids.extend(ids[picked].tolist())
        moved_packets.extend(value + round_ for value in packets[picked])
        moved_bytes.extend(value + 100 * round_ for value in octets[picked])
    return KeyedColumns(moved_ids, moved_packets, moved_bytes)


def snapshot_chunks(
    node: int,
    sequence: int,
    full: bool,
    records: list[CounterRecord] | tuple[()],
    *,
    key_ids: list[int] | tuple[()] = (),
    values: KeyedColumns = EMPTY_COLUMNS,
) -> list[bytes]:
    """Simulated node ``node``'s snapshot ``sequence`` as the messages an agent sends (chunks of
    at most :data:`CHUNK` bytes, serialized): ``records`` whole (with ``key_ids``, one each,
    when defining them), or ``values`` by key id."""
    snapshot = build_snapshot(
        node=f"node-{node}", agent_instance_id=f"load-{node}", sequence=sequence, read_time=datetime.now(UTC),
        full=full, records=records, key_ids=key_ids, values=values,
    )  # fmt: skip
    return [chunk.SerializeToString() for chunk in split_snapshot(snapshot, CHUNK)]


class _Stubs:
    """One channel per ``per_channel`` simulated nodes, per aggregator address."""

    def __init__(self, options: list[tuple[str, int]], per_channel: int) -> None:
        self.options = options
        self.per_channel = per_channel
        self.channels: dict[tuple[str, int], grpc.aio.Channel] = {}

    def get(self, address: str, index: int) -> Any:
        """The ingest stream's method, sending messages already serialized (bytes): a node's
        full snapshot is encoded once, when its records are made, and only its bytes are kept
        until it is acknowledged.  Holding every node's records and message until then took
        4.2 MiB a simulated node (1,245 MiB for 300 nodes; 309 MiB now), more than the
        aggregator's ~3.4 MiB: 5,000 nodes could not be run beside it on 24 GiB."""
        key = (address, index // self.per_channel)
        if key not in self.channels:
            self.channels[key] = grpc.aio.insecure_channel(
                address, options=[*self.options, ("grpc.use_local_subchannel_pool", 1)]
            )
        return self.channels[key].stream_stream(
            "/calico_accountant.v1.Ingest/StreamSnapshots",
            request_serializer=None,
            response_deserializer=spb.IngestAck.FromString,
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close(None)


class _Window:
    """The steady window, one for the whole run: it opens ``--warmup`` seconds after every
    node of every worker has its first full snapshot acknowledged (or failed), and lasts
    ``--duration``; nodes send deltas from their first ack until it closes.  A window per
    node, from its own first ack, ended the first nodes' deltas long before the last ones
    were acknowledged (a 5,000-node start-up takes many minutes), so the aggregator's
    steady CPU was measured while most nodes had stopped sending.

    Workers and the main process agree through files in ``directory``: each worker writes
    ``settled-W`` once its nodes have all settled; the main process then writes ``window``
    (start and end, epoch seconds), which the workers read."""

    def __init__(self, nodes: int, directory: Path, worker: int) -> None:
        self._left = nodes
        self._directory = directory
        self._worker = worker
        self.start: float | None = None
        self.end: float | None = None

    def settled(self) -> None:
        """One node's first full snapshot was acknowledged, or its stream failed."""
        self._left -= 1
        if not self._left:
            (self._directory / f"settled-{self._worker}").touch()

    async def watch(self) -> None:
        path = self._directory / "window"
        while self.end is None:
            await asyncio.sleep(0.5)
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.start, self.end = map(float, path.read_text().split())

    @staticmethod
    def open_when_settled(
        directory: Path, workers: int, warmup: float, duration: float
    ) -> tuple[float, float] | None:
        """The main process: the window, written once every worker has settled (else None)."""
        if not all((directory / f"settled-{w}").exists() for w in range(workers)):
            return None
        start = time.time() + warmup
        (directory / "window.tmp").write_text(f"{start} {start + duration}")
        (directory / "window.tmp").rename(directory / "window")
        return start, start + duration


class _StartLine:
    """A worker's nodes build their full snapshots one at a time, the event loop running
    between two (answering keepalive pings), then send them all at once, as agents do when
    an aggregator restarts.  Built in one stretch (each node's first step, all in one loop
    iteration), 1,250 nodes a worker kept the worker's loop away for minutes (5,000 nodes on
    4 workers): nothing it was sent was read meanwhile, and its start-up figures counted the
    stall."""

    def __init__(self, nodes: int) -> None:
        self.building = asyncio.Lock()
        self._left = nodes
        self._built = asyncio.Event()

    async def all_built(self) -> None:
        """This node is built: wait for the others."""
        self._left -= 1
        if not self._left:
            self._built.set()
        await self._built.wait()


async def _node(
    stubs: _Stubs,
    start: _StartLine,
    window: _Window,
    index: int,
    shape: Shape,
    node: int,
    offset: float,
    args: argparse.Namespace,
    out: dict[str, list[float]],
) -> None:
    def open_stream(address: str) -> tuple[Any, asyncio.Queue[bytes | None]]:
        messages: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[bytes]:
            while (message := await messages.get()) is not None:
                yield message

        # wait_for_ready: as agents retry until the aggregator listens (it may still be starting)
        return stubs.get(address, index)(requests(), wait_for_ready=True), messages

    targets = args.target.split(",")
    call: Any  # the stream and its queue of messages, once connected (see below)
    queue: asyncio.Queue[bytes | None]
    keyed = args.encoding == "keyed"
    peer_key_ids = False  # as the agent: values by id once the stream's aggregator advertised them

    def encoded(
        sequence: int, full: bool, batch: list[CounterRecord], rounds: tuple[int, int] = (0, 0)
    ) -> list[bytes]:
        if not full and keyed and peer_key_ids:  # only values moved: the keys' ids, no keys
            values = _moved_by_id(full_ids, base_packets, base_bytes, *rounds)
            return snapshot_chunks(node, sequence, False, (), values=values)
        return snapshot_chunks(
            node, sequence, full, batch, key_ids=full_ids.tolist() if full and keyed else ()
        )

    async def send(chunks: list[bytes], first: bool = False) -> float:
        nonlocal call, queue, peer_key_ids
        started = heard = time.monotonic()
        # The longest wait for any message (what an agent's ack timeout applies to), the wait
        # for a new stream's first message apart (its own, longer timeout): on a redirect the
        # new stream's first wait counts as a silence.
        silence, first_reply = 0.0, None
        for chunk in chunks:
            queue.put_nowait(chunk)
        while True:
            ack = await call.read()
            now = time.monotonic()
            if first and first_reply is None:
                first_reply = now - heard
            else:
                silence = max(silence, now - heard)
            heard = now
            if ack is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise ConnectionError("stream ended")
            if ack.redirect_address:  # sharded: the owner is elsewhere, resend it there
                out["redirects"].append(1.0)
                queue.put_nowait(None)
                call, queue = open_stream(ack.redirect_address)
                for chunk in chunks:
                    queue.put_nowait(chunk)
                continue
            if not ack.waiting:  # an interim ack: the snapshot waits its turn (as agents skip them)
                peer_key_ids = ack.key_ids
                break
            out["waiting"].append(1.0)
        if ack.resync_requested:
            out["resyncs"].append(1.0)
        out["first_silences" if first else "silences"].append(silence)
        if first_reply is not None:
            out["first_replies"].append(first_reply)
        return time.monotonic() - started

    async with start.building:
        # Uncontended, the lock is taken without yielding: yield here, so that the other nodes
        # queue for it and the loop runs between two builds.
        await asyncio.sleep(0)
        records = node_records(shape, node, 0)
        # By id, a node keeps only its ids and base values, not its records (regenerated when a
        # full snapshot is due again): so that thousands of simulated nodes fit beside the aggregator.
        full_ids = array("L", KeyIds().for_full(records) if keyed else ())
        base_packets = array("Q", (r.packets for r in records))
        base_bytes = array("Q", (r.bytes for r in records))
        count = len(records)
        first_chunks = encoded(1, True, records)
        if keyed:  # the records are made again only if whole counters are ever needed
            records = []
    await start.all_built()
    # Connected only now, as an agent connects once it has a snapshot to send: streams left
    # open and idle for the minutes 5,000 nodes take to build drew too_many_pings GOAWAYs on
    # thousands of connections when the sends began.
    call, queue = open_stream(targets[node % len(targets)])
    try:
        try:
            out["first"].append(await send(first_chunks, first=True))
        finally:
            window.settled()
        del first_chunks
        out["first_done"].append(time.time())
        # A read every interval from here (round 1 at first_read); after each ack a delta of the
        # newest read, as the agent sends it: one round's tenth in the steady state, the tenths
        # of every round read meanwhile when the ack came late (held during a storm).
        first_read = time.time() + offset
        sequence, sent = 1, 0
        while True:
            due = int((time.time() - first_read) // args.interval) + 1  # rounds read so far
            if due <= sent:  # nothing read since the last delta: wait for the next read
                await asyncio.sleep(max(0.0, first_read + sent * args.interval - time.time()))
                continue
            read_at = first_read + (due - 1) * args.interval
            if window.end is not None and read_at >= window.end:
                break
            sequence += 1
            # whole counters only as agents before key ids, or to an aggregator without them
            moved = (
                []
                if keyed and peer_key_ids
                else _moved(records or node_records(shape, node, 0), sent + 1, due)
            )
            latency = await send(encoded(sequence, False, moved, (sent + 1, due)))
            if window.start is not None and read_at >= window.start:
                out["steady"].append(latency)
                out["counters"].append(
                    float(sum(len(range(t, count, 10)) for t, _ in _tenths(sent + 1, due)))
                )
            sent = due
    except (grpc.RpcError, ConnectionError) as error:
        out["errors"].append(1.0)
        print(f"{time.time():.3f} node {node}: {error}", file=sys.stderr)
    finally:
        queue.put_nowait(None)


async def _worker(args: argparse.Namespace) -> None:
    shape = Shape(args.nodes)
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "first",
            "first_done",
            "steady",
            "counters",
            "resyncs",
            "errors",
            "waiting",
            "redirects",
            "silences",
            "first_silences",
            "first_replies",
            "own_lag",
        )
    }
    options = [("grpc.max_send_message_length", 4 << 20), ("grpc.keepalive_time_ms", 20_000)]
    mine = list(range(args.worker, args.nodes, args.workers))
    stubs = _Stubs(options, args.nodes_per_connection)
    start = _StartLine(len(mine))
    window = _Window(len(mine), Path(args.window_dir), args.worker)
    watching = asyncio.ensure_future(window.watch())
    lagging = asyncio.ensure_future(_own_lag(out["own_lag"]))
    try:
        await asyncio.gather(
            *(
                _node(stubs, start, window, i, shape, n, args.interval * n / args.nodes, args, out)
                for i, n in enumerate(mine)
            )
        )
    finally:
        watching.cancel()
        lagging.cancel()
        await stubs.close()
    out["peak_rss_mib"] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
    print(json.dumps(out))


async def _own_lag(out: list[float]) -> None:
    """This load process's own event loop lag, noted when over a second (a silence the nodes
    measure includes it: the load processes share a CPU, and an ack read late is not one
    sent late)."""
    tick = 0.1
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        lag = time.monotonic() - before - tick
        if lag > 1.0:
            out.append(lag)


_READ_LINES = (
    b"calico_accountant_event_loop_lag",
    b"calico_accountant_gc_pause",
    b"calico_accountant_ingest_",
    b"calico_accountant_node_connected{",
)
"""The lines of a scrape this benchmark reads (:func:`_loop_lag`, :func:`_collector_pauses`,
:func:`_ingested`, :func:`_held`)."""


def _scrape(port: int, gzipped: bool) -> tuple[float, int, str]:
    """Seconds one scrape of ``/metrics`` took, its size in bytes (gzip'd when asked), and
    the lines of it this benchmark reads.  Read in pieces and filtered as it comes: at 5,000
    nodes a scrape is ~1.6 GB of text, which the benchmark must not hold beside the
    aggregator."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if gzipped:
        request.add_header("Accept-Encoding", "gzip")
    pieces: list[bytes] = []
    size = 0
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        while piece := response.read(1 << 20):
            size += len(piece)
            pieces.append(piece)
            if not gzipped:  # the text itself: keep what is read, not the piece
                pieces = [_kept_lines(pieces)]
    took = time.perf_counter() - started
    if gzipped:
        with gzip.GzipFile(fileobj=io.BytesIO(b"".join(pieces))) as text:
            pieces = []
            while piece := text.read(1 << 20):
                pieces = [_kept_lines([*pieces, piece])]
    return took, size, _kept_lines([*pieces, b"\n"]).decode()


def _kept_lines(pieces: list[bytes]) -> bytes:
    """The lines of ``pieces`` (text, its last line possibly unfinished) that the benchmark
    reads, then that unfinished last line."""
    lines = b"".join(pieces).split(b"\n")
    rest = lines.pop()
    return b"".join(line + b"\n" for line in lines if line.startswith(_READ_LINES)) + rest


def _health_latency(stub: health_pb2_grpc.HealthStub) -> float | None:
    """Seconds one health check took; None when it failed (the server is not up yet)."""
    started = time.perf_counter()
    try:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=30.0)
    except grpc.RpcError:
        return None
    return time.perf_counter() - started


def _loop_lag(text: str) -> tuple[float, float, float]:
    """The aggregator's longest event loop pause, its wake-ups and those over 100 ms."""
    longest = total = over = 0.0
    for line in text.splitlines():
        if line.startswith("calico_accountant_event_loop_lag_max_seconds "):
            longest = float(line.split()[-1])
        elif line.startswith("calico_accountant_event_loop_lag_seconds_count "):
            total = float(line.split()[-1])
        elif line.startswith('calico_accountant_event_loop_lag_seconds_bucket{le="0.1"}'):
            over = -float(line.split()[-1])
    return longest, total, total + over


def _collector_pauses(text: str) -> str:
    """The aggregator's garbage collections by generation, from its /metrics ``text``: how
    many, their summed and longest pause, and how many took over 100 ms."""
    figures: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("calico_accountant_gc_pause"):
            continue
        name_and_labels, value = line.rsplit(" ", 1)
        generation = name_and_labels.split('generation="', 1)[1].split('"', 1)[0]
        kept = figures.setdefault(generation, {"count": 0.0, "sum": 0.0, "max": 0.0, "under": 0.0})
        if name_and_labels.startswith("calico_accountant_gc_pause_seconds_count"):
            kept["count"] = float(value)
        elif name_and_labels.startswith("calico_accountant_gc_pause_seconds_sum"):
            kept["sum"] = float(value)
        elif name_and_labels.startswith("calico_accountant_gc_pause_max_seconds"):
            kept["max"] = float(value)
        elif name_and_labels.startswith("calico_accountant_gc_pause_seconds_bucket") and 'le="0.1"' in line:
            kept["under"] = float(value)
    return "; ".join(
        f"generation {generation}: {kept['count']:,.0f} collections, {kept['sum']:.1f} s, longest "
        f"{kept['max'] * 1000:.0f} ms, {kept['count'] - kept['under']:.0f} over 100 ms"
        for generation, kept in sorted(figures.items())
    )


def _scrape_periodically(
    ports: list[int],
    every: float,
    out: list[list[tuple[float, float, tuple[float, float, float]]]],
    stop: threading.Event,
) -> None:
    """Every ``every`` seconds until ``stop``: a gzip'd scrape of each aggregator, noting
    when, how long it took and the loop lag figures it read (:func:`_loop_lag`)."""
    while not stop.wait(every):
        for shard, port in enumerate(ports):
            at = time.time()
            took, _, text = _scrape(port, gzipped=True)
            out[shard].append((at, took, _loop_lag(text)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the steady window")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds after start-up before it")
    parser.add_argument("--levels", default="workload,node,cluster")
    parser.add_argument("--shards", type=int, default=0, help="N aggregators sharded over a real etcd")
    parser.add_argument(
        "--encoding",
        choices=("keyed", "plain"),
        default="keyed",
        help="deltas by key id once the aggregator advertises them, as agents do (plain: whole counters)",
    )
    parser.add_argument(
        "--one-door",
        action="store_true",
        help="with --shards: every node first reaches the first shard (default: node i reaches shard "
        "i mod N, as agents reaching the shards through a Service do)",
    )
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=0.0,
        help="scrape /metrics (gzip'd) every S seconds, as Prometheus does (0: once, at the end)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the aggregator's threads on the first CPU, the load processes on the others (one shard)",
    )
    parser.add_argument(
        "--nodes-per-connection",
        type=int,
        default=1,
        help="simulated nodes sharing one gRPC connection (1: a connection each, as agents have; the "
        "aggregator allows 100 streams on one). Runs before 2026-12-05 21:30 UTC used 50",
    )
    parser.add_argument(
        "--delta-hold",
        help="the aggregator's --delta-hold (seconds an applied delta's ack is held while full snapshots "
        "wait; 0: never); its default when not given",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--window-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pin and (args.shards > 1 or len(os.sched_getaffinity(0)) < 2):
        parser.error("--pin needs one aggregator and at least two CPUs")
    if args.worker is not None:
        asyncio.run(_worker(args))
        return
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(processes(Path(stack.enter_context(tempfile.TemporaryDirectory()))))
        extra: list[str] = []
        if args.shards:
            etcd = stack.enter_context(EtcdServer())
            extra = ["--datastore", f"etcd://{etcd.endpoint}", "--shards", "etcd"]
        aggregators = []
        cpus = sorted(os.sched_getaffinity(0))
        for shard in range(max(1, args.shards)):
            grpc_port, metrics_port = free_port(), free_port()
            with children_on(cpus[:1] if args.pin else None):
                process = run.aggregator(
                    grpc_port, metrics_port, "--levels", args.levels, "--max-nodes", str(args.nodes + 10),
                    "--max-counters", str(args.nodes * 5000 + 100_000),
                    "--max-streams-per-peer", str(args.nodes + 10), "--max-streams", str(args.nodes + 10),
                    *extra, *(("--advertise-address", f"127.0.0.1:{grpc_port}") if args.shards else ()),
                    *(("--delta-hold", args.delta_hold) if args.delta_hold is not None else ()),
                    name=f"aggregator-{shard}", env={"POD_NAME": f"shard-{shard}"},
                )  # fmt: skip
            aggregators.append((process.popen.pid, grpc_port, metrics_port))
        if args.shards:
            _wait_members([metrics for _, _, metrics in aggregators], args.shards)
        common = [
            *("--nodes", str(args.nodes), "--workers", str(args.workers), "--interval", str(args.interval)),
            *("--duration", str(args.duration), "--warmup", str(args.warmup), "--encoding", args.encoding),
            *("--nodes-per-connection", str(args.nodes_per_connection)),
            *(
                "--target",
                ",".join(f"127.0.0.1:{grpc}" for _, grpc, _ in aggregators[: 1 if args.one_door else None]),
            ),
        ]
        # Each worker's figures go to a file, not a pipe: a pipe fills (64 KiB) before the
        # worker ends at ~250 nodes a worker, and nothing reads it until every worker has ended.
        outputs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(args.workers)]
        window_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        common += ["--window-dir", str(window_dir)]
        steady_window: tuple[float, float] | None = None
        started = time.time()
        with children_on(cpus[1:] if args.pin else None):
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "bench.load_bench", *common, "--worker", str(w)],
                    stdout=outputs[w],
                    text=True,
                )
                for w in range(args.workers)
            ]
        samples: list[tuple[float, list[float]]] = [
            (started, [cpu_seconds(pid) for pid, _, _ in aggregators])
        ]
        health_checks: list[list[tuple[float, float]]] = [[] for _ in aggregators]
        periodic: list[list[tuple[float, float, tuple[float, float, float]]]] = [[] for _ in aggregators]
        stop_scraping = threading.Event()
        scraper = threading.Thread(
            target=_scrape_periodically,
            args=([port for _, _, port in aggregators], args.scrape_every, periodic, stop_scraping),
            name="scraper",
        )
        if args.scrape_every > 0:
            scraper.start()
        health_channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _, port, _ in aggregators]
        healths = [health_pb2_grpc.HealthStub(channel) for channel in health_channels]
        while any(w.poll() is None for w in workers):
            if steady_window is None:
                steady_window = _Window.open_when_settled(
                    window_dir, args.workers, args.warmup, args.duration
                )
            samples.append((time.time(), [cpu_seconds(pid) for pid, _, _ in aggregators]))
            checked = time.time()
            for shard, health in enumerate(healths):
                latency = _health_latency(health)
                if latency is not None:
                    health_checks[shard].append((checked, latency))
            time.sleep(max(0.0, 1.0 - (time.time() - checked)))
        stop_scraping.set()
        if scraper.is_alive():
            scraper.join()
        for channel in health_channels:
            channel.close()
        results = []
        for output in outputs:
            output.seek(0)
            results.append(json.loads(output.read().strip().splitlines()[-1]))
        memory = [rss_mib(pid) for pid, _, _ in aggregators]
        lags: list[tuple[float, float, float]] = []
        collections: list[str] = []
        held: list[int] = []
        ingested: list[tuple[float, float, float, float]] = []
        scrapes: list[tuple[tuple[float, int], tuple[float, int]]] = []
        for _, _, port in aggregators:
            plain_took, plain_size, text = _scrape(port, gzipped=False)
            gzip_took, gzip_size, _ = _scrape(port, gzipped=True)
            scrapes.append(((plain_took, plain_size), (gzip_took, gzip_size)))
            lags.append(_loop_lag(text))
            collections.append(_collector_pauses(text))
            held.append(_held(text))
            ingested.append(_ingested(text))
    merged = {key: [v for r in results for v in r[key]] for key in results[0]}
    up = max(merged["first_done"]) - started if merged["first_done"] else float("nan")
    steady_from = steady_window[0] if steady_window is not None else float("nan")
    window = [s for s in samples if steady_from <= s[0] <= steady_from + args.duration]
    span = window[-1][0] - window[0][0] if len(window) > 1 else float("nan")
    step = max(1, int(args.interval))
    first, steady = merged["first"], merged["steady"]
    late_first = sum(1 for v in first if v > ACK_TIMEOUT)
    late_steady = sum(1 for v in steady if v > ACK_TIMEOUT)
    rate = len(steady) / args.duration
    counters = sum(merged["counters"]) / args.duration
    p50, p99 = percentile(steady, 0.5) * 1000, percentile(steady, 0.99) * 1000
    slowest = max(steady, default=float("nan")) * 1000
    resyncs, errors, waiting = len(merged["resyncs"]), len(merged["errors"]), len(merged["waiting"])
    redirects = len(merged["redirects"])
    shape = f"{args.nodes} nodes x 4,620 counters, interval {args.interval:g} s, levels {args.levels}"
    sharding = f", {args.shards} shard(s) on etcd" if args.shards else ""
    pinned = ", aggregator pinned to a CPU of its own" if args.pin else ""
    peaks = merged["peak_rss_mib"]
    nan = float("nan")
    print(f"{shape}, {args.workers} load processes{sharding}{pinned}")
    print(f"  load processes: peak RSS {sum(peaks):,.0f} MiB in all ({max(peaks):,.0f} the largest)")
    print(
        f"  start-up: all {len(first)} full snapshots acked in {up:.1f} s; ack p50 "
        f"{statistics.median(first) if first else nan:.2f} s, max {max(first, default=nan):.2f} s, "
        f"over {ACK_TIMEOUT:g} s: {late_first}; "
        f"interim acks received {waiting}; redirects followed {redirects}"
    )
    silences, first_silences, replies = merged["silences"], merged["first_silences"], merged["first_replies"]
    print(
        f"  a new stream's first message (an agent waits {FIRST_ACK_TIMEOUT:g} s for it) came within "
        f"{max(replies, default=nan):.2f} s (p50 {statistics.median(replies) if replies else nan:.2f} s); "
        f"over {ACK_TIMEOUT:g} s: {sum(1 for v in replies if v > ACK_TIMEOUT)}, over "
        f"{FIRST_ACK_TIMEOUT:g} s (an agent would have reconnected): "
        f"{sum(1 for v in replies if v > FIRST_ACK_TIMEOUT)}"
    )
    print(
        f"  then waits for any message (an agent's ack timeout, {ACK_TIMEOUT:g} s, applies to each): longest "
        f"{max(first_silences, default=nan):.2f} s for a full snapshot, {max(silences, default=nan):.2f} s "
        f"for a delta; over {ACK_TIMEOUT:g} s (an agent would have reconnected): "
        f"{sum(1 for v in first_silences if v > ACK_TIMEOUT)} and "
        f"{sum(1 for v in silences if v > ACK_TIMEOUT)}; the load processes' own loop lag: longest "
        f"{max(merged['own_lag'], default=0.0):.2f} s, {len(merged['own_lag'])} lags over 1 s"
    )
    print(
        f"  steady ({args.duration:g} s): {rate:.1f} snapshots/s, {counters:,.0f} counters/s; "
        f"ack p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {slowest:.0f} ms; over {ACK_TIMEOUT:g} s: "
        f"{late_steady}; resyncs {resyncs}; stream errors {errors}"
    )
    shards = zip(memory, scrapes, held, lags, collections, health_checks, periodic, ingested, strict=True)
    for shard, ((rss, peak), (plain, gzipped), nodes, lag, collected, checks, scraped, ingest) in enumerate(
        shards
    ):
        if len(window) > 1:
            cores = (window[-1][1][shard] - window[0][1][shard]) / span
            worst = max(
                (
                    (b[1][shard] - a[1][shard]) / (b[0] - a[0])
                    for a, b in zip(window, window[step:], strict=False)
                ),
                default=0.0,
            )
        else:
            cores = worst = float("nan")
        up_to = [cpu for at, cpu in samples if at <= started + up + 1.0][-1]
        start_cpu = up_to[shard] - samples[0][1][shard]
        print(
            f"  aggregator {shard} ({nodes} nodes): start-up {start_cpu:.1f} CPU s; "
            f"CPU {cores:.2f} cores (worst {args.interval:g} s: "
            f"{worst:.2f}); RSS {rss:,.0f} MiB (peak {peak:,.0f}); /metrics {plain[1] / 1e6:.1f} MB in "
            f"{plain[0]:.2f} s, gzip {gzipped[1] / 1e6:.1f} MB in {gzipped[0]:.2f} s"
        )
        print(
            f"    ingest, whole run: {ingest[0]:,.0f} deltas applied, {ingest[1]:,.0f} counters applied "
            f"(full and delta); {ingest[2]:,.0f} delta acks held ({ingest[3]:,.0f} s summed)"
        )
        up_checks = [v for t, v in checks if t <= started + up]
        steady_checks = [v for t, v in checks if steady_from <= t <= steady_from + args.duration]
        print(
            f"    pauses: health check max {max(up_checks, default=float('nan')) * 1000:.0f} ms during "
            f"the start-up ({len(up_checks)} checks), "
            f"{max(steady_checks, default=float('nan')) * 1000:.0f} ms steady ({len(steady_checks)}); "
            f"event loop lag max {lag[0] * 1000:.0f} ms, {lag[2]:.0f} of {lag[1]:.0f} wake-ups over 100 ms"
        )
        print(f"    garbage collections, whole run: {collected}")
        if scraped:  # every periodic scrape (a scrape as long as the interval leaves few in a window)
            durations = [seconds for _, seconds, _ in scraped]
            print(
                f"    scrapes every {args.scrape_every:g} s (gzip), whole run: {len(durations)}, "
                f"p50 {percentile(durations, 0.5):.2f} s, longest {max(durations):.2f} s"
            )
        in_window = [entry for entry in scraped if steady_from <= entry[0] <= steady_from + args.duration]
        if len(in_window) > 1:
            first_lag, last_lag = in_window[0][2], in_window[-1][2]
            print(
                f"    scrapes every {args.scrape_every:g} s: {len(in_window)} in the steady window, "
                f"longest {max(took for _, took, _ in in_window):.2f} s; between the first and the last, "
                f"{last_lag[2] - first_lag[2]:.0f} of {last_lag[1] - first_lag[1]:.0f} loop wake-ups "
                "over 100 ms"
            )


def _ingested(text: str) -> tuple[float, float, float, float]:
    """From the aggregator's /metrics ``text``: deltas applied, counters applied, delta acks
    held and the seconds they were held."""
    wanted = {
        'calico_accountant_ingest_snapshots_total{outcome="applied",type="delta"}': 0,
        "calico_accountant_ingest_counters_applied_total": 1,
        "calico_accountant_ingest_held_acks_total": 2,
        "calico_accountant_ingest_held_ack_seconds_total": 3,
    }
    figures = [0.0, 0.0, 0.0, 0.0]
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            figures[wanted[name]] = float(value)
    return figures[0], figures[1], figures[2], figures[3]


def _held(text: str) -> int:
    """Nodes the aggregator holds (its ``calico_accountant_node_connected`` series in ``text``,
    its /metrics)."""
    return sum(1 for line in text.splitlines() if line.startswith("calico_accountant_node_connected{"))


def _wait_members(metrics_ports: list[int], count: int) -> None:
    """Until every shard serves /metrics and sees ``count`` members."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen: list[float] = []
        for port in metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                break
            seen.extend(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("calico_accountant_shard_members ")
            )
        if len(seen) == len(metrics_ports) and all(value == count for value in seen):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the shards did not all see {count} members")


if __name__ == "__main__":
    main()
