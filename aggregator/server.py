"""The aggregator process, wiring only: datastore, accounting, gRPC, /metrics, one loop.

* the datastore source (etcd or a file) feeds a :class:`DatastoreCache`; every new
  catalog is handed to the :class:`Accountant`, which re-resolves its series;
* the ``grpc.aio`` server carries ``Ingest`` (agents), ``PolicyHits`` (consumers), the
  standard health service and reflection, with explicit message size limits and a
  keepalive policy that lets agents ping an idle stream; plaintext, or TLS with the
  identity and access rules :func:`aggregator.trust.port.port_trust` decides;
* ``/metrics`` is the accounting exposition (:func:`aggregator.exposition.serving.serve_metrics`) plus this
  process's own ingest and hit metrics;
* a housekeeping task expires retired counters;
* SIGTERM/SIGINT: health goes NOT_SERVING, streams get a grace period, then all stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, ProcessCollector

from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.checkpoint.keeper import CheckpointKeeper, CheckpointMetrics
from aggregator.checkpoint.open import open_checkpoint_store
from aggregator.checkpoint.stores import parse_checkpoint_spec
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.sources import DatastoreSource, open_datastore
from aggregator.datastore.spec import parse_datastore_spec
from aggregator.exposition.serving import serve_metrics
from aggregator.hits.hub import HitHub, HitMetrics
from aggregator.hits.servicer import PolicyHitsServicer
from aggregator.ingest.limits import StreamLimits
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.servicer import IngestServicer
from aggregator.ledger import FirstSnapshot, Ledger, Limits
from aggregator.metrics.datastore import DatastoreCollector
from aggregator.series.options import SeriesOptions
from aggregator.trust.access import AccessRules
from aggregator.trust.credentials import ServerTls
from aggregator.trust.port import port_trust
from aggregator.trust.tokens import TokenSettings, TokenVerifier
from calico_accountant import __version__
from calico_accountant.contract import AGGREGATOR_GRPC_PORT, AGGREGATOR_METRICS_PORT
from calico_accountant.daemon import HttpServer, release_free_memory, stop_on_signals
from calico_accountant.v1 import hits_pb2, hits_pb2_grpc, snapshot_pb2, snapshot_pb2_grpc
from calico_accountant.web_config import WebConfig
from calico_accountant.wire import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["Aggregator", "AggregatorConfig", "run_aggregator", "server_options"]

log = logging.getLogger("calico_accountant.aggregator")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024

_SERVICES = (
    snapshot_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
    hits_pb2.DESCRIPTOR.services_by_name["PolicyHits"].full_name,
)


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    grpc_host: str = "0.0.0.0"
    grpc_port: int = AGGREGATOR_GRPC_PORT
    """0 picks a free port (see :attr:`Aggregator.grpc_port`)."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int = AGGREGATOR_METRICS_PORT
    datastore: str = ""
    """``etcd://host:port[,...]``, ``etcds://...``, ``kubernetes`` or ``file:PATH``; empty: none."""
    kubeconfig: str | None = None
    interface_prefix: str = "cali"
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    sync_timeout: float = 30.0
    """How long start-up waits for the datastore's first listing before serving anyway."""
    series: SeriesOptions = field(default_factory=SeriesOptions)
    stale_after: float = 120.0
    retired_grace: float = 600.0
    node_expiry: float = 3600.0
    expire_interval: float = 30.0
    ledger_limits: Limits = field(default_factory=Limits)
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    access: AccessRules = field(default_factory=AccessRules)
    """Node identity template and API clients; enforced whenever identities are checked."""
    tls: ServerTls | None = None
    """TLS on the gRPC port (None: plaintext); with a client CA, identities are checked."""
    checkpoint: str = ""
    """``file:PATH`` or ``etcd`` (the datastore's); empty: none, a restart counts from zero."""
    checkpoint_interval: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    hits_window_seconds: float = 600.0
    hits_window_max: int = 100_000
    watch_buffer: int = 10_000
    shutdown_grace: float = 2.0
    tokens: TokenSettings | None = None
    """Agents may identify with a ServiceAccount token (then identities are enforced)."""
    web_config: WebConfig | None = None
    """TLS and basic auth for /metrics."""


MAX_METADATA_BYTES = 16 * 1024
"""Call metadata a client may send (a ServiceAccount token is 1-2 KiB)."""
MAX_STREAMS_PER_CONNECTION = 100


