"""The aggregator's ``/metrics``: the accounting exposition plus the process's own metrics.

Served by the HTTP server every calico-accountant daemon shares
(:class:`calico_accountant.runtime.http.HttpServer`): its threads answer scrapes while the
asyncio loop ingests, and each scrape renders a fresh copy of the state
(:meth:`Accountant.view`) so it never holds the accountant's lock for the formatting.
Scrapes are gzipped when the scraper asks (Prometheus does; the text of a large cluster
shrinks about tenfold).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from aggregator.accountant import Accountant
from aggregator.exposition.text import CONTENT_TYPE, render_parts
from calico_accountant import __version__
from calico_accountant.runtime.heap import collector_paused
from calico_accountant.runtime.http import HttpServer, Response
from calico_accountant.runtime.web_config import WebConfig

__all__ = ["serve_metrics"]

log = logging.getLogger(__name__)


def serve_metrics(
    accountant: Accountant,
    port: int,
    *,
    host: str = "0.0.0.0",
    extra: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    version: str = __version__,
    web: WebConfig | None = None,
) -> HttpServer:
    """Serve the accountant's exposition at ``http://host:port/metrics`` (and ``/``) until
    the returned server is closed; port 0 picks a free one (:attr:`HttpServer.port`).
    ``extra`` is appended to every scrape (e.g. the ingest server's own prometheus_client
    metrics).  ``web``: TLS and basic auth (``--web-config``)."""

    def metrics() -> Response:
        return Response(200, CONTENT_TYPE, _encoded())

    def _encoded() -> Iterator[bytes]:
        # The state's copy is a few tuples of up to millions of entries: a young collection
        # while it lives traverses all of them (see calico_accountant.runtime.heap), holding
        # the GIL and with it the event loop.  The HTTP server closes this generator.
        with collector_paused():
            for part in render_parts(accountant.view(clock()), version=version):
                yield part.encode()
        if extra is not None:
            yield generate_latest(extra)

    return HttpServer(
        host,
        port,
        {"/metrics": metrics, "/": metrics},
        name="metrics-http",
        not_found="only /metrics is served here",
        failure="rendering failed; see the aggregator log",
        compress=True,
        logger=log,
        web=web,
    )
