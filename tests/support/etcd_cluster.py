"""A real etcd cluster of a few members on loopback, for what one member cannot show:
losing the leader (a member whose peers are stopped is partitioned from the cluster).

Usage::

    with EtcdCluster(size=2) as cluster:     # every member started and healthy
        cluster.members[0].endpoint          # "127.0.0.1:<port>"
        cluster.members[1].stop()            # member 0 loses its leader (no quorum)

Short raft timings (``heartbeat_ms``, ``election_ms``) make a lost leader noticed within
a second or two.  Only the processes this module started are ever signalled.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Self

from tests.support.etcd_server import EtcdServer
from tests.support.ports import free_port
from tests.support.processes import ManagedServer

__all__ = ["EtcdCluster"]


class EtcdCluster(ManagedServer):
    def __init__(self, size: int = 2, *, heartbeat_ms: int = 50, election_ms: int = 500) -> None:
        self.root = tempfile.TemporaryDirectory(prefix="etcd-cluster-test-")
        timing = ["--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms)]
        self.members = [
            EtcdServer(Path(self.root.name) / f"m{index}", name=f"m{index}", extra_args=timing)
            for index in range(size)
        ]
        for member in self.members:
            member.client_port, member.peer_port = free_port(), free_port()
        cluster = ",".join(f"{member.name}={member.peer_url}" for member in self.members)
        for member in self.members:
            member.initial_cluster = cluster

    def start(self) -> Self:
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_healthy()
        return self

    def close(self) -> None:
        for member in self.members:
            member.close()
        self.root.cleanup()
