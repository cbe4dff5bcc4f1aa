"""The aggregator's flags: every one with its default and its environment variable
(``CALICO_ACCOUNTANT_`` + the flag's name, and the older names deployments set), through
:class:`~calico_accountant.runtime.flags.FlagSet`; grouped as ``--help`` shows them.
Turning them into a configuration is :mod:`aggregator.cli`'s."""

from __future__ import annotations

import argparse

from aggregator.ingest.limits import StreamLimits
from aggregator.ledger.admission import Limits
from aggregator.trust.tokens import DEFAULT_AUDIENCE
from calico_accountant.contract import AGGREGATOR_GRPC_PORT, AGGREGATOR_HEALTH_PORT, AGGREGATOR_METRICS_PORT
from calico_accountant.runtime.flags import (
    ENV_PREFIX,
    FlagSet,
    add_logging_flags,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The aggregator's flags; each has an environment variable, ``CALICO_ACCOUNTANT_`` + its name."""
    flags = FlagSet(parser, env_prefix=ENV_PREFIX)
    _add_listen_arguments(flags.group("listening"))
    _add_datastore_arguments(flags.group("the Calico datastore"))
    _add_series_arguments(flags.group("metrics"))
    _add_state_arguments(flags.group("checkpoints and replicas"))
    _add_shard_arguments(flags.group("sharding agents over several aggregators"))
    _add_limit_arguments(flags.group("limits (what any client can make the aggregator hold)"))
    hits = flags.group("the policy-hit API")
    hits.add("--hits-window", type=non_negative_float, default=600.0, help="seconds of hits kept for --since")
    hits.add("--hits-window-max", type=non_negative_int, default=100_000, help="most hits kept for --since")
    hits.add(
        "--watch-buffer",
        type=positive_int,
        default=100_000,
        help="hits buffered per Watch stream (about 1 s at 100k hits/s; a consumer further behind"
        " is told how many it lost)",
    )
    add_logging_flags(flags.group("logging"))
    _add_tls_arguments(flags.group("TLS and node identity on the gRPC port (default: plaintext)"))
    _add_trust_arguments(flags)


def _add_listen_arguments(flags: FlagSet) -> None:
    flags.add("--grpc-port", type=port, default=AGGREGATOR_GRPC_PORT, help="gRPC port: ingest, hits, health")
    flags.add("--grpc-host", default="0.0.0.0", help="address of the gRPC port")
    flags.add("--metrics-port", type=port, default=AGGREGATOR_METRICS_PORT, help="/metrics port")
    flags.add("--metrics-host", default="0.0.0.0", help="address of the /metrics port")
    flags.add(
        "--health-port",
        type=port,
        default=AGGREGATOR_HEALTH_PORT,
        help="/healthz and /readyz, served from start to stop, standby included (0: any free port)",
    )
    flags.add("--health-host", default="0.0.0.0", help="address of the health port")
    flags.add(
        "--max-message-bytes",
        type=positive_int,
        default=4 * 1024 * 1024,
        help="largest gRPC message received (agents chunk bigger snapshots)",
    )


def _add_datastore_arguments(flags: FlagSet) -> None:
    flags.add(
        "--datastore",
        default="",
        metavar="SPEC",
        help="etcd://HOST:PORT[,HOST:PORT...], etcds://..., kubernetes (the Kubernetes API datastore), or "
        "file:PATH (YAML/JSON of Calico objects, or kubectl's listing of a KDD cluster); "
        "none: pods and policies stay unresolved",
    )
    flags.add(
        "--kubeconfig",
        default=None,
        metavar="FILE",
        env="KUBECONFIG",
        shown_default="the in-cluster ServiceAccount, else ~/.kube/config",
        help="kubeconfig for --datastore kubernetes ($KUBECONFIG: its first file)",
    )
    flags.add(
        "--interface-prefix",
        default="cali",
        aliases=("FELIX_INTERFACEPREFIX",),
        help="felix's interface prefix; its first entry names pods' veths in KDD mode",
    )
    flags.add("--etcd-ca", metavar="FILE", aliases=("ETCD_CA_CERT_FILE",), help="CA of etcd's certificate")
    flags.add("--etcd-cert", metavar="FILE", aliases=("ETCD_CERT_FILE",), help="client certificate for etcd")
    flags.add("--etcd-key", metavar="FILE", aliases=("ETCD_KEY_FILE",), help="its key")


def _add_series_arguments(flags: FlagSet) -> None:
    flags.add(
        "--levels",
        default="workload,node,cluster",
        help="metric levels to export: any of workload, app, node, cluster (big clusters: app,node,cluster)",
    )
    flags.add(
        "--labels",
        default=None,
        shown_default="all",
        help="label allow-list for the workload/node/cluster families; dropped labels are summed over",
    )
    flags.add(
        "--no-rule-info",
        action="store_true",
        default=False,
        help="do not export calico_accountant_policy_rule_info (one series per datastore rule: ~350 bytes "
        "each per scrape)",
    )
    flags.add("--compat-metrics", action="store_true", default=False, help="also export monzo's metric names")
    flags.add("--max-series", type=positive_int, default=None, help="cap on counter series")
    flags.add(
        "--stale-after", type=positive_float, default=120.0, help="seconds without a snapshot: node stale"
    )
    flags.add(
        "--retired-grace",
        type=non_negative_float,
        default=600.0,
        help="seconds a vanished counter keeps its workload series",
    )
    flags.add(
        "--expire-interval",
        type=positive_float,
        default=30.0,
        help="seconds between sweeps that remove series past their grace period",
    )
    flags.add(
        "--node-expiry",
        type=positive_float,
        default=3600.0,
        help="seconds without a stream or snapshot before a node is forgotten: its series leave, its "
        "counts stay in the cluster sums",
    )


def _add_state_arguments(flags: FlagSet) -> None:
    flags.add(
        "--checkpoint",
        default="",
        metavar="SPEC",
        help="where to keep the totals across restarts: file:PATH, etcd (the datastore's etcd, under "
        "/calico-accountant/v1/) or kubernetes (ConfigMaps in the aggregator's namespace, with --datastore "
        "kubernetes); none: a restart counts from zero",
    )
    flags.add("--checkpoint-interval", type=positive_float, default=10.0, help="seconds between checkpoints")
    flags.add(
        "--catch-up-timeout",
        type=non_negative_float,
        default=30.0,
        help="after a checkpoint is restored, /metrics opens once the nodes it knew have reported "
        "again, or after this many seconds",
    )
    flags.add(
        "--leader-election",
        default="none",
        choices=("none", "etcd", "kubernetes"),
        help="run several replicas, one serves: etcd (a lease in the datastore's etcd; needs --datastore "
        "etcd://... and --checkpoint etcd) or kubernetes (a coordination.k8s.io Lease in the aggregator's "
        "namespace, $POD_NAMESPACE; needs --datastore kubernetes and --checkpoint kubernetes)",
    )
    flags.add(
        "--leader-lease-ttl",
        type=positive_int,
        default=5,
        help="seconds a dead leader keeps its lease before a standby takes over",
    )


def _add_shard_arguments(flags: FlagSet) -> None:
    flags.add(
        "--shards",
        default="none",
        choices=("none", "etcd", "kubernetes"),
        help="shard agents over several aggregators by node; a replica redirects agents of nodes it does not "
        "own: etcd (members register under a lease in the datastore's etcd; needs --datastore etcd://...) or "
        "kubernetes (a coordination.k8s.io Lease per replica in $POD_NAMESPACE; needs --datastore "
        "kubernetes)",
    )
    flags.add(
        "--advertise-address",
        default="",
        metavar="HOST:PORT",
        shown_default="$POD_IP:--grpc-port, else the host name",
        help="with --shards: where agents reach this replica's gRPC port (redirects name it)",
    )
    flags.add(
        "--shard-lease-ttl",
        type=positive_int,
        default=5,
        help="with --shards: seconds a dead replica stays a member before its nodes move",
    )


def _add_limit_arguments(flags: FlagSet) -> None:
    ledger, streams = Limits(), StreamLimits()
    flags.add("--max-nodes", type=positive_int, default=ledger.max_nodes, help="nodes tracked")
    flags.add(
        "--max-counters-per-node",
        type=positive_int,
        default=ledger.max_counters_per_node,
        help="counters per node, live and retired",
    )
    flags.add("--max-counters", type=positive_int, default=ledger.max_counters, help="counters, all nodes")
    flags.add(
        "--max-diagnostic-codes",
        type=positive_int,
        default=ledger.max_diagnostic_codes,
        help="diagnostic codes per snapshot",
    )
    flags.add("--max-streams", type=positive_int, default=streams.max_streams, help="open ingest streams")
    flags.add(
        "--max-streams-per-peer",
        type=positive_int,
        default=streams.max_streams_per_peer,
        help="open ingest streams per identity (or per address without one)",
    )
    flags.add(
        "--max-pending-bytes",
        type=positive_int,
        default=streams.max_pending_bytes,
        help="bytes of one stream's unfinished (chunked) snapshot",
    )
    flags.add(
        "--max-pending-bytes-total",
        type=positive_int,
        default=streams.max_pending_bytes_total,
        help="bytes of unfinished snapshots over all streams",
    )
    flags.add(
        "--ingest-heartbeat",
        type=positive_float,
        default=5.0,
        help="seconds between interim acks to an agent whose full snapshot waits its turn or is being "
        "applied (full snapshots take turns); keep it well below the agents' --ack-timeout",
    )
    flags.add(
        "--delta-hold",
        type=non_negative_float,
        default=300.0,
        help="while full snapshots wait their turn (a restart's reconnect storm), hold the ack of an "
        "applied delta up to this many seconds, so that each agent's reads of that time come as one "
        "delta (0: never hold)",
    )


def _add_tls_arguments(tls: FlagSet) -> None:
    tls.add("--tls-cert", metavar="FILE", help="server certificate (chain), re-read when it changes")
    tls.add("--tls-key", metavar="FILE", help="its key")
    tls.add(
        "--tls-client-ca",
        metavar="FILE",
        help="every client must present a certificate of this CA; identities are then checked",
    )
    tls.add(
        "--node-identity-template",
        default="{node}",
        metavar="TEMPLATE",
        help="the certificate name (Common Name or DNS name) of node NODE's agent: {node}, "
        "system:node:{node}, {node}.nodes.example.com",
    )
    tls.add(
        "--api-client-identities",
        default=None,
        metavar="NAME,...",
        shown_default="anyone the transport lets in",
        help="only these identities may use Watch, Snapshot, ListNodes, ServerStatus",
    )


def _add_trust_arguments(flags: FlagSet) -> None:
    flags.group("/metrics").add(
        "--web-config",
        metavar="FILE",
        help="TLS and basic auth for /metrics, in exporter-toolkit's web config format",
    )
    tokens = flags.group("ServiceAccount tokens (agents authenticate with a projected token)")
    tokens.add(
        "--token-jwks",
        metavar="FILE_OR_URL",
        help="the token issuer's key set (JWKS): a file (re-read when it changes) or an https:// URL; "
        "given, every ingest stream must carry a valid token or client certificate",
    )
    tokens.add("--token-issuer", shown_default="not checked", help="expected iss")
    tokens.add("--token-audience", default=DEFAULT_AUDIENCE, help="expected aud")
    tokens.add(
        "--token-agents",
        metavar="SUBJECT[,...]",
        shown_default="any",
        help="ServiceAccounts (system:serviceaccount:NS:NAME) whose tokens may report for their node",
    )
    tokens.add("--token-jwks-ca", metavar="FILE", help="CA of an https key set URL")
    tokens.add(
        "--token-jwks-token-file",
        metavar="FILE",
        help="bearer token sent when fetching the key set URL (the API server wants one)",
    )
