"""``--leader-election`` to a backend, or a clear refusal when the rest cannot support it.

Two replicas share two things, and both must live in the datastore the replicas read: the
lease (who leads) and the checkpoint (where the new leader continues from).  With
``--datastore etcd://`` that is the datastore's etcd (``etcd``); with ``--datastore
kubernetes`` the API server (``kubernetes``: a Lease, and ConfigMaps for the checkpoint).
A file checkpoint is each replica's own disk, so a standby taking over would start from
zero or from a stale copy: refused at start, with the flags to use instead.
"""

from __future__ import annotations

import enum

from aggregator.checkpoint.etcd import EtcdCheckpointStore, Fence
from aggregator.checkpoint.kubernetes import KubernetesCheckpointStore
from aggregator.checkpoint.stores import CheckpointBackend, CheckpointStore, parse_checkpoint_spec
from aggregator.datastore.kube_client import own_namespace
from aggregator.datastore.spec import DatastoreSpec, EtcdSpec, KubernetesSpec
from aggregator.election.base import Election, replica_identity
from aggregator.election.etcd import EtcdElection
from aggregator.election.kubernetes import KubernetesLeaseElection

__all__ = ["LeaderElection", "fence_checkpoints", "open_election", "parse_leader_election"]


class LeaderElection(enum.StrEnum):
    NONE = "none"
    """One replica: it serves as soon as it has started."""
    ETCD = "etcd"
    """A lease in the datastore's etcd: one replica serves, the others stand by."""
    KUBERNETES = "kubernetes"
    """A ``coordination.k8s.io`` Lease in the aggregator's namespace (``--datastore kubernetes``)."""


def parse_leader_election(text: str) -> LeaderElection:
    try:
        return LeaderElection(text.strip().lower() or "none")
    except ValueError:
        accepted = ", ".join(kind.value for kind in LeaderElection)
        raise ValueError(f"--leader-election {text!r}: expected one of {accepted}") from None


_NEEDS = {
    LeaderElection.ETCD: (EtcdSpec, "the datastore's etcd", "--datastore etcd://HOST:PORT (or etcds://)"),
    LeaderElection.KUBERNETES: (KubernetesSpec, "the Kubernetes API", "--datastore kubernetes"),
}


def open_election(
    kind: LeaderElection,
    datastore: DatastoreSpec | None,
    checkpoint: str,
    *,
    ttl: int = 5,
    identity: str | None = None,
) -> Election | None:
    """The election ``kind`` names (None for ``none``); ValueError saying what is missing."""
    if kind is LeaderElection.NONE:
        return None
    spec_type, where, datastore_flag = _NEEDS[kind]
    if not isinstance(datastore, spec_type):
        raise ValueError(
            f"--leader-election {kind} keeps the lease in {where}: it needs {datastore_flag}, "
            + (f"not {datastore.describe()}" if datastore is not None else "and none is set")
        )
    backend = CheckpointBackend(kind.value)
    if not checkpoint or parse_checkpoint_spec(checkpoint).backend is not backend:
        raise ValueError(
            f"--leader-election {kind} needs --checkpoint {backend.value}: the replica that takes over "
            f"continues from the leader's last checkpoint, which must be in {where}, shared by every replica "
            + (f"(not --checkpoint {checkpoint})" if checkpoint else "(none is set)")
        )
    if isinstance(datastore, EtcdSpec):
        return EtcdElection(datastore, identity or replica_identity(), ttl=ttl)
    assert isinstance(datastore, KubernetesSpec)
    return KubernetesLeaseElection(
        datastore, identity or replica_identity(), namespace=own_namespace(), ttl=ttl
    )


def fence_checkpoints(election: Election | None, store: CheckpointStore | None) -> None:
    """Make the checkpoint store save only while ``election`` still leads (call once won)."""
    if isinstance(election, EtcdElection) and isinstance(store, EtcdCheckpointStore):
        store.fence = Fence(election.key, election.create_revision)
    elif isinstance(election, KubernetesLeaseElection) and isinstance(store, KubernetesCheckpointStore):
        store.epoch = lambda: election.epoch
