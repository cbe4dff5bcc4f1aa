"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

For clusters whose Calico keeps its state in the Kubernetes API (``--datastore
kubernetes``): there is no etcd to hold a lease, and the API server's own primitive is the
Lease object, written with optimistic concurrency (an update carries the resourceVersion
it read; a stale one gets ``409 Conflict``).

Campaign: read the Lease (``calico-accountant-aggregator`` in the aggregator's namespace).
Absent: create it holding it.  Held by another: it is free when its holder is empty (a
leader resigned) or when its record has not changed for ``leaseDurationSeconds`` *as this
replica observed it* -- the time is measured on this replica's clock from when it first saw
the record as it is, never compared with the holder's clock, so clock skew between pods
cannot make two leaders.  Taking it is an update from the resourceVersion read, with
``leaseTransitions`` incremented: two standbys racing both write from the same version and
only one succeeds.

Holding: renew (``renewTime``) every TTL/3.  The record's observers start their wait no
earlier than when a renewal was applied, which is after it was sent, so this replica leads
at least until ``sent + TTL`` of its last renewal that succeeded: its deadline.  Past it,
or on a ``409`` after which the Lease names someone else, leadership is lost.

The leadership's epoch is the ``leaseTransitions`` it wrote: unique to it (every
acquisition increments it), it fences the checkpoint
(:class:`aggregator.checkpoint.kubernetes.KubernetesCheckpointStore`).  Resigning writes
an empty holder, so a standby takes over at its next poll instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aggregator.datastore.kube_client import Conflict, KubeApiError, KubeClient, load_config
from aggregator.datastore.spec import KubernetesSpec
from aggregator.election.base import Tenure

__all__ = ["DEFAULT_LEASE", "KubernetesLeaseElection", "lease_path"]

log = logging.getLogger(__name__)

DEFAULT_LEASE = "calico-accountant-aggregator"


def lease_path(namespace: str, name: str = "") -> str:
    collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{collection}/{name}" if name else collection