def server_options(config: AggregatorConfig) -> list[tuple[str, int]]:
    """Explicit size limits (a larger incoming message is refused with RESOURCE_EXHAUSTED;
    the agent chunks below it; metadata and concurrent calls per connection are capped)
    and a ping policy that accepts the agents' keepalives (every 20 s) but closes a
    connection that pings more often than every 5 s without data, after two strikes."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        # Larger on the way out: a Snapshot of a big cluster's totals is tens of MB (the
        # CLI accepts 64 MiB); Watch batches stay small.
        ("grpc.max_send_message_length", max(config.max_message_bytes, MAX_RESPONSE_BYTES)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ]


class Aggregator:
    """All the aggregator's parts in one event loop; :meth:`start` then :meth:`stop`."""

    def __init__(self, config: AggregatorConfig) -> None:
        self.config = config
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.cache: DatastoreCache | None = None
        self._source: DatastoreSource | None = None
        resolver = Catalog.empty()
        spec = (
            parse_datastore_spec(
                config.datastore,
                ca=config.etcd_ca,
                cert=config.etcd_cert,
                key=config.etcd_key,
                kubeconfig=config.kubeconfig,
                interface_prefix=config.interface_prefix,
            )
            if config.datastore
            else None
        )
        if spec is not None:
            self.cache = DatastoreCache(source=spec.describe())
            self._source = open_datastore(spec, self.cache)
            resolver = self.cache.catalog
            self.registry.register(DatastoreCollector(self.cache))
        self.accountant = Accountant(
            resolver,
            options=config.series,
            ledger=Ledger(
                stale_after=config.stale_after,
                retired_grace=config.retired_grace,
                node_expiry=config.node_expiry,
                limits=config.ledger_limits,
                first_snapshot=FirstSnapshot.BASELINE,
            ),
        )
        if self.cache is not None:
            self.cache.add_listener(self.accountant.set_resolver)
        ProcessCollector(registry=self.registry)  # process_start_time_seconds and friends
        self.checkpoints: CheckpointKeeper | None = None
        if config.checkpoint:
            self.checkpoints = CheckpointKeeper(
                self.accountant,
                open_checkpoint_store(parse_checkpoint_spec(config.checkpoint), spec),
                interval=config.checkpoint_interval,
                metrics=CheckpointMetrics(self.registry),
            )
        self._checkpointing: asyncio.Task[None] | None = None
        self.hub = HitHub(
            window_seconds=config.hits_window_seconds,
            window_hits=config.hits_window_max,
            buffer_hits=config.watch_buffer,
            metrics=HitMetrics(self.registry),
        )
        self.verifier = TokenVerifier.from_settings(config.tokens) if config.tokens else None
        self.trust = port_trust(config.tls, config.access, self.verifier)
        self.ingest = IngestServicer(
            self.accountant,
            on_increases=self.hub.publish,
            metrics=IngestMetrics(self.registry),
            access=self.trust.access,
            identify=self.trust.identify,
            limits=config.stream_limits,
        )
        self.hits = PolicyHitsServicer(
            self.hub,
            self.accountant,
            started=self.started,
            access=self.trust.access,
            identify=self.trust.identify,
        )
        self.health = HealthServicer()
        self.server = grpc.aio.server(options=server_options(config))
        snapshot_pb2_grpc.add_IngestServicer_to_server(self.ingest, self.server)  # type: ignore[no-untyped-call]
        hits_pb2_grpc.add_PolicyHitsServicer_to_server(self.hits, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.grpc_port = 0
        self.metrics: HttpServer | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._ended_before = 0

    async def start(self) -> None:
        address = f"{_bracket(self.config.grpc_host)}:{self.config.grpc_port}"
        if self.trust.credentials is None:
            self.grpc_port = self.server.add_insecure_port(address)
        else:
            self.grpc_port = self.server.add_secure_port(address, self.trust.credentials)
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        if self._source is not None and self.cache is not None:
            self._source.start()
            # Resolve from the first snapshot on: counters applied before the catalog
            # exists are exported under raw names until the rebuild that follows it.
            try:
                catalog = await self.cache.wait_synced(timeout=self.config.sync_timeout)
                self.accountant.set_resolver(catalog)
            except TimeoutError:
                log.warning(
                    "datastore %s not synced within %g s; serving anyway, names resolve once it is",
                    self.config.datastore,
                    self.config.sync_timeout,
                )
        if self.checkpoints is not None:
            await self.checkpoints.restore()
            self._checkpointing = asyncio.create_task(self.checkpoints.run(), name="checkpoint")
        await self.server.start()
        self.metrics = serve_metrics(
            self.accountant,
            self.config.metrics_port,
            host=self.config.metrics_host,
            extra=self.registry,
            web=self.config.web_config,
        )
        for service in ("", *_SERVICES):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._housekeeping = asyncio.create_task(self._expire_loop(), name="expire")
        log.info(
            "aggregator %s: gRPC (%s) on %s:%d, /metrics on %s:%d, datastore %s",
            __version__,
            _transport(self.config.tls),
            self.config.grpc_host,
            self.grpc_port,
            self.config.metrics_host,
            self.metrics.port,
            self.config.datastore or "(none: names stay unresolved)",
        )

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.expire_interval)
            try:
                removed = self.accountant.expire(time.time())
                if removed:
                    log.info("removed %d series of expired counters", removed)
                ended = self.ingest.ended_streams
                release_free_memory(collect_cycles=ended != self._ended_before)
                self._ended_before = ended
            except Exception:
                log.exception("expiring counters failed")

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        # Agents' streams never end by themselves, so the grace period ends by cancelling
        # them; grpc logs each cancelled servicer as an error, which here it is not.
        logging.getLogger("grpc._cython.cygrpc").setLevel(logging.CRITICAL)
        await self.server.stop(self.config.shutdown_grace)
        await self._final_checkpoint()
        if self._source is not None:
            await self._source.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.verifier is not None:
            self.verifier.close()

    async def _final_checkpoint(self) -> None:
        """After ingest stopped: one last checkpoint, so a clean stop loses nothing."""
        if self.checkpoints is None:
            return
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        try:
            figures = await self.checkpoints.write()
            log.info(
                "final checkpoint written: %d bytes in %.3f s",
                figures.size,
                figures.capture + figures.encode + figures.save,
            )
        except Exception as error:
            log.error("the final checkpoint could not be written: %s", error)
        await self.checkpoints.store.close()


def _transport(tls: ServerTls | None) -> str:
    if tls is None:
        return "plaintext"
    return "TLS" if tls.client_ca is None else "mutual TLS, client identities checked"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def run_aggregator(config: AggregatorConfig, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set, or SIGTERM/SIGINT when ``stop`` is None."""
    if stop is None:
        stop = stop_on_signals()
    aggregator = Aggregator(config)
    await aggregator.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await aggregator.stop()
    return 0
