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
* the health port (``/healthz``, ``/readyz``, :mod:`aggregator.readiness`) is served from
  start to stop; with ``--leader-election`` the replica stands by (no gRPC, no /metrics)
  until it leads, and a leader that loses its lease stops serving at once
  (:mod:`aggregator.replica`);
* after a checkpoint is restored, /metrics opens once the nodes have caught up
  (:mod:`aggregator.checkpoint.catchup`);
* with ``--shards`` (:mod:`aggregator.shard`) the replica registers in the membership
  before it serves, ingest redirects agents of nodes it does not own, and a membership
  change hands over the nodes that moved; its checkpoint is its own, and after a restore
  its nodes start afresh (they were someone else's meanwhile) while its series summed over
  nodes continue;
* SIGTERM/SIGINT: (sharded: deregister first, so the others take the nodes) health goes
  NOT_SERVING, streams get a grace period, a last checkpoint,
  the lease is handed over, then all stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, ProcessCollector

from aggregator.accountant import Accountant
from aggregator.catalog.index import Catalog
from aggregator.checkpoint.catchup import Restored, wait_for_catch_up
from aggregator.checkpoint.keeper import CheckpointKeeper, CheckpointMetrics
from aggregator.checkpoint.open import open_checkpoint_store
from aggregator.checkpoint.stores import parse_checkpoint_spec
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.sources import DatastoreSource, open_datastore
from aggregator.datastore.spec import parse_datastore_spec
from aggregator.election.base import replica_identity
from aggregator.election.open import LeaderElection, open_election
from aggregator.exposition.serving import serve_metrics
from aggregator.hits.hub import HitHub, HitMetrics
from aggregator.hits.servicer import PolicyHitsServicer
from aggregator.ingest.limits import StreamLimits
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.servicer import IngestServicer
from aggregator.ledger.admission import Limits
from aggregator.ledger.ledger import Ledger
from aggregator.ledger.state import FirstSnapshot
from aggregator.metrics.datastore import DatastoreCollector
from aggregator.metrics.policy_info import PolicyInfoCollector
from aggregator.readiness import Phase
from aggregator.replica import Ending, Role, run_replica
from aggregator.series.options import SeriesOptions
from aggregator.shard.membership import Membership, MembershipMetrics
from aggregator.shard.open import (
    ShardBackend,
    ShardSettings,
    advertised_address,
    open_membership,
    shard_checkpoint_prefix,
)
from aggregator.shard.ring import Member
from aggregator.shard.router import ShardMetrics, ShardRouter
from aggregator.trust.access import AccessRules
from aggregator.trust.credentials import ServerTls
from aggregator.trust.port import port_trust
from aggregator.trust.tokens import TokenSettings, TokenVerifier
from calico_accountant import __version__
from calico_accountant.contract import AGGREGATOR_GRPC_PORT, AGGREGATOR_HEALTH_PORT, AGGREGATOR_METRICS_PORT
from calico_accountant.runtime.collector_pauses import CollectorPauses
from calico_accountant.runtime.heap import freeze_when_grown
from calico_accountant.runtime.http import HttpServer
from calico_accountant.runtime.loop_lag import LoopLagMonitor, favour_event_loop
from calico_accountant.runtime.process import release_free_memory, stop_on_signals
from calico_accountant.runtime.web_config import WebConfig
from calico_accountant.v1 import hits_pb2, hits_pb2_grpc, snapshot_pb2
from calico_accountant.wire.bounds import DEFAULT_MAX_MESSAGE_BYTES

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
    health_host: str = "0.0.0.0"
    health_port: int = AGGREGATOR_HEALTH_PORT
    """``/healthz`` and ``/readyz``, served from start to stop (standby included)."""
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
    rule_info: bool = True
    """Export ``calico_accountant_policy_rule_info`` (``policy_info`` is always exported)."""
    stale_after: float = 120.0
    retired_grace: float = 600.0
    node_expiry: float = 3600.0
    expire_interval: float = 30.0
    ledger_limits: Limits = field(default_factory=Limits)
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    ingest_heartbeat: float = 5.0
    """Seconds between interim acks while an agent's full snapshot waits or is applied."""
    delta_hold: float = 300.0
    """At most this long an applied delta's ack waits while full snapshots wait (0: never)."""
    access: AccessRules = field(default_factory=AccessRules)
    """Node identity template and API clients; enforced whenever identities are checked."""
    tls: ServerTls | None = None
    """TLS on the gRPC port (None: plaintext); with a client CA, identities are checked."""
    checkpoint: str = ""
    """``file:PATH`` or ``etcd`` (the datastore's); empty: none, a restart counts from zero."""
    checkpoint_interval: float = 10.0
    catch_up_timeout: float = 30.0
    """After a restore, how long /metrics waits for the checkpoint's nodes to report again."""
    leader_election: LeaderElection = LeaderElection.NONE
    leader_lease_ttl: int = 5
    shards: ShardSettings = field(default_factory=ShardSettings)
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
MAX_UNREQUESTED_SECONDS = 600
"""How long a new call may wait for the server to pick it up before gRPC cancels it (see
:func:`server_options`; gRPC's default is 30 s)."""


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
        # A new call waits in gRPC until the asyncio server picks it up, one at a time on the
        # event loop.  gRPC's defaults cancel waiting calls: at random once 1,000 wait, all
        # beyond 3,000, and any waiting 30 s.  When 5,000 agents reconnected at once (an
        # aggregator restart, bench/load_bench.py), 3,100-3,750 streams lived and the others
        # ended CANCELLED within seconds: their agents reconnected into the same storm.  As
        # many may wait as ingest streams may be open (``--max-streams``): more could not be
        # served anyway.
        ("grpc.server.max_pending_requests", config.stream_limits.max_streams),
        ("grpc.server.max_pending_requests_hard_limit", config.stream_limits.max_streams),
        ("grpc.server_max_unrequested_time_in_server", MAX_UNREQUESTED_SECONDS),
        # A port still held by another aggregator (a paused old leader) is an error, not
        # shared: with SO_REUSEPORT the kernel would split the agents between the two.
        ("grpc.so_reuseport", 0),
    ]


