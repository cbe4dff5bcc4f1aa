"""``--web-config``: the exporter-toolkit file format, and the shared HTTP server serving
with it (TLS with certificates re-read when they change, client certificates, basic auth).

Certificates come from :func:`tests.support.etcd_server.make_tls_material` (openssl CLI);
bcrypt hashes use the lowest cost, so checking one takes a millisecond.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from calico_accountant.runtime.http import TEXT_PLAIN, HttpServer, Response
from calico_accountant.runtime.web_config import ClientAuth, WebConfigError, load_web_config
from calico_accountant.runtime.web_security import BasicAuth
from tests.support.pki import TlsMaterial, make_tls_material
from tests.support.scrape import http_fetch, http_get
from tests.support.skips import requires_tools
from tests.support.waits import wait_until

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ the file


def test_a_full_file_with_paths_relative_to_it(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("x")
    config = load_web_config(
        write_config(
            tmp_path,
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
            "  min_version: TLS13\n  prefer_server_cipher_suites: true\n"
            f"http_server_config:\n  http2: false\nbasic_auth_users:\n  prometheus: '{HASH}'\n",
        )
    )
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "tls.crt" and config.tls.client_ca_file == tmp_path / "ca.crt"
    assert config.tls.client_auth is ClientAuth.REQUIRE_AND_VERIFY
    assert config.tls.min_version is ssl.TLSVersion.TLSv1_3
    assert config.basic_auth_users == {"prometheus": HASH.encode()}


def test_an_empty_file_or_tls_section_is_plain_http(tmp_path: Path) -> None:
    assert load_web_config(write_config(tmp_path, "")).tls is None
    assert load_web_config(write_config(tmp_path, "tls_server_config: {}\n")).tls is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "expected a mapping"),
        ("tls_server_config: [\n", "not YAML"),
        ("web_server: {}\n", "unknown key 'web_server'"),
        ("tls_server_config:\n  cert_file: tls.crt\n", "cert_file and key_file are both required"),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: nope.key\n",
            "nope.key is not a readable file",
        ),
        (
            TLS + "  cipher_suites: [X]\n",
            "cipher_suites is not supported here",
        ),
        (
            TLS + "  client_auth_type: RequestClientCert\n",
            "cannot be honoured",
        ),
        (
            TLS + "  client_auth_type: Sometimes\n",
            "invalid client_auth_type",
        ),
        (
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            TLS + "  client_ca_file: tls.crt\n",
            "client_auth_type is NoClientCert",
        ),
        (
            TLS + "  min_version: TLS9\n",
            "not one of",
        ),
        (
            TLS + "  min_version: TLS13\n  max_version: TLS12\n",
            "max_version is below min_version",
        ),
        ("http_server_config:\n  headers: {X-Frame-Options: deny}\n", "headers is not supported"),
        ("basic_auth_users:\n  prometheus: plaintext\n", "must be a bcrypt hash"),
        (f"basic_auth_users:\n  'a:b': '{HASH}'\n", "may not be empty or contain ':'"),
    ],
)
def test_a_bad_file_is_refused_saying_why(tmp_path: Path, text: str, message: str) -> None:
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("x")
    with pytest.raises(WebConfigError, match=message) as caught:
        load_web_config(write_config(tmp_path, text))
    assert str(tmp_path / "web.yml") in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")


# ------------------------------------------------------------------------------ basic auth


def basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_accepts_only_the_right_password(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.allows(basic("prometheus", "s3cret"))
    for header in (
        basic("prometheus", "wrong"),
        basic("grafana", "s3cret"),
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        "Basic " + "bm9jb2xvbg==",  # "nocolon"
    ):
        assert not auth.allows(header), header
    # A success is remembered: the next scrape costs no bcrypt; a failure is not.
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    assert auth.allows(basic("prometheus", "s3cret")) and calls == []
    assert not auth.allows(basic("prometheus", "wrong")) and calls == [b"wrong"]
    assert not auth.allows(basic("nobody", "x")) and calls == [b"wrong", b"x"]  # unknown users cost the same


# ------------------------------------------------------------------------------ serving


def hello() -> Response:
    return Response(200, TEXT_PLAIN, b"hello\n")


@pytest.fixture
def tls(tmp_path: Path) -> TlsMaterial:
    return make_tls_material(tmp_path / "pki")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[HttpServer]]:
    servers: list[HttpServer] = []
    yield servers
    for server in servers:
        server.close()


def start(serve: list[HttpServer], tmp_path: Path, text: str) -> HttpServer:
    server = HttpServer("127.0.0.1", 0, {"/hello": hello}, web=load_web_config(write_config(tmp_path, text)))
    serve.append(server)
    return server


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@requires_tools("openssl")
def test_tls_and_basic_auth(serve: list[HttpServer], tls: TlsMaterial, tmp_path: Path) -> None:
    server = start(
        serve,
        tmp_path,
        f"tls_server_config:\n  cert_file: {tls.server_cert}\n  key_file: {tls.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    url = f"https://127.0.0.1:{server.port}/hello"
    context = client_context(tls.ca)
    status, headers, _ = http_fetch(url, context=context)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert http_get(url, context=context, auth=("prometheus", "wrong"))[0] == 401
    assert http_get(url, context=context, auth=("prometheus", "s3cret")) == (200, "hello\n")
    # Plain HTTP to the TLS port gets no HTTP answer, and the server keeps serving.
    plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.request("GET", "/hello")
        plain.getresponse()
    plain.close()
    assert http_get(url, context=context, auth=("prometheus", "s3cret"))[0] == 200


@requires_tools("openssl")
def test_client_certificates_required_and_checked(
    serve: list[HttpServer], tls: TlsMaterial, tmp_path: Path
) -> None:
    base = (
        f"tls_server_config:\n  cert_file: {tls.server_cert}\n  key_file: {tls.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tls.ca}\n"
    )
    server = start(serve, tmp_path, base)
    url = f"https://127.0.0.1:{server.port}/hello"
    with pytest.raises(OSError):  # no client certificate: the handshake fails
        http_get(url, context=client_context(tls.ca))
    with_certificate = client_context(tls.ca, tls.client_cert, tls.client_key)
    assert http_get(url, context=with_certificate) == (200, "hello\n")

    narrowed = start(serve, tmp_path, base + "  client_allowed_sans: [prometheus.example.com]\n")
    with pytest.raises(OSError):  # a valid certificate, but without an allowed SAN
        http_get(f"https://127.0.0.1:{narrowed.port}/hello", context=with_certificate)


@requires_tools("openssl")
def test_a_rotated_certificate_is_served_without_a_restart(
    serve: list[HttpServer], tls: TlsMaterial, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(tls.server_cert, live / "tls.crt")
    shutil.copy(tls.server_key, live / "tls.key")
    server = start(serve, live, TLS)
    url = f"https://127.0.0.1:{server.port}/hello"
    assert http_get(url, context=client_context(tls.ca))[0] == 200

    rotated = make_tls_material(tmp_path / "rotated")  # a new CA: the old one does not trust it
    shutil.copy(rotated.server_key, live / "tls.key.new")
    shutil.copy(rotated.server_cert, live / "tls.crt")
    (live / "tls.key.new").replace(live / "tls.key")
    wait_until(lambda: http_get(url, context=client_context(rotated.ca))[0] == 200, timeout=10)
    with pytest.raises(OSError):
        http_get(url, context=client_context(tls.ca))


def test_the_daemons_refuse_a_bad_file_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from aggregator.cli import main as aggregator_main
    from node_agent.agent import main as agent_main

    bad = write_config(tmp_path, "basic_auth_users:\n  prometheus: plaintext\n")
    assert aggregator_main(["--web-config", str(bad)]) == 2
    assert agent_main(["--web-config", str(bad), "--aggregator", "127.0.0.1:1"]) == 2
    assert "must be a bcrypt hash" in caplog.text
