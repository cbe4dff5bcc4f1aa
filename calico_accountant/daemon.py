"""What every long-running calico-accountant process needs around its real work.

The node agent and the aggregator are both small daemons with the same shell: log lines
in one format at a level from a flag, SIGTERM/SIGINT turned into an orderly stop, and a
little HTTP endpoint (the agent's ``/healthz``, ``/readyz``, ``/metrics``; the
aggregator's ``/metrics``).  That shell is written once, here, so the two processes
behave alike and a fix to one is a fix to both.

With a web configuration (``--web-config``, :mod:`calico_accountant.web_config`) the
endpoint is served over TLS and/or behind basic auth, for every path alike: probes see
the same endpoint Prometheus scrapes.

The HTTP server runs in its own threads, not on the asyncio loop: a probe or a scrape
must be answered even while the loop is busy parsing a large table or applying a large
snapshot, and rendering a large exposition must not stall ingest.  Routes are plain
functions of no arguments returning a :class:`Response`; they are called from those
threads, so what they read must be safe to read there.

This module imports nothing of the project: the services use it, never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any, NamedTuple

from calico_accountant.web_config import WebConfig
from calico_accountant.web_security import REALM, BasicAuth, ServerTls

__all__ = [
    "LOG_FORMAT",
    "TEXT_PLAIN",
    "HttpServer",
    "Response",
    "Route",
    "configure_logging",
    "release_free_memory",
    "stop_on_signals",
]

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

TEXT_PLAIN = "text/plain; charset=utf-8"
"""The content type of short human-readable answers (probe results, not-found hints)."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client may take for the TLS handshake before its connection is dropped."""


def configure_logging(level: str | int, *, format: str = LOG_FORMAT) -> None:
    """Log to stderr in one format; ``level`` is a name (``info``, ``DEBUG``, any case) or
    a number.  An unknown name means INFO: a typo in ``LOG_LEVEL`` must not stop a daemon."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=level, format=format)


_LIBC: Any = None


def release_free_memory(*, collect_cycles: bool = False) -> bool:
    """Hand the heap's free pages back to the operating system (glibc's ``malloc_trim``),
    after a full garbage collection when ``collect_cycles``.

    A burst of large, short-lived allocations (a big snapshot decoded, a hostile stream's
    chunks refused) leaves glibc's arenas holding freed memory that never shows as free
    again: resident memory looks like a leak and nears the pod's limit.  And gRPC's
    asyncio server keeps an ended call's last messages in a reference cycle, which only a
    full collection frees; a daemon that allocates few Python objects runs one rarely.
    Called from housekeeping, this keeps resident memory at what is really in use.
    Returns False where there is no glibc (only the collection was done)."""
    if collect_cycles:
        gc.collect()
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


def stop_on_signals(*signals: signal.Signals) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (or ``signals``); call it in the running loop.

    Kubernetes stops a pod with SIGTERM, a terminal with SIGINT: both become the same
    orderly shutdown instead of an exception somewhere in the middle of the work.  Where
    the loop has no signal handlers (Windows) the event is only set by whoever holds it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals or (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop


class Response(NamedTuple):
    """What a route answers: status code, ``Content-Type`` and body."""

    status: int
    content_type: str
    body: bytes


Route = Callable[[], Response]
"""A handler for one path; called in a server thread for every GET of that path."""


class HttpServer:
    """A threaded HTTP server for a few fixed paths, serving from a daemon thread.

    ``routes`` maps a path (the query string is ignored) to its :data:`Route`.  Any other
    path gets ``not_found``: a route of its own, or a message for the standard error page
    with status 404.  A route that raises is logged and answered with a 500 error page
    saying ``failure``.  With ``compress``, bodies are compressed for clients that accept it
    (Prometheus does: a large exposition shrinks tenfold).  ``web`` adds TLS (certificates
    re-read when their files change) and basic auth: a request without valid credentials
    gets 401 with ``WWW-Authenticate: Basic``.  Port 0 picks a free port, see :attr:`port`.
    The socket is bound and served from construction on (a TLS certificate that cannot be
    loaded raises here); :meth:`close` stops it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        *,
        name: str = "http",
        not_found: Route | str = "not found",
        failure: str = "the handler failed; see the log",
        compress: bool = False,
        logger: logging.Logger = log,
        web: WebConfig | None = None,
    ) -> None:
        tls = ServerTls(web.tls, what=f"{name} TLS certificate") if web and web.tls else None
        auth = BasicAuth(web.basic_auth_users) if web and web.basic_auth_users else None
        if auth is not None and tls is None:
            logger.warning("%s: basic auth without TLS: passwords cross the network in the clear", name)
        handler = _handler(dict(routes), not_found, failure, compress, logger, name, auth)
        self._server = _Server((host, port), handler, tls, logger)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        """Stop serving and release the port (requests in progress may still finish)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that, with ``tls``, does each handshake in its request's thread."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        tls: ServerTls | None,
        logger: logging.Logger,
    ) -> None:
        self.tls = tls
        self.logger = logger
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        sock: socket = request
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.tls.handshake(sock)
        except OSError as error:  # ssl.SSLError, a timeout, a refused client certificate
            self.logger.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        try:
            conn.settimeout(None)
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def _handler(
    routes: dict[str, Route],
    not_found: Route | str,
    failure: str,
    compress: bool,
    logger: logging.Logger,
    name: str,
    auth: BasicAuth | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if auth is not None and not auth.allows(self.headers.get("Authorization")):
                self._unauthorized()
                return
            path = self.path.split("?", 1)[0]
            route = routes.get(path)
            if route is None:
                if isinstance(not_found, str):
                    self.send_error(404, not_found)
                    return
                route = not_found
            try:
                status, content_type, body = route()
            except Exception:
                logger.exception("%s: GET %s failed", name, path)
                self.send_error(500, failure)
                return
            gzipped = compress and "gzip" in (self.headers.get("Accept-Encoding") or "")
            if gzipped:
                body = gzip.compress(body, compresslevel=1)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _unauthorized(self) -> None:
            body = b"unauthorized: basic auth credentials required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
            self.send_header("Content-Type", TEXT_PLAIN)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("%s %s: " + format, name, self.address_string(), *args)

    return Handler
