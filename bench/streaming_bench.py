"""Ingest throughput and read-to-visible latency, with real processes on loopback.

    .venv/bin/python -m bench.streaming_bench [--pods 1000 --policies 40] [--latency-pods 100]

1. Throughput: an aggregator process; this process streams snapshots of one rendered
   node (felix_render.sized_model(pods, policies)) over a real ingest stream: a full
   snapshot, a delta where every counter changed, a delta where 1% changed.  Reported:
   wall time from the first message to the ack, and the aggregator's own apply time
   (``calico_accountant_ingest_apply_seconds``), as counters per second.
2. Latency: an aggregator process and an agent process reading a file every second.
   The file's counters are scaled up; reported is the time from the agent's read (its
   read_time) to the change being visible in ``/metrics`` and to the hits arriving in a
   Watch stream.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import hits_pb2_grpc as hpb_grpc
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant.v1 import snapshot_pb2_grpc as spb_grpc
from calico_accountant.wire.chunks import split_snapshot
from calico_accountant.wire.snapshots import build_snapshot
from node_agent.parsing import parse_node
from tests.support.dumps import scale_dump, write_atomic
from tests.support.felix_render import render, sized_model
from tests.support.ports import free_port
from tests.support.processes import processes
from tests.support.scrape import http_get, metric_samples
from tests.support.waits import wait_until

CHUNK = 4 * 1024 * 1024 - 64 * 1024


def _apply_seconds(metrics_port: int) -> tuple[float, float]:
    text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
    return (
        metric_samples(text, "calico_accountant_ingest_apply_seconds_sum")[()],
        metric_samples(text, "calico_accountant_ingest_apply_seconds_count")[()],
    )


def throughput(pods: int, policies: int) -> None:
    text = render(sized_model(pods, policies, seed=1)).text
    base = parse_node([("n", text)]).records
    doubled = [r._replace(packets=r.packets * 2 + 1, bytes=r.bytes * 2 + 1) for r in base]
    some = [
        r._replace(packets=r.packets * 3 + 1)
        for r in doubled[:: max(1, len(doubled) // (len(doubled) // 100))]
    ]
    print(f"node {pods}x{policies}: {len(base)} counters, dump {len(text) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as directory, processes(Path(directory)) as run:
        port, metrics_port = free_port(), free_port()
        run.aggregator(port, metrics_port, "--hits-window-max", "200000")
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 4 << 20)]
        )
        stub = spb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        grpc.channel_ready_future(channel).result(timeout=20)
        requests: list[spb.NodeSnapshot | None] = []
        lock = threading.Condition()

        def source() -> Iterator[spb.NodeSnapshot]:
            while True:
                with lock:
                    while not requests:
                        lock.wait()
                    message = requests.pop(0)
                if message is None:
                    return
                yield message

        acks = stub.StreamSnapshots(source())
        for sequence, (label, records, full) in enumerate(
            [
                ("full snapshot", base, True),
                ("delta, all changed", doubled, False),
                ("delta, 1% changed", some, False),
            ],
            start=1,
        ):
            snapshot = build_snapshot(
                node="bench",
                agent_instance_id="bench",
                sequence=sequence,
                read_time=datetime.now(UTC),
                full=full,
                records=records,
            )
            chunks = split_snapshot(snapshot, CHUNK)
            before = _apply_seconds(metrics_port)
            started = time.perf_counter()
            with lock:
                requests.extend(chunks)
                lock.notify()
            ack = next(acks)
            wall = time.perf_counter() - started
            after = _apply_seconds(metrics_port)
            assert ack.sequence == sequence and not ack.resync_requested, ack
            applied = after[0] - before[0]
            print(
                f"  {label:<20} {len(records):>7} counters in {len(chunks)} message(s): "
                f"send->ack {wall * 1000:7.1f} ms ({len(records) / wall:>9,.0f} counters/s), "
                f"apply {applied * 1000:7.1f} ms ({len(records) / applied:>9,.0f} counters/s)"
            )
        with lock:
            requests.append(None)
            lock.notify()
        channel.close()


def latency(pods: int, policies: int, rounds: int) -> None:
    text = render(sized_model(pods, policies, seed=2)).text
    with tempfile.TemporaryDirectory() as directory, processes(Path(directory)) as run:
        dump = Path(directory) / "node.save"
        write_atomic(dump, scale_dump(text, 1))
        port, metrics_port = free_port(), free_port()
        run.aggregator(port, metrics_port)
        run.agent("lat", port, [f"cat {dump}"], "--interval", "1")
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        hits = hpb_grpc.PolicyHitsStub(channel)  # type: ignore[no-untyped-call]
        arrivals: list[tuple[float, float]] = []  # (read time, arrival)

        def watch() -> None:
            try:
                for batch in hits.Watch(hpb.WatchRequest(follow=True), wait_for_ready=True):
                    now = time.time()
                    if batch.hits:
                        arrivals.append((batch.hits[0].time.ToMicroseconds() / 1e6, now))
            except grpc.RpcError:
                return

        threading.Thread(target=watch, daemon=True).start()

        def total() -> float:
            body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
            drops = metric_samples(body, "calico_accountant_node_no_policy_drop_packets_total")
            policies = metric_samples(body, "calico_accountant_node_policy_packets_total")
            return float(sum(drops.values()) + sum(policies.values()))

        wait_until(lambda: total() > 0, timeout=30, what="first snapshot")
        to_metrics: list[float] = []
        to_watch: list[float] = []
        for factor in range(2, rounds + 2):
            before = total()
            seen = len(arrivals)
            write_atomic(dump, scale_dump(text, factor))
            while total() == before:
                time.sleep(0.002)
            visible = time.time()
            body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
            read_time = metric_samples(body, "calico_accountant_node_last_snapshot_timestamp_seconds")[
                (("node", "lat"),)
            ]
            to_metrics.append(visible - read_time)
            wait_until(functools.partial(lambda s: len(arrivals) > s, seen), timeout=10)
            read, arrived = arrivals[seen]
            to_watch.append(arrived - read)
            time.sleep(0.3)
        channel.close()

        def summary(values: list[float]) -> str:
            ms = sorted(v * 1000 for v in values)
            return f"median {statistics.median(ms):6.1f} ms, max {ms[-1]:6.1f} ms"

        print(
            f"latency, node {pods}x{policies}, {rounds} rounds (agent read -> visible, not the read interval)"
        )
        print(f"  /metrics: {summary(to_metrics)}  (includes up to ~2 ms polling)")
        print(f"  Watch:    {summary(to_watch)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=40)
    parser.add_argument("--latency-pods", type=int, default=100)
    parser.add_argument("--latency-policies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    throughput(args.pods, args.policies)
    latency(args.latency_pods, args.latency_policies, args.rounds)
    if args.pods >= 1000:
        latency(args.pods, args.policies, 3)


if __name__ == "__main__":
    main()
