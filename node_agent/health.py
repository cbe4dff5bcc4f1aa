"""The agent's own small HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics``.

Kept separate from the counters the agent ships (those are the aggregator's business):
this is how Kubernetes and an operator see the *agent* itself.  Its metrics live in their
own :class:`~prometheus_client.CollectorRegistry`, so nothing global leaks in and tests
can run several agents in one process.

* ``/healthz`` fails when the read loop has not finished an attempt (success or
  failure) for ``stall_after`` seconds: the process is wedged and a restart helps.
* ``/readyz`` fails until a read succeeded and the aggregator acknowledged a snapshot,
  and again when the last read failed or the stream is down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from calico_accountant.runtime.build_info import BuildInfo, build_info
from calico_accountant.runtime.http import TEXT_PLAIN, HttpServer, Response
from calico_accountant.wire.snapshots import DATAPLANE_NAMES

if TYPE_CHECKING:
    from calico_accountant.runtime.web_config import WebConfig

__all__ = ["AgentMetrics", "AgentStatus", "serve_health"]

log = logging.getLogger("calico_accountant.agent.health")


DATAPLANE_LABELS = DATAPLANE_NAMES
"""``TableSource.dataplane`` -> the ``dataplane`` label of the agent's metrics."""


class AgentMetrics:
    """The agent's self-metrics (``calico_accountant_agent_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        self.build_info = Gauge(
            "calico_accountant_build_info",
            "Always 1; the labels say which calico-accountant agent build is running.",
            BuildInfo.LABELS,
            registry=r,
        )
        self.build_info.labels(*build_info().values()).set(1)
        self.read_duration = Histogram(
            "calico_accountant_agent_read_duration_seconds",
            "Time to run the save commands and parse their output, per read.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.reads = Counter(
            "calico_accountant_agent_reads",
            "Reads of the filter tables, by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.rereads = Counter(
            "calico_accountant_agent_glitch_rereads",
            "Near-zero reads re-read at once, by outcome: dodged (the re-read was normal, the "
            "glitch was dropped) or confirmed (the reset was real and was sent).",
            ["outcome"],
            registry=r,
        )
        self.counters = Gauge(
            "calico_accountant_agent_counters", "Counter records in the last successful read.", registry=r
        )
        self.dataplane_tables = Gauge(
            "calico_accountant_agent_dataplane_tables",
            "Tables read in the last successful read, per dataplane: nftables (felix's nftables "
            "mode), iptables-legacy, iptables-nft, other (a file or an unknown command).",
            ["dataplane"],
            registry=r,
        )
        self.rules = Gauge(
            "calico_accountant_agent_rules", "Rule lines understood in the last read.", registry=r
        )
        self.diagnostics = Gauge(
            "calico_accountant_agent_parse_diagnostics",
            "Parse diagnostics in the last successful read, per code.",
            ["code"],
            registry=r,
        )
        self.diagnostics_total = Counter(
            "calico_accountant_agent_diagnostics",
            "Parse diagnostics summed over all reads, per code.",
            ["code"],
            registry=r,
        )
        self.last_read = Gauge(
            "calico_accountant_agent_last_read_timestamp_seconds",
            "Unix time of the last successful read.",
            registry=r,
        )
        self.snapshots_sent = Counter(
            "calico_accountant_agent_snapshots_sent",
            "Snapshots sent to the aggregator, by type (full, delta).",
            ["type"],
            registry=r,
        )
        self.counters_sent = Counter(
            "calico_accountant_agent_counters_sent",
            "Counters sent in snapshots (changed ones for deltas).",
            registry=r,
        )
        self.messages_sent = Counter(
            "calico_accountant_agent_messages_sent",
            "gRPC messages sent (a chunked snapshot is several).",
            registry=r,
        )
        self.snapshots_superseded = Counter(
            "calico_accountant_agent_snapshots_superseded",
            "Reads replaced by a newer read before they could be sent (the aggregator was slow or away).",
            registry=r,
        )
        self.resyncs = Counter(
            "calico_accountant_agent_resyncs_requested", "Full resends the aggregator asked for.", registry=r
        )
        self.reconnects = Counter(
            "calico_accountant_agent_reconnects",
            "Times the ingest stream was (re)established after the first connection.",
            registry=r,
        )
        self.stream_errors = Counter(
            "calico_accountant_agent_stream_errors",
            "Ingest streams that ended with an error, by gRPC code.",
            ["code"],
            registry=r,
        )
        self.redirects = Counter(
            "calico_accountant_agent_redirects",
            "Ingest streams a sharded aggregator redirected to the replica owning this node, by outcome: "
            "followed, or fallback (too many in a row: back to the configured address).",
            ["outcome"],
            registry=r,
        )
        self.connected = Gauge(
            "calico_accountant_agent_connected",
            "1 while the ingest stream is up and acknowledged.",
            registry=r,
        )
        self.last_ack = Gauge(
            "calico_accountant_agent_last_ack_timestamp_seconds",
            "Unix time the aggregator last acknowledged a snapshot.",
            registry=r,
        )
        self.queue_position = Gauge(
            "calico_accountant_agent_queue_position",
            "Snapshots ahead of this agent's at the aggregator (full snapshots take turns there; 0 when "
            "none waits).",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class AgentStatus:
    """What health and readiness are judged on; written by the agent's loops."""

    started: float
    stall_after: float
    last_attempt: float = 0.0
    last_read_ok: bool = False
    last_read_error: str = ""
    ever_read: bool = False
    stream_up: bool = False
    ever_acked: bool = False

    def healthy(self, now: float) -> tuple[bool, str]:
        reference = self.last_attempt or self.started
        if now - reference > self.stall_after:
            return False, f"no read attempt for {now - reference:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.ever_read:
            return False, "no successful read yet"
        if not self.last_read_ok:
            return False, f"last read failed: {self.last_read_error}"
        if not self.ever_acked:
            return False, "no snapshot acknowledged by the aggregator yet"
        if not self.stream_up:
            return False, "not connected to the aggregator"
        return True, "ok"


def serve_health(
    host: str, port: int, status: AgentStatus, metrics: AgentMetrics, *, web: WebConfig | None = None
) -> HttpServer:
    """Serve the three endpoints on ``host:port`` (port 0 picks a free one) until the
    returned server is closed.  Threaded, so they answer even while the asyncio loop is
    busy parsing a large table.  ``web``: TLS and basic auth (``--web-config``)."""

    def metrics_page() -> Response:
        return Response(200, CONTENT_TYPE_LATEST, metrics.render())

    def healthz() -> Response:
        ok, why = status.healthy(time.time())
        return Response(200 if ok else 503, TEXT_PLAIN, why.encode() + b"\n")

    def readyz() -> Response:
        ok, why = status.ready()
        return Response(200 if ok else 503, TEXT_PLAIN, why.encode() + b"\n")

    def not_found() -> Response:
        return Response(404, TEXT_PLAIN, b"not found: try /metrics, /healthz or /readyz\n")

    return HttpServer(
        host,
        port,
        {"/metrics": metrics_page, "/healthz": healthz, "/readyz": readyz},
        name="agent-health",
        not_found=not_found,
        logger=log,
        web=web,
    )
