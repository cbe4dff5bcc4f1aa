"""The daemons' HTTP endpoint with a body in parts (the aggregator's ``/metrics``): the parts
arrive as one body, plain or as one gzip stream with the right length, and a route whose
parts fail while they are made gets a 500 answer, never a half-sent body."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from calico_accountant.runtime.http import HttpServer, Response, gzip_parts

PARTS = [f"part {i} ".encode() * (i * 997 % 5000) for i in range(200)]


def _lazy() -> Iterator[bytes]:
    yield from PARTS


def _broken() -> Iterator[bytes]:
    yield b"a first part that must never be sent\n"
    raise RuntimeError("rendering failed half-way")


@pytest.fixture
def server() -> Iterator[HttpServer]:
    routes = {
        "/lazy": lambda: Response(200, "text/plain", _lazy()),
        "/bytes": lambda: Response(200, "text/plain", b"one body\n"),
        "/broken": lambda: Response(200, "text/plain", _broken()),
    }
    served = HttpServer("127.0.0.1", 0, routes, name="test-http", failure="it broke", compress=True)
    try:
        yield served
    finally:
        served.close()


def _get(server: HttpServer, path: str, *, gzipped: bool) -> tuple[dict[str, str], bytes]:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def test_parts_arrive_as_one_body_plain_and_gzipped(server: HttpServer) -> None:
    headers, body = _get(server, "/lazy", gzipped=False)
    assert body == b"".join(PARTS)
    assert int(headers["Content-Length"]) == len(body) and "Content-Encoding" not in headers
    headers, body = _get(server, "/lazy", gzipped=True)
    assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(body)
    assert gzip.decompress(body) == b"".join(PARTS)
    assert gzip.decompress(_get(server, "/bytes", gzipped=True)[1]) == b"one body\n"
    assert _get(server, "/bytes", gzipped=False)[1] == b"one body\n"


def gzip_parts_bytes(parts: list[bytes]) -> bytes:
    return b"".join(gzip_parts(iter(parts)))


def test_gzip_parts_is_one_stream_whatever_the_parts() -> None:
    assert gzip.decompress(gzip_parts_bytes(PARTS)) == b"".join(PARTS)
    assert gzip.decompress(gzip_parts_bytes([])) == b""
    assert gzip.decompress(gzip_parts_bytes([b"", b"x", b""])) == b"x"


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_route_failing_while_making_its_parts_gets_a_500(server: HttpServer, gzipped: bool) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        _get(server, "/broken", gzipped=gzipped)
    assert raised.value.code == 500
    assert b"must never be sent" not in raised.value.read()
