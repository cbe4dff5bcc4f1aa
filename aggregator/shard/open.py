"""``--shards`` to a membership backend, or a clear refusal when the rest cannot support it.

Sharding keeps the member set where the replicas already share state: the datastore's
etcd (``--shards etcd``, needs ``--datastore etcd://``) or the Kubernetes API (``--shards
kubernetes``, a Lease per replica; needs ``--datastore kubernetes``).  Each shard is one replica with
state of its own: its checkpoint (``--checkpoint etcd``) is kept under a prefix named by
its identity (:func:`shard_checkpoint_prefix`), which must therefore be stable across
restarts (a StatefulSet's pod name); a file checkpoint is each replica's own anyway.
Leader election and sharding do not combine (each shard is a single replica; Kubernetes
restarts it, and meanwhile its nodes move to the others).
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass

from aggregator.datastore.kube_client import own_namespace
from aggregator.datastore.spec import DatastoreSpec, EtcdSpec, KubernetesSpec
from aggregator.shard.etcd import EtcdMembership
from aggregator.shard.kubernetes import KubernetesLeaseMembership
from aggregator.shard.membership import Membership, MembershipMetrics
from aggregator.shard.ring import Member

__all__ = [
    "ShardBackend",
    "ShardSettings",
    "advertised_address",
    "open_membership",
    "parse_shards",
    "shard_checkpoint_prefix",
]


class ShardBackend(enum.StrEnum):
    NONE = "none"
    """One aggregator takes every node."""
    ETCD = "etcd"
    """Members register under ``/calico-accountant/v1/shards/`` in the datastore's etcd."""
    KUBERNETES = "kubernetes"
    """A ``coordination.k8s.io`` Lease per member in the aggregator's namespace."""


def parse_shards(text: str) -> ShardBackend:
    try:
        return ShardBackend(text.strip().lower() or "none")
    except ValueError:
        accepted = ", ".join(kind.value for kind in ShardBackend)
        raise ValueError(f"--shards {text!r}: expected one of {accepted}") from None


@dataclass(frozen=True, slots=True)
class ShardSettings:
    backend: ShardBackend = ShardBackend.NONE
    advertise_address: str = ""
    """``HOST:PORT`` agents reach this replica's gRPC port at; empty: :func:`advertised_address`."""
    lease_ttl: int = 5
    """Seconds a dead replica stays a member (its nodes wait that long to move)."""


def advertised_address(configured: str, grpc_port: int) -> str:
    """``--advertise-address``, else ``$POD_IP:PORT`` (the downward API), else the host name."""
    if configured:
        return configured
    host = os.environ.get("POD_IP", "").strip() or socket.gethostname()
    return f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"


def shard_checkpoint_prefix(identity: str) -> str:
    """Where a shard's etcd checkpoint lives: its own prefix, outside the single-replica one."""
    return f"/calico-accountant/v1/shard-checkpoints/{identity}/"


def open_membership(
    settings: ShardSettings,
    datastore: DatastoreSpec | None,
    me: Member,
    *,
    leader_election: bool,
    checkpoint: str,
    metrics: MembershipMetrics | None = None,
) -> Membership | None:
    """The membership ``settings`` names (None without sharding); ValueError saying what is missing."""
    if settings.backend is ShardBackend.NONE:
        return None
    if leader_election:
        raise ValueError("--shards and --leader-election do not combine: each shard is one replica")
    if checkpoint.strip() == "kubernetes":
        raise ValueError(
            "--shards does not keep per-shard checkpoints in ConfigMaps yet: use --checkpoint etcd or "
            "file:PATH"
        )
    if settings.backend is ShardBackend.KUBERNETES:
        if not isinstance(datastore, KubernetesSpec):
            raise ValueError(
                "--shards kubernetes keeps the member set in Leases of the Kubernetes API: it needs "
                "--datastore kubernetes"
            )
        return KubernetesLeaseMembership(
            datastore, me, namespace=own_namespace(), ttl=settings.lease_ttl, metrics=metrics
        )
    if not isinstance(datastore, EtcdSpec):
        raise ValueError(
            "--shards etcd keeps the member set in the datastore's etcd: it needs --datastore etcd://HOST:PORT"
        )
    return EtcdMembership(datastore, me, ttl=settings.lease_ttl, metrics=metrics)