def _now_micro() -> str:
    """A ``MicroTime`` as the API writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spec_of(lease: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class KubernetesLeaseElection:
    """One replica's side of the election (see the module docstring)."""

    def __init__(
        self,
        spec: KubernetesSpec,
        identity: str,
        *,
        namespace: str,
        name: str = DEFAULT_LEASE,
        ttl: int = 5,
        retry: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        client: KubeClient | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError(f"the leader lease TTL must be at least 2 seconds, not {ttl}")
        if not identity:
            raise ValueError("a replica needs a non-empty identity")
        self.spec = spec
        self.identity = identity
        self.namespace, self.name = namespace, name
        self.ttl = ttl
        self.retry = retry if retry is not None else max(0.2, ttl / 5)
        self.epoch = -1
        """``leaseTransitions`` of this replica's leadership (-1 while it does not lead)."""
        self._client = client
        self._clock = clock
        self._holder = ""
        self._observed: tuple[str, float] = ("", 0.0)
        """(resourceVersion, when this replica first saw it) of the Lease as last read."""
        self._lease: dict[str, Any] = {}
        self._deadline = 0.0
        self._tenure: Tenure | None = None

    def describe(self) -> str:
        return f"Lease {self.namespace}/{self.name} ({self.spec.describe()})"

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def path(self) -> str:
        return lease_path(self.namespace, self.name)

    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient(load_config(self.spec), request_timeout=float(self.ttl))
        return self._client

    # -- campaigning ---------------------------------------------------------------------

    async def campaign(self) -> None:
        announced = None
        while True:
            try:
                if await self._try_acquire():
                    log.info("leader election %s: this replica (%s) leads", self.describe(), self.identity)
                    self._tenure = Tenure(self.describe(), self._renew_until_lost, self._ended)
                    return
                if self._holder != announced:
                    announced = self._holder
                    log.info("leader election %s: standing by, %s leads", self.describe(), announced or "?")
            except KubeApiError as error:
                log.warning("leader election %s: %s; retrying in %.1f s", self.describe(), error, self.retry)
            await asyncio.sleep(self.retry)

    async def _try_acquire(self) -> bool:
        """True when this replica now leads."""
        client = self.client()
        lease = await client.get_object(self.path)
        sent = self._clock()
        if lease is None:
            body = self._record(transitions=0, acquire=True)
            try:
                created = await client.create_object(lease_path(self.namespace), body)
            except Conflict:
                return False  # another replica created it first
            return self._won(created, sent)
        spec = _spec_of(lease)
        holder = str(spec.get("holderIdentity") or "")
        self._holder = holder
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if self._observed[0] != version:
            self._observed = (version, sent)
        duration = _int(spec.get("leaseDurationSeconds"), self.ttl)
        if holder and holder != self.identity and sent < self._observed[1] + duration:
            return False
        body = self._record(transitions=_int(spec.get("leaseTransitions"), 0) + 1, acquire=True)
        body["metadata"] = dict(lease.get("metadata") or {})
        try:
            replaced = await client.replace_object(self.path, body)
        except Conflict:
            return False  # changed since read: renewed by its holder, or taken by a rival
        return self._won(replaced, sent)

    def _record(self, *, transitions: int, acquire: bool) -> dict[str, Any]:
        now = _now_micro()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.ttl,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = now
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }

    def _won(self, lease: dict[str, Any], sent: float) -> bool:
        self._lease = lease
        self._holder = self.identity
        self.epoch = _int(_spec_of(lease).get("leaseTransitions"), 0)
        self._deadline = sent + self.ttl
        return True

    # -- holding -------------------------------------------------------------------------

    async def lost(self) -> str:
        if self._tenure is None:
            raise RuntimeError("lost() before campaign() won")
        return await self._tenure.lost()

    def _ended(self) -> None:
        self.epoch = -1  # the checkpoint store's fence reads it: no save from now on

    async def _renew_until_lost(self) -> str:
        client = self.client()
        while True:
            await asyncio.sleep(min(self.ttl / 3, max(0.0, self._deadline - self._clock())))
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                return f"the lease could not be renewed within its TTL ({self.ttl} s)"
            body = dict(self._lease)
            body["spec"] = {**_spec_of(self._lease), "renewTime": _now_micro()}
            sent = self._clock()
            try:
                async with asyncio.timeout(remaining):
                    self._lease = await client.replace_object(self.path, body)
                self._deadline = sent + self.ttl
            except Conflict:
                # Changed since our last write: a rival took it, or someone else edited it.
                try:
                    async with asyncio.timeout(max(0.1, self._deadline - self._clock())):
                        current = await client.get_object(self.path)
                except (KubeApiError, TimeoutError):
                    continue
                if current is None:
                    return "the Lease was deleted"
                spec = _spec_of(current)
                if spec.get("holderIdentity") != self.identity or spec.get("leaseTransitions") != self.epoch:
                    self._holder = str(spec.get("holderIdentity") or "")
                    return f"the Lease was taken by {self._holder or 'nobody'}"
                self._lease = current
            except (KubeApiError, TimeoutError) as error:
                log.warning("leader election %s: renewal: %s", self.describe(), error or "timed out")

    # -- letting go ----------------------------------------------------------------------

    async def resign(self) -> None:
        tenure, self._tenure = self._tenure, None
        if tenure is not None:
            await tenure.end()
        if self.epoch >= 0 and self._lease:
            body = dict(self._lease)
            body["spec"] = {**_spec_of(self._lease), "holderIdentity": "", "leaseDurationSeconds": 1}
            self.epoch = -1
            try:
                async with asyncio.timeout(2.0):
                    await self.client().replace_object(self.path, body)
                log.info("leader election %s: resigned", self.describe())
            except (KubeApiError, TimeoutError) as error:
                log.debug("leader election %s: resigning: %s", self.describe(), error)
        if self._client is not None:
            await self._client.close()
            self._client = None
