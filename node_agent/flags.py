"""The node agent's flags: every one with its default and its environment variable
(``CALICO_ACCOUNTANT_`` + the flag's name, and Calico's own ``NODENAME`` and
``FELIX_IPTABLESBACKEND``), through :class:`~calico_accountant.runtime.flags.FlagSet`.
Turning them into an :class:`~node_agent.agent.AgentConfig` is :mod:`node_agent.agent`'s."""

from __future__ import annotations

import argparse

from calico_accountant.contract import AGENT_HEALTH_PORT, DEFAULT_AGGREGATOR_ADDRESS
from calico_accountant.runtime.client_tls import add_client_tls_arguments
from calico_accountant.runtime.flags import (
    ENV_PREFIX,
    FlagSet,
    add_logging_flags,
    non_negative_int,
    positive_float,
    positive_int,
)
from calico_accountant.wire.bounds import DEFAULT_MAX_MESSAGE_BYTES
from node_agent.dataplane import Dataplane
from node_agent.reader import DEFAULT_NEAR_ZERO_PACKETS

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's flags (shared by ``calico-accountant agent`` and ``python -m node_agent``);
    each has an environment variable, ``CALICO_ACCOUNTANT_`` + its name."""
    flags = FlagSet(parser, env_prefix=ENV_PREFIX)
    flags.add(
        "--node",
        default=None,
        env=("NODENAME", f"{ENV_PREFIX}NODE"),
        shown_default="the hostname",
        help="node name as Calico knows it",
    )
    flags.add(
        "--aggregator",
        default=DEFAULT_AGGREGATOR_ADDRESS,
        metavar="HOST:PORT",
        help="the aggregator's gRPC address",
    )
    reading = flags.group("reading the filter tables")
    reading.add("--interval", type=positive_float, default=10.0, help="seconds between reads")
    reading.add(
        "--iptables-save",
        action="append",
        dest="commands",
        metavar="COMMAND",
        default=None,
        shown_default="iptables-save -c -t filter and ip6tables-save -c -t filter of felix's backend",
        help="a command that prints a filter table, run without a shell (repeat for IPv4 and IPv6; "
        "in the variable, separate commands with ;)",
    )
    reading.add(
        "--iptables-backend",
        default="auto",
        choices=("auto", "legacy", "nft"),
        aliases=("FELIX_IPTABLESBACKEND",),
        help="which backend felix programs; auto detects it like felix",
    )
    reading.add(
        "--nft-list",
        action="append",
        dest="nft_commands",
        metavar="COMMAND",
        default=None,
        shown_default="in nftables mode, nft -j list table ip calico and ... ip6 calico",
        help="a command that prints `nft -j list table ip calico` (repeat for ip6), run without a shell "
        "(in the variable, separate commands with ;)",
    )
    reading.add(
        "--dataplane",
        default="auto",
        choices=tuple(d.value for d in Dataplane),
        help="felix's dataplane: auto (nftables when table ip calico holds Calico chains, else iptables), "
        "iptables or nftables",
    )
    reading.add("--no-ipv6", action="store_true", default=False, help="do not read the IPv6 table")
    reading.add("--read-timeout", type=positive_float, default=30.0, help="seconds a save command may take")
    reading.add(
        "--near-zero-packets",
        type=non_negative_int,
        default=DEFAULT_NEAR_ZERO_PACKETS,
        help="a read whose counters all fell to this or below is re-read at once before it is sent",
    )
    serving = flags.group("health and metrics")
    serving.add(
        "--listen",
        default=f"0.0.0.0:{AGENT_HEALTH_PORT}",
        metavar="HOST:PORT",
        help="/healthz, /readyz, /metrics",
    )
    serving.add(
        "--web-config",
        metavar="FILE",
        help="TLS and basic auth for /healthz, /readyz and /metrics, in exporter-toolkit's web config format",
    )
    stream = flags.group("the stream to the aggregator")
    stream.add(
        "--max-message-bytes",
        type=positive_int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest message sent; bigger snapshots go in chunks",
    )
    stream.add(
        "--ack-timeout",
        type=positive_float,
        default=30.0,
        help="seconds to wait for a snapshot's ack, or for any message in between (the aggregator "
        "sends interim acks while the snapshot waits its turn)",
    )
    stream.add(
        "--first-ack-timeout",
        type=positive_float,
        default=120.0,
        help="seconds to wait for the first message of a new stream (in a reconnect storm the "
        "aggregator takes new streams up one after another, and one not yet taken up gets no interim "
        "ack; a dead connection is still noticed by the keepalives)",
    )
    stream.add("--backoff-max", type=positive_float, default=30.0, help="longest wait between reconnects")
    stream.add(
        "--token-file",
        metavar="PATH",
        help="a projected ServiceAccount token (audience calico-accountant) sent with every stream, "
        "re-read at every connect",
    )
    add_client_tls_arguments(flags)
    add_logging_flags(flags.group("logging"))
