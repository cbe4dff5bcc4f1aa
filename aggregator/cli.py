"""The aggregator's flags and entry point (``calico-accountant aggregator``, ``python -m aggregator``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aggregator.flags import add_arguments
from aggregator.ingest.limits import StreamLimits
from aggregator.ledger.admission import Limits
from aggregator.trust.tokens import TokenSettings
from calico_accountant.runtime.flags import HelpFormatter
from calico_accountant.runtime.process import configure_logging
from calico_accountant.runtime.web_config import load_web_config

if TYPE_CHECKING:
    from aggregator.server import AggregatorConfig
    from aggregator.trust.access import AccessRules
    from aggregator.trust.credentials import ServerTls

__all__ = ["add_arguments", "config_from_args", "main", "run"]

log = logging.getLogger("calico_accountant.aggregator")


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
    from aggregator.shard.open import ShardSettings, parse_shards

    series = SeriesOptions(
        levels=parse_levels(args.levels),
        compat=args.compat_metrics,
        allowed_labels=parse_labels(args.labels) if args.labels else None,
        max_series=args.max_series,
    )
    return AggregatorConfig(
        rule_info=not args.no_rule_info,
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
        shards=ShardSettings(
            backend=parse_shards(args.shards),
            advertise_address=args.advertise_address,
            lease_ttl=args.shard_lease_ttl,
        ),
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
        ingest_heartbeat=args.ingest_heartbeat,
        delta_hold=args.delta_hold,
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
    configure_logging(args.log_level, args.log_format)
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
        prog="python -m aggregator",
        description="The calico-accountant aggregator.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
