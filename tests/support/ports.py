"""Loopback ports for the servers and processes the tests start.

A port is chosen, checked free, and handed to a process that binds it a moment later.  If the
OS picked it (``bind(("127.0.0.1", 0))``), it comes from the ephemeral range, where every
outgoing connection takes its local port too: a process started by the same test (an
aggregator's etcd client, say) could take it in between, and the server meant to listen on
it failed with "Address already in use" (seen once in a full run: a shard's port).  So
ports come from below the ephemeral range, which outgoing connections never use, at random
and not twice in one test process; the OS's pick remains the fallback when there is no such
range.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_LOWEST = 10_000
"""Below this, well-known services' ports (and the range's default floor on other systems)."""
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago, outside the ephemeral range when it can."""
    candidates = range(_LOWEST, _ephemeral_floor())
    if len(_handed_out) > len(candidates) // 2:  # a long session: ports handed out long ago
        _handed_out.clear()
    for _ in range(100):
        if not candidates:
            break
        port = random.choice(candidates)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_floor() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; else no range here)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LOWEST


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
