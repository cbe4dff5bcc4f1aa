"""Where the demo keeps its cluster: a ``file:`` datastore or a real etcd, written as Calico does.

* ``file:`` -- the bundled sample (read as is), or a copy in a temporary directory when
  the cluster changes while running (the aggregator's file source re-reads it);
* ``etcd://host:port`` -- every object written under ``/calico/resources/v3/...`` the
  way Calico v3.30's etcd backend stores it (:func:`calico_accountant_cli.demo.cluster.stored_documents`),
  and removed again with :meth:`ClusterStore.delete`.  Plain (non-TLS) etcd only.

Writes are synchronous for the caller (an event loop runs inside each call): the demo
and the tests are not asyncio programs.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import yaml

from aggregator.datastore.spec import EtcdSpec, FileSpec, KubernetesSpec, parse_datastore_spec
from calico_accountant_cli.demo.cluster import Cluster, manifest_documents, stored_documents

__all__ = ["ClusterStore"]


class ClusterStore:
    """The demo's datastore: ``spec`` is what the aggregator's ``--datastore`` gets."""

    def __init__(self, spec: str | None) -> None:
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if not spec:
            self._temp = tempfile.TemporaryDirectory(prefix="calico-accountant-demo-")
            self.path: Path | None = Path(self._temp.name) / "cluster.yaml"
            self.spec = f"file:{self.path}"
            self._etcd: EtcdSpec | None = None
            return
        parsed = parse_datastore_spec(spec)
        if isinstance(parsed, FileSpec | KubernetesSpec):
            raise ValueError(
                "the demo writes its own file datastore; use --datastore etcd://HOST:PORT or none"
            )
        if parsed.tls is not None:
            raise ValueError("the demo writes the sample cluster into plain etcd only (no TLS)")
        self.path = None
        self.spec = spec
        self._etcd = parsed

    @property
    def kind(self) -> str:
        return "etcd" if self._etcd is not None else "file"

    def write(self, cluster: Cluster) -> None:
        """Make the datastore hold exactly ``cluster``'s objects (the demo's prefix only)."""
        if self.path is not None:
            text = yaml.safe_dump_all(manifest_documents(cluster), sort_keys=False)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(text)
            temporary.replace(self.path)  # atomic: the file source never reads half a file
            return
        asyncio.run(self._sync_etcd(dict(stored_documents(cluster))))

    def delete(self, cluster: Cluster) -> None:
        """Remove ``cluster``'s objects from etcd (a file datastore is simply deleted)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            return
        asyncio.run(self._sync_etcd({}, remove=dict(stored_documents(cluster))))

    def close(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def __enter__(self) -> ClusterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _sync_etcd(self, wanted: dict[str, str], remove: dict[str, str] | None = None) -> None:
        import aetcd

        assert self._etcd is not None
        endpoint = self._etcd.endpoints[0]
        client = aetcd.Client(host=endpoint.host, port=endpoint.port, timeout=10)
        try:
            for key in remove or {}:
                await client.delete(key.encode())
            for key, value in wanted.items():
                current = await client.get(key.encode())
                if current is not None and current.value == value.encode():
                    continue  # unchanged objects keep their revision, as Calico's would
                await client.put(key.encode(), value.encode())
            if remove is None:
                known = set(wanted)
                prefixes = {key.rsplit("/", 1)[0] + "/" for key in wanted}
                for prefix in prefixes:
                    listing = await client.get_prefix(prefix.encode())
                    for item in listing:
                        key = item.key.decode()
                        if key not in known and key.count("/") == prefix.count("/"):
                            await client.delete(item.key)
        finally:
            await client.close()
