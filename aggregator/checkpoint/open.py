"""``--checkpoint`` to a store: a file, the datastore's etcd, or ConfigMaps of the API."""

from __future__ import annotations

from aggregator.checkpoint.etcd import EtcdCheckpointStore
from aggregator.checkpoint.file import FileCheckpointStore
from aggregator.checkpoint.kubernetes import KubernetesCheckpointStore
from aggregator.checkpoint.stores import CheckpointBackend, CheckpointSpec, CheckpointStore
from aggregator.datastore.kube_client import own_namespace
from aggregator.datastore.spec import DatastoreSpec, EtcdSpec, KubernetesSpec

__all__ = ["open_checkpoint_store"]


def open_checkpoint_store(
    spec: CheckpointSpec, datastore: DatastoreSpec | None, *, etcd_prefix: str | None = None
) -> CheckpointStore:
    """The store ``spec`` names; ValueError when the datastore it lives in is not the one in use.
    ``etcd_prefix``: another prefix than the single replica's (a shard's own)."""
    if spec.backend is CheckpointBackend.FILE:
        assert spec.path is not None
        return FileCheckpointStore(spec.path)
    if spec.backend is CheckpointBackend.ETCD:
        if not isinstance(datastore, EtcdSpec):
            raise ValueError(
                "--checkpoint etcd keeps checkpoints in the datastore's etcd: use --datastore etcd://..."
            )
        return (
            EtcdCheckpointStore(datastore)
            if etcd_prefix is None
            else EtcdCheckpointStore(datastore, prefix=etcd_prefix)
        )
    if not isinstance(datastore, KubernetesSpec):
        raise ValueError(
            "--checkpoint kubernetes keeps checkpoints in ConfigMaps of the Kubernetes API: "
            "use --datastore kubernetes"
        )
    return KubernetesCheckpointStore(datastore, namespace=own_namespace())
