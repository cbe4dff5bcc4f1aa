"""The aggregator's flags and entry point (``calico-accountant aggregator``, ``python -m aggregator``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aggregator.ingest.limits import StreamLimits
from aggregator.ledger.admission import Limits
from aggregator.trust.tokens import DEFAULT_AUDIENCE, TokenSettings
from calico_accountant.contract import AGGREGATOR_GRPC_PORT, AGGREGATOR_HEALTH_PORT, AGGREGATOR_METRICS_PORT
from calico_accountant.runtime.process import configure_logging
from calico_accountant.runtime.web_config import load_web_config

if TYPE_CHECKING:
    from aggregator.server import AggregatorConfig
    from aggregator.trust.access import AccessRules
    from aggregator.trust.credentials import ServerTls

__all__ = ["add_arguments", "config_from_args", "main", "run"]

log = logging.getLogger("calico_accountant.aggregator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=AGGREGATOR_GRPC_PORT,
        help=f"gRPC port: ingest, hits, health (default {AGGREGATOR_GRPC_PORT})",
    )
    parser.add_argument("--grpc-host", default="0.0.0.0")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=AGGREGATOR_METRICS_PORT,
        help=f"/metrics port (default {AGGREGATOR_METRICS_PORT})",
    )
    parser.add_argument("--metrics-host", default="0.0.0.0")
    parser.add_argument(
        "--health-port",
        type=int,
        default=AGGREGATOR_HEALTH_PORT,
        help=f"/healthz and /readyz, served from start to stop, standby included "
        f"(default {AGGREGATOR_HEALTH_PORT}; 0: any free port)",
    )
    parser.add_argument("--health-host", default="0.0.0.0")
    parser.add_argument(
        "--datastore",
        default=env("CALICO_ACCOUNTANT_DATASTORE", ""),
        help="etcd://HOST:PORT[,HOST:PORT...], etcds://..., kubernetes (the Kubernetes API datastore), or "
        "file:PATH (YAML/JSON of Calico objects, or kubectl's listing of a KDD cluster); "
        "default $CALICO_ACCOUNTANT_DATASTORE; none: pods and policies stay unresolved",
    )
    parser.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG"),
        help="kubeconfig for --datastore kubernetes (default $KUBECONFIG's first file, else the in-cluster "
        "ServiceAccount, else ~/.kube/config)",
    )
    parser.add_argument(
        "--interface-prefix",
        default=env("FELIX_INTERFACEPREFIX") or "cali",
        help="felix's interface prefix; its first entry names pods' veths in KDD mode "
        "(default $FELIX_INTERFACEPREFIX, else cali)",
    )
    parser.add_argument("--etcd-ca", default=env("ETCD_CA_CERT_FILE"))
    parser.add_argument("--etcd-cert", default=env("ETCD_CERT_FILE"))
    parser.add_argument("--etcd-key", default=env("ETCD_KEY_FILE"))
    parser.add_argument("--levels", default="workload,node,cluster", help="metric levels to export")
    parser.add_argument(
        "--labels", default=None, help="label allow-list for the workload/node/cluster families"
    )
    parser.add_argument(
        "--compat-metrics", action="store_true", help="also export monzo/calico-accountant names"
    )
    parser.add_argument(
        "--no-rule-info",
        dest="rule_info",
        action="store_false",
        help="do not export calico_accountant_policy_rule_info (one series per datastore rule: "
        "~350 bytes each per scrape)",
    )
    parser.add_argument("--max-series", type=int, default=None, help="cap on counter series (default: none)")
    parser.add_argument(
        "--stale-after", type=float, default=120.0, help="seconds without a snapshot: node stale"
    )
    parser.add_argument(
        "--retired-grace",
        type=float,
        default=600.0,
        help="seconds a vanished counter keeps its workload series",
    )
    parser.add_argument(
        "--checkpoint",
        default=env("CALICO_ACCOUNTANT_CHECKPOINT", ""),
        metavar="SPEC",
        help="where to keep the totals across restarts: file:PATH, etcd (the datastore's etcd, under "
        "/calico-accountant/v1/) or kubernetes (ConfigMaps in the aggregator's namespace, with --datastore "
        "kubernetes); default $CALICO_ACCOUNTANT_CHECKPOINT; none: a restart counts from zero",
    )
    parser.add_argument(
        "--checkpoint-interval", type=float, default=10.0, help="seconds between checkpoints (default 10)"
    )
    parser.add_argument(
        "--catch-up-timeout",
        type=float,
        default=30.0,
        help="after a checkpoint is restored, /metrics opens once the nodes it knew have reported "
        "again, or after this many seconds (default 30)",
    )
    parser.add_argument(
        "--leader-election",
        default=env("CALICO_ACCOUNTANT_LEADER_ELECTION", "none"),
        metavar="none|etcd|kubernetes",
        help="run several replicas, one serves: etcd (a lease in the datastore's etcd; needs --datastore "
        "etcd://... and --checkpoint etcd) or kubernetes (a coordination.k8s.io Lease in the aggregator's "
        "namespace, $POD_NAMESPACE; needs --datastore kubernetes and --checkpoint kubernetes); default "
        "$CALICO_ACCOUNTANT_LEADER_ELECTION or none",
    )
    parser.add_argument(
        "--leader-lease-ttl",
        type=int,
        default=5,
        help="seconds a dead leader keeps its lease before a standby takes over (default 5)",
    )
    parser.add_argument(
        "--node-expiry",
        type=float,
        default=3600.0,
        help="seconds without a stream or snapshot before a node is forgotten: its series leave, its "
        "counts stay in the cluster sums (default 3600)",
    )
    limits = parser.add_argument_group("limits (what any client can make the aggregator hold)")
    ledger_defaults, stream_defaults = Limits(), StreamLimits()
    limits.add_argument("--max-nodes", type=int, default=ledger_defaults.max_nodes, help="nodes tracked")
    limits.add_argument(
        "--max-counters-per-node",
        type=int,
        default=ledger_defaults.max_counters_per_node,
        help="live and retired",
    )
    limits.add_argument(
        "--max-counters", type=int, default=ledger_defaults.max_counters, help="live and retired, all nodes"
    )
    limits.add_argument(
        "--max-diagnostic-codes", type=int, default=ledger_defaults.max_diagnostic_codes, help="per snapshot"
    )
    limits.add_argument(
        "--max-streams", type=int, default=stream_defaults.max_streams, help="open ingest streams"
    )
    limits.add_argument(
        "--max-streams-per-peer",
        type=int,
        default=stream_defaults.max_streams_per_peer,
        help="open ingest streams per identity (or per address without one)",
    )
    limits.add_argument(
        "--max-pending-bytes",
        type=int,
        default=stream_defaults.max_pending_bytes,
        help="bytes of one stream's unfinished (chunked) snapshot",
    )
    limits.add_argument(
        "--max-pending-bytes-total",
        type=int,
        default=stream_defaults.max_pending_bytes_total,
        help="bytes of unfinished snapshots over all streams",
    )
    parser.add_argument(
        "--expire-interval",
        type=float,
        default=30.0,
        help="seconds between sweeps that remove series past their grace period",
    )
    parser.add_argument("--hits-window", type=float, default=600.0, help="seconds of hits kept for --since")
    parser.add_argument("--hits-window-max", type=int, default=100_000, help="most hits kept for --since")
    parser.add_argument("--watch-buffer", type=int, default=10_000, help="hits buffered per Watch stream")
    parser.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--log-level", default=env("LOG_LEVEL", "info"))
    _add_tls_arguments(parser)
    _add_trust_arguments(parser)


def _add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    tls = parser.add_argument_group("TLS and node identity on the gRPC port (default: plaintext)")
    tls.add_argument(
        "--tls-cert",
        default=env("CALICO_ACCOUNTANT_TLS_CERT"),
        metavar="FILE",
        help="server certificate (chain), re-read when it changes (default: $CALICO_ACCOUNTANT_TLS_CERT)",
    )
    tls.add_argument("--tls-key", default=env("CALICO_ACCOUNTANT_TLS_KEY"), metavar="FILE", help="its key")
    tls.add_argument(
        "--tls-client-ca",
        default=env("CALICO_ACCOUNTANT_TLS_CLIENT_CA"),
        metavar="FILE",
        help="every client must present a certificate of this CA; identities are then checked "
        "(default: $CALICO_ACCOUNTANT_TLS_CLIENT_CA)",
    )
    tls.add_argument(
        "--node-identity-template",
        default="{node}",
        metavar="TEMPLATE",
        help="the certificate name (Common Name or DNS name) of node NODE's agent: {node} (default), "
        "system:node:{node}, {node}.nodes.example.com",
    )
    tls.add_argument(
        "--api-client-identities",
        default=None,
        metavar="NAME,...",
        help="only these identities may use Watch, Snapshot, ListNodes, ServerStatus "
        "(default: anyone the transport lets in)",
    )


def _server_tls(args: argparse.Namespace) -> ServerTls | None:
    from aggregator.trust.credentials import ServerTls

    if not (args.tls_cert or args.tls_key or args.tls_client_ca):
        return None
    if not (args.tls_cert and args.tls_key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    return ServerTls(cert=args.tls_cert, key=args.tls_key, client_ca=args.tls_client_ca or None)


def _access_rules(args: argparse.Namespace) -> AccessRules:
    from aggregator.trust.access import AccessRules, NodeIdentityTemplate

    clients = None
    if args.api_client_identities is not None:
        clients = frozenset(name.strip() for name in args.api_client_identities.split(",") if name.strip())
    return AccessRules(template=NodeIdentityTemplate(args.node_identity_template), api_clients=clients)


def _add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--web-config",
        default=env("CALICO_ACCOUNTANT_WEB_CONFIG"),
        metavar="FILE",
        help="TLS and basic auth for /metrics, in exporter-toolkit's web config format "
        "(default $CALICO_ACCOUNTANT_WEB_CONFIG)",
    )
    tokens = parser.add_argument_group("ServiceAccount tokens (agents authenticate with a projected token)")
    tokens.add_argument(
        "--token-jwks",
        default=env("CALICO_ACCOUNTANT_TOKEN_JWKS"),
        metavar="FILE_OR_URL",
        help="the token issuer's key set (JWKS): a file (re-read when it changes) or an https:// URL; "
        "given, every ingest stream must carry a valid token or client certificate",
    )
    tokens.add_argument("--token-issuer", default=env("CALICO_ACCOUNTANT_TOKEN_ISSUER"), help="expected iss")
    tokens.add_argument("--token-audience", default=DEFAULT_AUDIENCE, help=f"default {DEFAULT_AUDIENCE}")
    tokens.add_argument(
        "--token-agents",
        default=None,
        metavar="SUBJECT[,...]",
        help="ServiceAccounts (system:serviceaccount:NS:NAME) whose tokens may report for their node; "
        "default: any",
    )
    tokens.add_argument("--token-jwks-ca", default=None, metavar="FILE", help="CA of an https key set URL")
    tokens.add_argument(
        "--token-jwks-token-file",
        default=None,
        metavar="FILE",
        help="bearer token sent when fetching the key set URL (the API server wants one)",
    )


def _token_settings(args: argparse.Namespace) -> TokenSettings | None:
    if not args.token_jwks:
        if args.token_issuer or args.token_agents:
            raise ValueError("--token-issuer and --token-agents need --token-jwks")
        return None
    agents = None
    if args.token_agents:
        agents = frozenset(name.strip() for name in args.token_agents.split(",") if name.strip())
    return TokenSettings(
        jwks=args.token_jwks,
        audience=args.token_audience,
        issuer=args.token_issuer or None,
        agents=agents,
        jwks_ca=args.token_jwks_ca,
        jwks_token_file=args.token_jwks_token_file,
    )


def config_from_args(args: argparse.Namespace) -> AggregatorConfig:
    from aggregator.election.open import parse_leader_election
    from aggregator.series.options import SeriesOptions, parse_labels, parse_levels
    from aggregator.server import AggregatorConfig

    series = SeriesOptions(
        levels=parse_levels(args.levels),
        compat=args.compat_metrics,
        allowed_labels=parse_labels(args.labels) if args.labels else None,
        max_series=args.max_series,
    )
    return AggregatorConfig(
        rule_info=args.rule_info,
        grpc_host=args.grpc_host,
        grpc_port=args.grpc_port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        health_host=args.health_host,
        health_port=args.health_port,
        datastore=args.datastore,
        kubeconfig=args.kubeconfig,
        interface_prefix=args.interface_prefix,
        etcd_ca=args.etcd_ca,
        etcd_cert=args.etcd_cert,
        etcd_key=args.etcd_key,
        series=series,
        stale_after=args.stale_after,
        retired_grace=args.retired_grace,
        node_expiry=args.node_expiry,
        checkpoint=args.checkpoint,
        checkpoint_interval=args.checkpoint_interval,
        catch_up_timeout=args.catch_up_timeout,
        leader_election=parse_leader_election(args.leader_election),
        leader_lease_ttl=args.leader_lease_ttl,
        expire_interval=args.expire_interval,
        ledger_limits=Limits(
            max_nodes=args.max_nodes,
            max_counters_per_node=args.max_counters_per_node,
            max_counters=args.max_counters,
            max_diagnostic_codes=args.max_diagnostic_codes,
        ),
        stream_limits=StreamLimits(
            max_streams=args.max_streams,
            max_streams_per_peer=args.max_streams_per_peer,
            max_pending_bytes=args.max_pending_bytes,
            max_pending_bytes_total=args.max_pending_bytes_total,
        ),
        access=_access_rules(args),
        tls=_server_tls(args),
        max_message_bytes=args.max_message_bytes,
        hits_window_seconds=args.hits_window,
        hits_window_max=args.hits_window_max,
        watch_buffer=args.watch_buffer,
        tokens=_token_settings(args),
        web_config=load_web_config(args.web_config) if args.web_config else None,
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    from aggregator.server import run_aggregator

    try:
        config = config_from_args(args)
        return asyncio.run(run_aggregator(config))
    except ValueError as error:
        log.error("%s", error)
        return 2
    except OSError as error:
        log.error("cannot start: %s", error)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator", description="The calico-accountant aggregator."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
