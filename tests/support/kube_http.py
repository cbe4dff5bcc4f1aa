"""The HTTP side of the stand-in Kubernetes API server (:mod:`tests.support.kube_api`, NOT a
kube-apiserver): TLS handshakes in the request's thread, bearer-token checks, ``Status`` errors,
injected faults, JSON lists, and watches as chunked streams (or cut in the middle of a chunk).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.support.kube_store import Compacted, ServedType, status
from tests.support.kube_writes import route_object, serve_write

if TYPE_CHECKING:
    from tests.support.kube_api import KubeApiServer

__all__ = ["handler_class"]


def handler_class(api: KubeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.request = api.tls.wrap_socket(self.request, server_side=True)  # handshake in this thread
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, code: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.record(url.path, query)
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                return self._json(401, status(401, "Unauthorized", "Unauthorized"))
            if route_object(api.store, url.path) is not None:
                return self._write("GET")
            served = api.store.types.get(url.path)
            if served is None:
                return self._json(
                    404, status(404, "NotFound", "the server could not find the requested resource")
                )
            fault = api.take_fault(url.path)
            if fault is not None:
                code, retry_after = fault
                reason = "TooManyRequests" if code == 429 else "InternalError"
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                return self._json(code, status(code, reason, f"injected {code}"), headers)
            if query.get("watch") not in ("true", "1"):
                try:
                    return self._json(200, api.list_body(served, query))
                except Compacted as error:
                    message = (
                        f"The provided continue parameter is too old to display a consistent list: {error}"
                    )
                    return self._json(410, status(410, "Expired", message))
            self._stream(served, query)

        def do_POST(self) -> None:
            self._write("POST")

        def do_PUT(self) -> None:
            self._write("PUT")

        def do_DELETE(self) -> None:
            self._write("DELETE")

        def _write(self, method: str) -> None:
            """One object read or written (:mod:`tests.support.kube_writes`)."""
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            api.record(url.path, {**query, "method": method})
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                return self._json(401, status(401, "Unauthorized", "Unauthorized"))
            route = route_object(api.store, url.path)
            if route is None:
                return self._json(
                    404, status(404, "NotFound", "the server could not find the requested resource")
                )
            fault = api.take_fault(url.path)
            if fault is not None:
                return self._json(fault[0], status(fault[0], "InternalError", f"injected {fault[0]}"))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._json(400, status(400, "BadRequest", "the body is not JSON"))
            code, answer = serve_write(api.store, method, route, body, query)
            self._json(code, answer)

        def _stream(self, served: ServedType, query: Mapping[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for line in api.watch_events(served, query):
                    if line is None:  # half a chunk, then the connection is gone
                        self.wfile.write(b'%x\r\n{"type":"MODI' % 200)
                        self.wfile.flush()
                        self.request.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    return Handler
