"""``--checkpoint`` to a store: a file, or the datastore's etcd."""

from __future__ import annotations

from aggregator.checkpoint.etcd import EtcdCheckpointStore
from aggregator.checkpoint.file import FileCheckpointStore
from aggregator.checkpoint.stores import CheckpointSpec, CheckpointStore
from aggregator.datastore.spec import DatastoreSpec, EtcdSpec

__all__ = ["open_checkpoint_store"]


def open_checkpoint_store(spec: CheckpointSpec, datastore: DatastoreSpec | None) -> CheckpointStore:
    """The store ``spec`` names; ValueError for ``etcd`` without an etcd datastore."""
    if spec.path is not None:
        return FileCheckpointStore(spec.path)
    if not isinstance(datastore, EtcdSpec):
        raise ValueError(
            "--checkpoint etcd keeps checkpoints in the datastore's etcd: use --datastore etcd://..."
        )
    return EtcdCheckpointStore(datastore)
