"""A checkpoint in ConfigMaps of the aggregator's namespace (``--checkpoint kubernetes``).

The Kubernetes API datastore has no etcd of ours to write to, and a ConfigMap holds at most
1 MiB, while a big cluster's checkpoint is several.  So, as in the etcd store, a checkpoint
is written as numbered chunk ConfigMaps of a new *generation*
(``calico-accountant-checkpoint-<generation>-<index>``, labelled with it), and only then
made current by one update of a small pointer ConfigMap (``calico-accountant-checkpoint``:
generation, chunk count, size).  A reader follows the pointer and sees a whole old or a
whole new checkpoint; chunks of other generations (older ones, a write that died halfway)
are deleted after the switch.  The checkpoint's own header carries its SHA-256.

Fencing without transactions.  The API has no multi-object transaction, but every update
is conditional on the resourceVersion it read.  A leadership's epoch
(:attr:`aggregator.election.kubernetes.KubernetesLeaseElection.epoch`) is written into the
pointer: when a replica starts leading, it *claims* the pointer (writes its epoch) before
it restores from it; every switch reads the pointer, refuses to go on if a later epoch
claimed it, and updates it from the version it read.  A deposed leader that read the
pointer before the claim gets ``409 Conflict``; one that read it after sees the later
epoch.  Either way its checkpoint never becomes current (:class:`FencedOut`).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aggregator.checkpoint.stores import FencedOut
from aggregator.datastore.kube_client import Conflict, KubeApiError, KubeClient, load_config
from aggregator.datastore.spec import KubernetesSpec

__all__ = ["CHUNK_BYTES", "POINTER", "KubernetesCheckpointStore"]

POINTER = "calico-accountant-checkpoint"
CHUNK_BYTES = 768 * 1024
"""Below the 1 MiB a ConfigMap may hold, with room for the base64 of ``binaryData``."""
_GENERATION = "calico-accountant.io/checkpoint-generation"


def configmap_path(namespace: str, name: str = "") -> str:
    collection = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{collection}/{name}" if name else collection


def _configmap(namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    metadata.update(fields.pop("metadata", {}))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, **fields}


class KubernetesCheckpointStore:
    def __init__(
        self,
        spec: KubernetesSpec,
        *,
        namespace: str,
        chunk_bytes: int = CHUNK_BYTES,
        client: KubeClient | None = None,
    ) -> None:
        self.spec = spec
        self.namespace = namespace
        self.chunk_bytes = chunk_bytes
        self.epoch: Callable[[], int] | None = None
        """The writing leadership's epoch (two replicas), read at every save: -1 once lost."""
        self._client = client

    def describe(self) -> str:
        return f"ConfigMap {self.namespace}/{POINTER} ({self.spec.describe()})"

    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient(load_config(self.spec))
        return self._client

    async def load(self) -> bytes | None:
        client = self.client()
        pointer = await self._claim() if self.epoch is not None else await client.get_object(self._pointer)
        data = (pointer or {}).get("data") or {}
        if not data.get("generation"):
            return None
        generation, chunks = str(data["generation"]), int(data["chunks"])
        parts = []
        for index in range(chunks):
            name = self._chunk_name(generation, index)
            chunk = await client.get_object(configmap_path(self.namespace, name))
            binary = (chunk or {}).get("binaryData") or {}
            if "chunk" not in binary:
                raise ValueError(f"checkpoint generation {generation}: chunk {index} of {chunks} is missing")
            parts.append(base64.b64decode(binary["chunk"]))
        return b"".join(parts)

    async def save(self, data: bytes) -> None:
        client = self.client()
        generation = f"{time.time_ns():020d}"
        size = self.chunk_bytes
        chunks = [data[start : start + size] for start in range(0, len(data), size)] or [b""]
        collection = configmap_path(self.namespace)
        try:
            for index, chunk in enumerate(chunks):
                body = _configmap(
                    self.namespace,
                    self._chunk_name(generation, index),
                    metadata={"labels": {_GENERATION: generation}},
                    binaryData={"chunk": base64.b64encode(chunk).decode()},
                    immutable=True,
                )
                await client.create_object(collection, body)
            await self._switch(generation, len(chunks), len(data))
        except BaseException:
            with contextlib.suppress(KubeApiError):
                await self._delete_generations(keep="", only=generation)
            raise
        with contextlib.suppress(KubeApiError):  # the next save tries again
            await self._delete_generations(keep=generation)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ------------------------------------------------------------------ internals

    @property
    def _pointer(self) -> str:
        return configmap_path(self.namespace, POINTER)

    @staticmethod
    def _chunk_name(generation: str, index: int) -> str:
        return f"{POINTER}-{generation}-{index:06d}"

    def _current_epoch(self) -> int | None:
        """None: no election (one replica); else this leadership's epoch, -1 once it ended."""
        return None if self.epoch is None else self.epoch()

    async def _claim(self) -> dict[str, Any] | None:
        """Write this leadership's epoch into the pointer (creating it when absent), so a
        deposed leader's switch can no longer succeed; returns the pointer as claimed."""
        epoch = self._current_epoch()
        assert epoch is not None
        while True:
            if epoch < 0:
                raise FencedOut("this replica does not lead: it cannot claim the checkpoint")
            pointer = await self.client().get_object(self._pointer)
            data = dict((pointer or {}).get("data") or {})
            if int(data.get("epoch", -1)) > epoch:
                raise FencedOut(f"a later leadership (epoch {data['epoch']}) claimed the checkpoint")
            data["epoch"] = str(epoch)
            try:
                claimed = await self._write_pointer(pointer, data)
            except Conflict:
                continue
            return claimed

    async def _switch(self, generation: str, chunks: int, size: int) -> None:
        epoch = self._current_epoch()
        pointer = await self.client().get_object(self._pointer)
        data = dict((pointer or {}).get("data") or {})
        if epoch is not None and (epoch < 0 or int(data.get("epoch", -1)) != epoch):
            raise FencedOut("this replica no longer leads: its checkpoint was not made current")
        data.update(generation=generation, chunks=str(chunks), bytes=str(size))
        try:
            await self._write_pointer(pointer, data)
        except Conflict as error:
            raise FencedOut(f"the checkpoint pointer changed under this save: {error}") from error

    async def _write_pointer(self, pointer: dict[str, Any] | None, data: dict[str, str]) -> dict[str, Any]:
        if pointer is None:
            return await self.client().create_object(
                configmap_path(self.namespace), _configmap(self.namespace, POINTER, data=data)
            )
        body = dict(pointer)
        body["data"] = data
        return await self.client().replace_object(self._pointer, body)

    async def _delete_generations(self, *, keep: str, only: str = "") -> None:
        selector = f"{_GENERATION}={only}" if only else _GENERATION
        for chunk in await self.client().list_objects(configmap_path(self.namespace), selector):
            metadata = chunk.get("metadata") or {}
            if (metadata.get("labels") or {}).get(_GENERATION) != keep and metadata.get("name"):
                await self.client().delete_object(configmap_path(self.namespace, metadata["name"]))
