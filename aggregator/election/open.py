"""``--leader-election`` to a backend, or a clear refusal when the rest cannot support it.

Two replicas share two things, and both must be in the datastore's etcd: the lease (who
leads) and the checkpoint (where the new leader continues from).  A file checkpoint is each
replica's own disk, so a standby taking over would start from zero or from a stale copy:
refused at start, with the flags to use instead.
"""

from __future__ import annotations

import enum

from aggregator.checkpoint.etcd import EtcdCheckpointStore, Fence
from aggregator.checkpoint.stores import CheckpointStore, parse_checkpoint_spec
from aggregator.datastore.spec import DatastoreSpec, EtcdSpec
from aggregator.election.base import Election, replica_identity
from aggregator.election.etcd import EtcdElection

__all__ = ["LeaderElection", "fence_checkpoints", "open_election", "parse_leader_election"]


class LeaderElection(enum.StrEnum):
    NONE = "none"
    """One replica: it serves as soon as it has started."""
    ETCD = "etcd"
    """A lease in the datastore's etcd: one replica serves, the others stand by."""


def parse_leader_election(text: str) -> LeaderElection:
    try:
        return LeaderElection(text.strip().lower() or "none")
    except ValueError:
        accepted = ", ".join(kind.value for kind in LeaderElection)
        raise ValueError(f"--leader-election {text!r}: expected one of {accepted}") from None


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
    if not isinstance(datastore, EtcdSpec):
        raise ValueError(
            "--leader-election etcd keeps the lease in the datastore's etcd: it needs "
            "--datastore etcd://HOST:PORT (or etcds://), "
            + (f"not {datastore.describe()}" if datastore is not None else "and none is set")
        )
    if not checkpoint or not parse_checkpoint_spec(checkpoint).etcd:
        raise ValueError(
            "--leader-election etcd needs --checkpoint etcd: the replica that takes over continues "
            "from the leader's last checkpoint, and only etcd is shared by both replicas "
            + (f"(--checkpoint {checkpoint} is this replica's own)" if checkpoint else "(none is set)")
        )
    return EtcdElection(datastore, identity or replica_identity(), ttl=ttl)


def fence_checkpoints(election: Election | None, store: CheckpointStore | None) -> None:
    """Make the checkpoint store save only while ``election`` still leads (call once won)."""
    if isinstance(election, EtcdElection) and isinstance(store, EtcdCheckpointStore):
        store.fence = Fence(election.key, election.create_revision)
