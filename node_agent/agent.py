"""The node agent process: read every ``interval``, stream to the aggregator, serve health.

Wiring only; the parts are :mod:`node_agent.reader` (commands, parse, glitch),
:mod:`node_agent.streamer` (gRPC) and :mod:`node_agent.health` (HTTP); logging, signals
and the HTTP server are the shell every calico-accountant daemon shares
(:mod:`calico_accountant.runtime.http`).  The read loop and the stream run as two asyncio
tasks joined by a :class:`LatestSlot`, so a slow aggregator never delays a read.  The
agent needs no datastore access: it sends raw interface and chain names; the aggregator
resolves them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calico_accountant.contract import AGENT_HEALTH_PORT
from calico_accountant.runtime.client_tls import ClientTls, client_tls_from_args
from calico_accountant.runtime.flags import HelpFormatter
from calico_accountant.runtime.process import configure_logging, stop_on_signals
from calico_accountant.wire.bounds import DEFAULT_MAX_MESSAGE_BYTES
from node_agent.dataplane import choose_dataplane
from node_agent.flags import add_arguments
from node_agent.health import DATAPLANE_LABELS, AgentMetrics, AgentStatus, serve_health
from node_agent.memory_upkeep import MemoryUpkeep
from node_agent.reader import (
    DEFAULT_NEAR_ZERO_PACKETS,
    NodeRead,
    NodeReader,
    ReadError,
)
from node_agent.streamer import LatestSlot, Streamer, StreamerConfig

if TYPE_CHECKING:
    from calico_accountant.runtime.web_config import WebConfig

__all__ = ["AgentConfig", "add_arguments", "config_from_args", "default_node_name", "run", "run_agent"]

log = logging.getLogger("calico_accountant.agent")


def default_node_name() -> str:
    """``$NODENAME``, then the hostname: the order Calico itself uses."""
    return os.environ.get("NODENAME", "").strip() or socket.gethostname()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node: str
    aggregator: str
    interval: float = 10.0
    commands: tuple[str, ...] = ()
    """Empty: the backend's ``ip(6)tables-*-save -c -t filter``, chosen like felix."""
    backend: str = "auto"
    nft_commands: tuple[str, ...] = ()
    """``--nft-list``: commands printing ``nft -j list table ip[6] calico`` (read with ``commands``)."""
    dataplane: str = "auto"
    """``auto``, ``iptables`` or ``nftables``: what to read when no command is given."""
    ipv6: bool = True
    read_timeout: float = 30.0
    near_zero_packets: int = DEFAULT_NEAR_ZERO_PACKETS
    listen_host: str = "0.0.0.0"
    listen_port: int = AGENT_HEALTH_PORT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ack_timeout: float = 30.0
    first_ack_timeout: float = 120.0
    backoff_max: float = 30.0
    tls: ClientTls | None = None
    """None: plaintext."""
    token_file: str | None = None
    """A projected ServiceAccount token sent to the aggregator (re-read at every connect)."""
    web_config: WebConfig | None = None
    """TLS and basic auth for the health endpoint."""
    release_memory: bool = False
    """Hand memory back to the system (:class:`~node_agent.memory_upkeep.MemoryUpkeep`): the
    command line's agent does; an agent run inside another program (tests) leaves that
    program's allocator and mappings alone."""


def _split_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    if args.interval <= 0:
        raise ValueError("--interval must be positive")
    host, port = _split_host_port(args.listen)
    _split_host_port(args.aggregator)
    tls = client_tls_from_args(args)
    if tls is not None:
        tls.read()  # a wrong path fails at start, not at every reconnect
    return AgentConfig(
        node=args.node or default_node_name(),
        aggregator=args.aggregator,
        interval=args.interval,
        commands=tuple(args.commands or ()),
        backend=args.iptables_backend.lower(),
        nft_commands=tuple(args.nft_commands or ()),
        dataplane=args.dataplane,
        ipv6=not args.no_ipv6,
        read_timeout=args.read_timeout,
        near_zero_packets=args.near_zero_packets,
        listen_host=host,
        listen_port=port,
        max_message_bytes=args.max_message_bytes,
        ack_timeout=args.ack_timeout,
        first_ack_timeout=args.first_ack_timeout,
        backoff_max=args.backoff_max,
        tls=tls,
        token_file=args.token_file or None,
        web_config=_load_web_config(args.web_config) if args.web_config else None,
        release_memory=True,
    )


