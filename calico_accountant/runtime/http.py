"""The small HTTP endpoint of both daemons (probes and ``/metrics``).

With a web configuration (``--web-config``, :mod:`calico_accountant.runtime.web_config`)
the endpoint is served over TLS and/or behind basic auth, for every path alike: probes
see the same endpoint Prometheus scrapes.

The server runs in its own threads, not on the asyncio loop: a probe or a scrape must be
answered even while the loop is busy parsing a large table or applying a large snapshot,
and rendering a large exposition must not stall ingest.  Routes are plain functions of
no arguments returning a :class:`Response`; they are called from those threads, so what
they read must be safe to read there.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported when a web configuration is given: hashing, certificate reloads
    from calico_accountant.runtime.web_config import WebConfig
    from calico_accountant.runtime.web_security import BasicAuth, ServerTls

__all__ = ["HANDSHAKE_TIMEOUT", "TEXT_PLAIN", "HttpServer", "Response", "Route", "gzip_parts"]

log = logging.getLogger(__name__)

TEXT_PLAIN = "text/plain; charset=utf-8"
"""The content type of short human-readable answers (probe results, not-found hints)."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client may take for the TLS handshake before its connection is dropped."""


class Response(NamedTuple):
    """What a route answers: status code, ``Content-Type`` and body.

    A body may be parts, made lazily, sent (and compressed) one after another: the
    aggregator's exposition of a million series is ~460 MB, and joining its parts into one
    ``bytes`` was one more copy of all of it per scrape; compressing each part while the
    next one is made keeps a scrape's gzip off its time (:func:`gzip_parts`).  Parts are
    made before anything is sent, so a route that fails while making them still gets a
    500 answer."""

    status: int
    content_type: str
    body: bytes | Iterable[bytes]


def gzip_parts(parts: Iterable[bytes]) -> list[bytes]:
    """``parts`` as one gzip stream (level 1: an exposition shrinks ~40-fold at level 1
    already), in parts.

    Each part is compressed in a second thread while the caller's iterator makes the next
    one: zlib releases the GIL while it compresses, so on two cores a lazily rendered
    exposition's gzip costs little more than its rendering (it was ~40 % of a scrape of a
    million series).  One worker, so the compressor sees the parts in order."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    with ThreadPoolExecutor(1, thread_name_prefix="gzip") as worker:
        pending = [worker.submit(compressor.compress, part) for part in parts]
        out = [done.result() for done in pending]
    out.append(compressor.flush())
    return out


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
        tls: ServerTls | None = None
        auth: BasicAuth | None = None
        if web is not None:
            from calico_accountant.runtime.web_security import BasicAuth, ServerTls

            tls = ServerTls(web.tls, what=f"{name} TLS certificate") if web.tls else None
            auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
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
            gzipped = compress and "gzip" in (self.headers.get("Accept-Encoding") or "")
            body: bytes | Iterable[bytes] = b""
            try:
                status, content_type, body = route()
                if isinstance(body, bytes):
                    body = (body,)
                parts = gzip_parts(body) if gzipped else list(body)
            except Exception:
                logger.exception("%s: GET %s failed", name, path)
                self.send_error(500, failure)
                return
            finally:
                close = getattr(body, "close", None)
                if close is not None:  # a generator's cleanup runs now, also after a failure
                    close()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(sum(map(len, parts))))
            self.end_headers()
            for part in parts:
                if part:
                    self.wfile.write(part)

        def _unauthorized(self) -> None:
            from calico_accountant.runtime.web_security import REALM

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
