"""Rendering the accounting state for Prometheus, and serving it.

Two renderers of the same :class:`~aggregator.series.views.StateView`:

* :func:`render_text` writes the Prometheus text format (0.0.4) directly.  It is what
  ``/metrics`` serves and what ``report --format prometheus`` prints: a cluster has
  hundreds of thousands of series, and formatting them through prometheus_client's
  per-sample objects costs several times more.  It also keeps the compatibility names
  (``no_policy_drop_counter``, ...) exactly as monzo/calico-accountant typed them:
  ``counter`` without ``_total``.
* :class:`AccountantCollector` is a prometheus_client custom collector over the same
  view, for embedding in a registry.  prometheus_client cannot type a counter whose name
  lacks ``_total``, so there the compatibility families are ``unknown``-typed.

Both read a copy taken under the accountant's lock (:meth:`Accountant.view`), so
scrapes never block ingest for longer than the copy.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from aggregator.accountant import Accountant
from aggregator.metrics.selfmon import SimpleMetric, self_metrics
from aggregator.series.views import FamilyView, StateView
from calico_accountant import __version__

__all__ = [
    "CONTENT_TYPE",
    "AccountantCollector",
    "MetricsServer",
    "render_accountant",
    "render_text",
    "serve_metrics",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _render_family(family_view: FamilyView, out: list[str]) -> None:
    family = family_view.family
    names = family_view.label_names
    pairs: list[tuple[str, str, int]] = [(family.packets_name, family.packets_help, 0)]
    if family.bytes_name is not None:
        pairs.append((family.bytes_name, family.bytes_help, 1))
    escaped = [
        "{"
        + ",".join(f'{name}="{_escape_label(value)}"' for name, value in zip(names, labels, strict=True))
        + "}"
        if names
        else ""
        for labels, _ in family_view.series
    ]
    for metric_name, help_text, index in pairs:
        out.append(f"# HELP {metric_name} {_escape_help(help_text)}\n# TYPE {metric_name} counter\n")
        out.extend(
            f"{metric_name}{label_text} {values[index]}\n"
            for label_text, (_, values) in zip(escaped, family_view.series, strict=True)
        )


def _format_value(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _render_simple(metric: SimpleMetric, out: list[str]) -> None:
    out.append(f"# HELP {metric.name} {_escape_help(metric.help)}\n# TYPE {metric.name} {metric.type}\n")
    for labels, value in metric.samples:
        label_text = ",".join(
            f'{name}="{_escape_label(v)}"' for name, v in zip(metric.labels, labels, strict=True)
        )
        out.append(
            f"{metric.name}{{{label_text}}} {_format_value(value)}\n"
            if label_text
            else f"{metric.name} {_format_value(value)}\n"
        )


def render_text(view: StateView, *, version: str = __version__) -> str:
    """The whole exposition of ``view`` in the Prometheus text format."""
    out: list[str] = []
    for family_view in view.families:
        _render_family(family_view, out)
    for metric in self_metrics(view, version):
        _render_simple(metric, out)
    return "".join(out)


def render_accountant(accountant: Accountant, now: float | None = None, *, version: str = __version__) -> str:
    """:func:`render_text` of the accountant's current state."""
    return render_text(accountant.view(time.time() if now is None else now), version=version)


class AccountantCollector(Collector):
    """A prometheus_client collector over an accountant's pre-built series."""

    def __init__(
        self,
        accountant: Accountant,
        *,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
    ) -> None:
        self._accountant = accountant
        self._clock = clock
        self._version = version

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registering must not render a large state."""
        view = self._accountant.view(self._clock())
        empty = StateView(
            families=tuple(FamilyView(f.family, f.label_names, ()) for f in view.families),
            nodes=(),
            series_count=0,
            overflow={},
            resolution_errors=0,
        )
        yield from self._families(empty)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._accountant.view(self._clock()))

    def _families(self, view: StateView) -> Iterator[Metric]:
        for family_view in view.families:
            yield from _client_families(family_view)
        for metric in self_metrics(view, self._version):
            family: Metric
            if metric.type == "counter":
                family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
            else:
                family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
            for labels, value in metric.samples:
                family.add_metric(list(labels), value)
            yield family


def _client_families(family_view: FamilyView) -> Iterator[Metric]:
    family = family_view.family
    names = family_view.label_names
    if not family.requires_total_suffix:
        untyped = Metric(family.packets_name, family.packets_help, "unknown")
        for labels, (packets, _) in family_view.series:
            untyped.add_sample(family.packets_name, dict(zip(names, labels, strict=True)), packets)
        yield untyped
        return
    packets_family = CounterMetricFamily(family.packets_name, family.packets_help, labels=names)
    for labels, (packets, _) in family_view.series:
        packets_family.add_metric(list(labels), packets)
    yield packets_family
    if family.bytes_name is not None:
        bytes_family = CounterMetricFamily(family.bytes_name, family.bytes_help, labels=names)
        for labels, (_, octets) in family_view.series:
            bytes_family.add_metric(list(labels), octets)
        yield bytes_family


# -- serving -------------------------------------------------------------------------------


class MetricsServer:
    """``/metrics`` on a port, in a daemon thread; :meth:`close` stops it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    accountant: Accountant,
    port: int,
    *,
    host: str = "0.0.0.0",
    extra: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    version: str = __version__,
) -> MetricsServer:
    """Serve the accountant's exposition at ``http://host:port/metrics`` (port 0 picks a
    free one, see :attr:`MetricsServer.port`).  ``extra`` is appended to every scrape
    (e.g. the ingest server's own prometheus_client metrics); gzip when the scraper asks."""
    from prometheus_client.exposition import generate_latest

    def body() -> bytes:
        text = render_text(accountant.view(clock()), version=version).encode()
        if extra is not None:
            text += generate_latest(extra)
        return text

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served here")
                return
            try:
                payload = body()
            except Exception:
                log.exception("rendering /metrics failed")
                self.send_error(500, "rendering failed; see the aggregator log")
                return
            gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
            if gzipped:
                payload = gzip.compress(payload, compresslevel=1)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics %s: " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
