"""The limits a message is held to, on both sides, and the error for one that breaks them."""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_CHAIN_LENGTH",
    "MAX_CHUNKS",
    "MAX_CODE_LENGTH",
    "MAX_COMMENT_LENGTH",
    "MAX_GROUP_MEMBERS",
    "MAX_INTERFACE_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_RULE_IDS",
    "WireError",
]

#: The message size both sides configure explicitly (gRPC's default is 4 MiB; we stay
#: under it so a default-configured peer still talks to us).  Snapshots are chunked to
#: a budget below this.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: Upper bound on chunks per snapshot the assembler accepts: a peer that announces
#: more is either broken or hostile, and would make us buffer without end.
MAX_CHUNKS = 4096

#: Longest strings a valid snapshot carries.  Real values are far shorter (a Linux
#: interface name has at most 15 characters, a felix chain name 28 in iptables and 256 in
#: nftables, felix truncates comments at 256); anything longer is hostile or broken, and
#: would make the aggregator keep megabytes per counter.
MAX_NAME_LENGTH = 253
"""Node names (a Kubernetes node name is a DNS subdomain) and agent instance ids."""
MAX_INTERFACE_LENGTH = 64
MAX_CHAIN_LENGTH = 256
MAX_COMMENT_LENGTH = 512
MAX_RULE_IDS = 16
MAX_GROUP_MEMBERS = 256
MAX_CODE_LENGTH = 128
"""Diagnostic codes (the agent's are short identifiers such as ``deny_not_exact``); the
aggregator keeps each code a node reported, and exports it as a label."""


class WireError(ValueError):
    """A message that cannot be used as sent (bad chunking, missing node, ...)."""
