"""The aggregator's health port: ``/healthz`` and ``/readyz``, served from start to stop.

The gRPC and ``/metrics`` ports are open only while this replica serves (a standby does
not listen on them at all), so whether the process is alive, and whether it is the one to
route to, is told on a port of its own:

* ``/healthz``: 200 while the process runs (a liveness probe; a standby is healthy);
* ``/readyz``: 200 only while this replica serves ingest -- it leads (or there is no
  election), the datastore's first listing is in (or its wait timed out), the checkpoint
  is restored -- and 503 otherwise, with the phase and a detail in the body.  A
  Deployment's readiness probe on it makes the Service route to the leader only.

``calico_accountant_leader`` (1 while serving, 0 otherwise) goes with it, on ``/metrics``.
"""

from __future__ import annotations

import enum
import logging

from prometheus_client import CollectorRegistry, Gauge

from calico_accountant.runtime.http import TEXT_PLAIN, HttpServer, Response

__all__ = ["Phase", "Readiness", "serve_health"]

log = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    STARTING = "starting"
    """Syncing the datastore, restoring the checkpoint, binding the ports."""
    STANDBY = "standby"
    """Another replica leads; this one waits for its lease to go."""
    SERVING = "serving"
    STOPPING = "stopping"
    LOST = "lost"
    """This replica lost its lease: it stopped serving and is exiting."""


class Readiness:
    """The replica's phase, read by the health port's threads (one attribute, replaced whole)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._state = (Phase.STARTING, "")
        self._leader = Gauge(
            "calico_accountant_leader",
            "1 while this replica serves (it leads, or there is no leader election); a standby serves "
            "no /metrics.",
            registry=registry,
        )

    @property
    def phase(self) -> Phase:
        return self._state[0]

    def set(self, phase: Phase, detail: str = "") -> None:
        self._state = (phase, detail)
        self._leader.set(1 if phase is Phase.SERVING else 0)

    def ready(self) -> Response:
        phase, detail = self._state
        body = f"{phase.value}{': ' + detail if detail else ''}\n".encode()
        return Response(200 if phase is Phase.SERVING else 503, TEXT_PLAIN, body)


def serve_health(readiness: Readiness, host: str, port: int) -> HttpServer:
    """``/healthz`` and ``/readyz`` on ``host:port`` until closed; port 0 picks a free one."""
    return HttpServer(
        host,
        port,
        {"/healthz": lambda: Response(200, TEXT_PLAIN, b"ok\n"), "/readyz": readiness.ready},
        name="health-http",
        not_found="only /healthz and /readyz are served here",
        logger=log,
    )
