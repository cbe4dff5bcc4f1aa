"""Shard membership as ``coordination.k8s.io/v1`` Leases: one per replica, renewed in time.

For ``--datastore kubernetes``: each replica keeps the Lease ``calico-accountant-shard-<identity>``
in its namespace, labelled ``app.kubernetes.io/component=aggregator-shard``, its
``holderIdentity`` the identity and the annotation ``calico-accountant.io/shard-address``
its advertised address, renewed (``renewTime``) every ``interval`` seconds.  The members are
the labelled Leases with a holder whose record changed within their
``leaseDurationSeconds`` *as this replica observed it*: the time runs on this replica's clock
from when it first saw the record's current resourceVersion, never compared with the
holder's clock (as client-go's leader election does), so clock skew cannot keep a dead
replica in or drop a live one.  A replica that stops cleanly deletes its Lease (its nodes
move at the others' next read); one that dies drops out ``ttl`` seconds after its last
renewal was seen.  Needs get, list, create, update and delete on leases in the namespace.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aggregator.datastore.kube_client import Conflict, KubeApiError, KubeClient, load_config
from aggregator.datastore.spec import KubernetesSpec
from aggregator.election.kubernetes import lease_path
from aggregator.shard.membership import MembershipMetrics, PolledMembership
from aggregator.shard.ring import Member

__all__ = ["ADDRESS_ANNOTATION", "COMPONENT", "KubernetesLeaseMembership", "shard_lease_name"]

log = logging.getLogger(__name__)

COMPONENT = "aggregator-shard"
ADDRESS_ANNOTATION = "calico-accountant.io/shard-address"
_SELECTOR = f"app.kubernetes.io/component={COMPONENT}"


def shard_lease_name(identity: str) -> str:
    return f"calico-accountant-shard-{identity}"[:253]


def _spec(lease: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _metadata(lease: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = lease.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


class KubernetesLeaseMembership(PolledMembership):
    """This replica's Lease and view (see the module docstring)."""

    def __init__(
        self,
        spec: KubernetesSpec,
        me: Member,
        *,
        namespace: str,
        ttl: int = 5,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        client: KubeClient | None = None,
        metrics: MembershipMetrics | None = None,
    ) -> None:
        super().__init__(me, ttl, interval, metrics)
        self.spec = spec
        self.namespace = namespace
        self._clock = clock
        self._client = client
        self._own: dict[str, Any] | None = None
        self._observed: dict[str, tuple[str, float]] = {}
        """Lease name -> (resourceVersion, when this replica first saw it)."""

    TRANSIENT = (KubeApiError, TimeoutError, OSError)

    def describe(self) -> str:
        return f"Leases {self.namespace}/{_SELECTOR} ({self.spec.describe()})"

    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient(load_config(self.spec), request_timeout=float(self.ttl))
        return self._client

    @property
    def path(self) -> str:
        return lease_path(self.namespace, shard_lease_name(self.view.me.identity))

    async def refresh(self) -> None:
        await self._renew()
        await self._read()

    def _body(self, resource_version: str = "") -> dict[str, Any]:
        me, now = self.view.me, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        metadata: dict[str, Any] = {
            "name": shard_lease_name(me.identity),
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/name": "calico-accountant",
                "app.kubernetes.io/component": COMPONENT,
            },
            "annotations": {ADDRESS_ANNOTATION: me.address},
        }
        if resource_version:
            metadata["resourceVersion"] = resource_version
        spec = {"holderIdentity": me.identity, "leaseDurationSeconds": self.ttl, "renewTime": now}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _renew(self) -> None:
        client = self.client()
        if self._own is None:
            try:
                self._own = await client.create_object(lease_path(self.namespace), self._body())
                log.info("shard membership %s: registered %s", self.describe(), self.view.me.identity)
                return
            except Conflict:  # left by this identity's previous life: take it over
                self._own = await client.get_object(self.path) or {}
        version = str(_metadata(self._own).get("resourceVersion") or "")
        try:
            self._own = await client.replace_object(self.path, self._body(version))
        except Conflict:
            self._own = None  # re-read (or re-create) at the next round

    async def _read(self) -> None:
        now = self._clock()
        members = []
        seen = set()
        for lease in await self.client().list_objects(lease_path(self.namespace), _SELECTOR):
            metadata, spec = _metadata(lease), _spec(lease)
            name, version = str(metadata.get("name") or ""), str(metadata.get("resourceVersion") or "")
            holder = spec.get("holderIdentity")
            annotations = metadata.get("annotations")
            address = annotations.get(ADDRESS_ANNOTATION) if isinstance(annotations, Mapping) else None
            if not name or not isinstance(holder, str) or not holder or not isinstance(address, str):
                continue
            seen.add(name)
            observed = self._observed.get(name)
            if observed is None or observed[0] != version:
                observed = self._observed[name] = (version, now)
            duration = spec.get("leaseDurationSeconds")
            ttl = duration if isinstance(duration, int) and duration > 0 else self.ttl
            if now - observed[1] < ttl:
                members.append(Member(holder, address))
        for gone in set(self._observed) - seen:
            del self._observed[gone]
        self.view.update(members, self.describe())

    async def close(self) -> None:
        await self.stop_polling()
        if self._own is not None:
            with contextlib.suppress(KubeApiError, TimeoutError, OSError):
                await self.client().delete_object(self.path)
                log.info("shard membership %s: deregistered %s", self.describe(), self.view.me.identity)
            self._own = None
        if self._client is not None:
            await self._client.close()