def _catalog_of(cache: DatastoreCache) -> Callable[[], Catalog]:
    """The cache's current catalog, read at each call (a scrape)."""
    return lambda: cache.catalog


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
            self.registry.register(PolicyInfoCollector(_catalog_of(self.cache), rules=config.rule_info))
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
        self.loop_lag = LoopLagMonitor(self.registry)
        self.collector_pauses = CollectorPauses(self.registry)
        self.checkpoints: CheckpointKeeper | None = None
        sharded = config.shards.backend is not ShardBackend.NONE
        self.shard_identity = replica_identity() if sharded else ""
        self.membership: Membership | None = (
            open_membership(
                config.shards,
                spec,
                Member(
                    self.shard_identity, advertised_address(config.shards.advertise_address, config.grpc_port)
                ),
                leader_election=config.leader_election is not LeaderElection.NONE,
                checkpoint=config.checkpoint,
                metrics=MembershipMetrics(self.registry),
            )
            if sharded
            else None
        )
        self.role = Role(
            open_election(config.leader_election, spec, config.checkpoint, ttl=config.leader_lease_ttl),
            host=config.health_host,
            port=config.health_port,
            registry=self.registry,
        )
        if config.checkpoint:
            self.checkpoints = CheckpointKeeper(
                self.accountant,
                open_checkpoint_store(
                    parse_checkpoint_spec(config.checkpoint),
                    spec,
                    etcd_prefix=shard_checkpoint_prefix(self.shard_identity) if sharded else None,
                ),
                interval=config.checkpoint_interval,
                metrics=CheckpointMetrics(self.registry),
            )
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
            on_hits=self.hub.publish,
            metrics=IngestMetrics(self.registry),
            access=self.trust.access,
            identify=self.trust.identify,
            limits=config.stream_limits,
            heartbeat=config.ingest_heartbeat,
            delta_hold=config.delta_hold,
        )
        self.router: ShardRouter | None = None
        if self.membership is not None:
            self.router = ShardRouter(
                self.membership,
                self.shard_identity,
                known_nodes=self.accountant.node_names,
                release=self.ingest.release_nodes,
                metrics=ShardMetrics(self.registry),
            )
            self.ingest.shard = self.router
        self.hits = PolicyHitsServicer(
            self.hub,
            self.accountant,
            started=self.started,
            access=self.trust.access,
            identify=self.trust.identify,
        )
        self.health = HealthServicer()
        self.server = grpc.aio.server(options=server_options(config))
        self.ingest.add_to(self.server)
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
        self._opening_metrics: asyncio.Task[None] | None = None
        self._serving = False
        self._abandoned = False

    async def start(self) -> None:
        """Serve: at once, or with an election once this replica leads (until then it only
        answers on the health port, and keeps its catalog current for a quick takeover)."""
        favour_event_loop()
        self.loop_lag.start()
        self.collector_pauses.install()
        if self._source is not None:
            self._source.start()
        await self.role.stand_by(self.checkpoints.store if self.checkpoints else None)
        address = f"{_bracket(self.config.grpc_host)}:{self.config.grpc_port}"
        with contextlib.suppress(RuntimeError):  # grpc raises it when the port is taken
            if self.trust.credentials is None:
                self.grpc_port = self.server.add_insecure_port(address)
            else:
                self.grpc_port = self.server.add_secure_port(address, self.trust.credentials)
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        if self._source is not None and self.cache is not None:
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
            self.checkpoints.start()
        await self._join_shards()
        await self.server.start()
        self._serving = True
        if self.checkpoints is not None and self.checkpoints.restored is not None and self.router is None:
            catching_up = self._open_metrics_after_catch_up(self.checkpoints, self.checkpoints.restored)
            self._opening_metrics = asyncio.create_task(catching_up, name="catch-up")
        else:
            self._open_metrics()
        for service in ("", *_SERVICES):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._housekeeping = asyncio.create_task(self._expire_loop(), name="expire")
        self.role.serving()
        log.info(
            "aggregator %s: gRPC (%s) on %s:%d, datastore %s",
            __version__,
            _transport(self.config.tls),
            self.config.grpc_host,
            self.grpc_port,
            self.config.datastore or "(none: names stay unresolved)",
        )

    async def _join_shards(self) -> None:
        """Sharded: register and read the member set before serving.  Nodes restored from
        this shard's checkpoint are let go (while it was away they moved to the others,
        which counted them from their first snapshot there): only its series summed over
        nodes continue from the checkpoint, and the nodes it owns start afresh."""
        if self.membership is None:
            return
        await self.membership.start()
        restored = self.accountant.node_names()
        if restored:
            self.ingest.release_nodes(restored)
            log.info("shards: %d nodes from the checkpoint start afresh", len(restored))
        log.info(
            "shards: %s registered in %s; members %s",
            self.shard_identity,
            self.membership.describe(),
            self.membership.ring.describe(),
        )

    def _open_metrics(self) -> None:
        self.metrics = serve_metrics(
            self.accountant,
            self.config.metrics_port,
            host=self.config.metrics_host,
            extra=self.registry,
            web=self.config.web_config,
        )
        log.info("/metrics on %s:%d", self.config.metrics_host, self.metrics.port)

    async def _open_metrics_after_catch_up(self, checkpoints: CheckpointKeeper, restored: Restored) -> None:
        """/metrics once the restored totals are current again (see the catchup module)."""
        checkpoints.note_catch_up(
            await wait_for_catch_up(
                self.accountant,
                restored,
                stale_after=self.config.stale_after,
                timeout=self.config.catch_up_timeout,
            )
        )
        try:
            self._open_metrics()
        except OSError as error:
            self.role.fail(1, f"cannot serve /metrics: {error}")

    async def ended(self) -> Ending:
        """Returns once serving must end at once (:meth:`Role.ended`); never otherwise."""
        return await self.role.ended()

    async def abandon(self, why: str) -> None:
        """Stop serving at once: no grace, no last checkpoint (another replica may lead
        already); :meth:`stop` releases the rest."""
        self._abandoned = True
        self.role.readiness.set(Phase.LOST, why)
        if self.checkpoints is not None:
            await self.checkpoints.close(final=False)
        await _cancel(self._opening_metrics, self._housekeeping)
        await self.loop_lag.stop()
        self.collector_pauses.remove()
        await self.server.stop(0)
        self.ingest.close()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

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
                freeze_when_grown()  # what deltas made long-lived: out of automatic full collections
            except Exception:
                log.exception("expiring counters failed")

    async def stop(self) -> None:
        if self.role.readiness.phase is not Phase.LOST:
            self.role.readiness.set(Phase.STOPPING)
        if self.membership is not None:
            await self.membership.close()  # first: the others take this shard's nodes at once
        await self.health.enter_graceful_shutdown()
        await _cancel(self._housekeeping, self._opening_metrics)
        await self.loop_lag.stop()
        self.collector_pauses.remove()
        # Agents' streams never end by themselves, so the grace period ends by cancelling
        # them; grpc logs each cancelled servicer as an error, which here it is not.
        logging.getLogger("grpc._cython.cygrpc").setLevel(logging.CRITICAL)
        await self.server.stop(self.config.shutdown_grace)
        if self.metrics is not None:
            self.metrics.close()  # every port is free before the lease goes: the next leader binds them
            self.metrics = None
        if self.checkpoints is not None:
            # none from a replica that never served or lost its lease: it would replace the leader's
            await self.checkpoints.close(final=self._serving and not self._abandoned)
        await self.role.close()  # the lease goes after the last checkpoint: the next leader starts from it
        if self._source is not None:
            await self._source.stop()
        if self.verifier is not None:
            self.verifier.close()


def _transport(tls: ServerTls | None) -> str:
    if tls is None:
        return "plaintext"
    return "TLS" if tls.client_ca is None else "mutual TLS, client identities checked"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_aggregator(config: AggregatorConfig, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set, or SIGTERM/SIGINT when ``stop`` is None; the exit status
    (:data:`~aggregator.election.base.EXIT_LEADERSHIP_LOST` when the lease was lost)."""
    return await run_replica(Aggregator(config), stop_on_signals() if stop is None else stop)