def _load_web_config(path: str) -> WebConfig:
    """``--web-config``: imported only when given (with its hashing and TLS helpers, 0.3 MiB
    an agent without one does not keep)."""
    from calico_accountant.runtime.web_config import load_web_config

    return load_web_config(path)


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    stop = stop or stop_on_signals()
    metrics = AgentMetrics()
    status = AgentStatus(started=time.time(), stall_after=3 * config.interval + 2 * config.read_timeout)
    health = serve_health(config.listen_host, config.listen_port, status, metrics, web=config.web_config)
    log.info("agent for node %s: health on %s:%d", config.node, config.listen_host, health.port)
    upkeep = MemoryUpkeep() if config.release_memory else None
    if upkeep is not None:
        upkeep.started()
    try:
        commands = [*config.commands, *config.nft_commands]
        if not commands:
            choice = await choose_dataplane(
                config.dataplane, config.backend, ipv6=config.ipv6, timeout=config.read_timeout
            )
            commands = list(choice.commands)
            level = logging.WARNING if choice.migrating else logging.INFO
            log.log(level, "reading %s (%s): %s", choice.dataplane.value, choice.note, commands)
        reader = NodeReader(commands, timeout=config.read_timeout, near_zero_packets=config.near_zero_packets)
        slot: LatestSlot[NodeRead] = LatestSlot()
        streamer = Streamer(
            StreamerConfig(
                target=config.aggregator,
                node=config.node,
                max_message_bytes=config.max_message_bytes,
                chunk_bytes=max(64 * 1024, config.max_message_bytes - 64 * 1024),
                ack_timeout=config.ack_timeout,
                first_ack_timeout=config.first_ack_timeout,
                backoff_max=config.backoff_max,
                tls=config.tls,
                token_file=config.token_file,
            ),
            slot,
            metrics=metrics,
            status=status,
        )
        log.info("streaming to %s as instance %s", config.aggregator, streamer.instance_id)
        stream_task = asyncio.create_task(streamer.run(), name="ingest-stream")
        read_task = asyncio.create_task(
            _read_loop(config, reader, slot, metrics, status, upkeep), name="read-loop"
        )
        stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({stopping, read_task, stream_task}, return_when=asyncio.FIRST_COMPLETED)
        status_code = 0
        for task in (read_task, stream_task):
            if task.done():  # neither should ever end by itself: exit so the pod restarts
                log.error("%s ended unexpectedly: %r", task.get_name(), task.exception())
                status_code = 1
        every: tuple[asyncio.Task[Any], ...] = (stopping, read_task, stream_task)
        for task in every:
            task.cancel()
        for task in every:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return status_code
    finally:
        health.close()


async def _read_loop(
    config: AgentConfig,
    reader: NodeReader,
    slot: LatestSlot[NodeRead],
    metrics: AgentMetrics,
    status: AgentStatus,
    upkeep: MemoryUpkeep | None = None,
) -> None:
    """One read per interval on a fixed schedule (a slow read shortens the next wait)."""
    next_tick = time.monotonic()
    dodged = confirmed = 0
    while True:
        try:
            read = await reader.read()
        except ReadError as error:
            metrics.reads.labels("error").inc()
            status.last_read_ok, status.last_read_error = False, str(error)
            log.warning("read failed: %s", error)
        except Exception as error:  # a daemon never dies from one bad read
            metrics.reads.labels("error").inc()
            status.last_read_ok, status.last_read_error = False, repr(error)
            log.exception("read failed unexpectedly")
        else:
            _record_read(read, metrics, status)
            if reader.glitches_dodged > dodged:
                metrics.rereads.labels("dodged").inc(reader.glitches_dodged - dodged)
            if reader.resets_confirmed > confirmed:
                metrics.rereads.labels("confirmed").inc(reader.resets_confirmed - confirmed)
            dodged, confirmed = reader.glitches_dodged, reader.resets_confirmed
            if slot.put(read):
                metrics.snapshots_superseded.inc()
        status.last_attempt = time.time()
        if upkeep is not None:
            upkeep.after_read(acked=status.ever_acked)
        next_tick += config.interval
        now = time.monotonic()
        if next_tick < now:  # fell behind (a read longer than the interval): do not burst
            next_tick = now
        await asyncio.sleep(next_tick - now)


def _record_read(read: NodeRead, metrics: AgentMetrics, status: AgentStatus) -> None:
    metrics.reads.labels("ok").inc()
    metrics.read_duration.observe(read.seconds)
    metrics.counters.set(len(read.records))
    metrics.rules.set(read.result.rules_seen)
    metrics.last_read.set(read.read_time.timestamp())
    tables: dict[str, int] = dict.fromkeys(DATAPLANE_LABELS.values(), 0)
    for source in read.sources:
        label = DATAPLANE_LABELS.get(source.dataplane, "other")
        tables[label] = tables.get(label, 0) + 1
    for label, count in tables.items():
        metrics.dataplane_tables.labels(label).set(count)
    counts = read.result.diagnostic_counts()
    for code in set(counts) | {key[0] for key in _label_values(metrics)}:
        metrics.diagnostics.labels(code).set(counts.get(code, 0))
    for code, count in counts.items():
        metrics.diagnostics_total.labels(code).inc(count)
    status.last_read_ok, status.ever_read, status.last_read_error = True, True, ""


def _label_values(metrics: AgentMetrics) -> list[tuple[str, ...]]:
    """Codes the diagnostics gauge already has (so a code that went away drops to 0)."""
    return [
        (sample.labels["code"],)
        for family in metrics.diagnostics.collect()
        for sample in family.samples
        if "code" in sample.labels
    ]


def run(args: argparse.Namespace) -> int:
    """Entry point for ``calico-accountant agent``."""
    configure_logging(args.log_level, args.log_format)
    try:
        config = config_from_args(args)
    except ValueError as error:
        log.error("%s", error)
        return 2
    try:
        return asyncio.run(run_agent(config))
    except OSError as error:  # the port is taken, the web config's certificate cannot be loaded
        log.error("cannot start: %s", error)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node_agent",
        description="The calico-accountant node agent.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
