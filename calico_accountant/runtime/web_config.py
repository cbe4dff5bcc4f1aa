"""``--web-config FILE``: TLS and basic auth for a daemon's HTTP endpoint, read and checked.

The file has the format of Prometheus' exporter-toolkit web configuration (the
``--web.config.file`` of node_exporter and Prometheus itself), so an operator can reuse
one file and one habit for every exporter::

    tls_server_config:
      cert_file: server.crt            # relative paths: from the file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: client-ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':')

This module only parses and validates (:func:`load_web_config`); serving with it is
:mod:`calico_accountant.runtime.web_security`.  A wrong file is refused at start with a
:class:`WebConfigError` naming the key and what is wrong, never half applied: unknown
keys are errors (as in exporter-toolkit, which reads strictly), and so are the keys this
implementation cannot honour (cipher suites and curves in Go's names, client
certificates requested but not verified): a security setting silently ignored would be
worse than a daemon that says it cannot start.
"""

from __future__ import annotations

import enum
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ClientAuth",
    "TlsServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]


class WebConfigError(ValueError):
    """The web configuration file cannot be used; the message says where and why."""


class ClientAuth(enum.StrEnum):
    """``client_auth_type`` values that can be honoured (Go's ``tls.ClientAuthType`` names)."""

    NONE = "NoClientCert"
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"


_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
"""Go can ask for a client certificate without verifying it; Python's ssl module verifies
every certificate it asks for, so these cannot be honoured as written."""

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

_BCRYPT = re.compile(r"\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}")

_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "client_allowed_sans",
             "min_version", "max_version", "prefer_server_cipher_suites"}  # fmt: skip
_UNSUPPORTED = {
    "cipher_suites": "cipher suites are named as in Go; remove it to use OpenSSL's defaults",
    "curve_preferences": "curves are named as in Go; remove it to use OpenSSL's defaults",
    "cert": "give the certificate as cert_file",
    "key": "give the key as key_file",
    "client_ca": "give the client CA as client_ca_file",
    "headers": "extra response headers are not supported",
    "rate_limit": "rate limits are not supported",
}


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    cert_file: Path
    key_file: Path
    client_auth: ClientAuth = ClientAuth.NONE
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    """When not empty, a client certificate must carry one of these SANs (DNS, IP, email, URI)."""
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED


@dataclass(frozen=True, slots=True)
class WebConfig:
    source: Path
    tls: TlsServerConfig | None = None
    """None: plain HTTP."""
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    """user -> bcrypt hash; empty: no authentication."""


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate ``path``; relative file names in it are relative to its directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise WebConfigError(f"web config {path}: cannot read: {error.strerror or error}") from None
    return parse_web_config(text, path)


def parse_web_config(text: str, source: Path) -> WebConfig:
    import yaml  # imported here: only a daemon given --web-config pays for it

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WebConfigError(f"web config {source}: not YAML: {error}") from None
    where = f"web config {source}"
    top = _mapping(document if document is not None else {}, where)
    _check_keys(top, {"tls_server_config", "http_server_config", "basic_auth_users"}, where)
    http = _mapping(top.get("http_server_config") or {}, f"{where}: http_server_config")
    _check_keys(http, {"http2"}, f"{where}: http_server_config")  # HTTP/1.1 is served either way
    tls = _mapping(top.get("tls_server_config") or {}, f"{where}: tls_server_config")
    users = _mapping(top.get("basic_auth_users") or {}, f"{where}: basic_auth_users")
    return WebConfig(source=source, tls=_tls(tls, source), basic_auth_users=_users(users, where))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise WebConfigError(f"{where}: expected a mapping of names, got {type(value).__name__}")
    return value


def _check_keys(section: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in section:
        if key in _UNSUPPORTED:
            raise WebConfigError(f"{where}: {key} is not supported here: {_UNSUPPORTED[key]}")
        if key not in known:
            raise WebConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")


def _text(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _tls(section: dict[str, Any], source: Path) -> TlsServerConfig | None:
    where = f"web config {source}: tls_server_config"
    _check_keys(section, _TLS_KEYS, where)
    cert, key = _text(section, "cert_file", where), _text(section, "key_file", where)
    auth_name = _text(section, "client_auth_type", where) or ClientAuth.NONE.value
    ca = _text(section, "client_ca_file", where)
    if not (cert or key or ca or section.get("client_auth_type")):
        return None  # exporter-toolkit: an empty TLS section means plain HTTP
    if not cert or not key:
        raise WebConfigError(f"{where}: cert_file and key_file are both required for TLS")
    if auth_name in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: client_auth_type {auth_name} (a client certificate that is not verified) cannot be "
            "honoured; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
        )
    try:
        auth = ClientAuth(auth_name)
    except ValueError:
        raise WebConfigError(f"{where}: invalid client_auth_type {auth_name!r}") from None
    if auth is not ClientAuth.NONE and not ca:
        raise WebConfigError(f"{where}: client_auth_type {auth.value} needs client_ca_file")
    if ca and auth is ClientAuth.NONE:
        raise WebConfigError(f"{where}: client_ca_file is set but client_auth_type is NoClientCert")
    sans = section.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise WebConfigError(f"{where}: client_allowed_sans must be a list of strings")
    if sans and auth is ClientAuth.NONE:
        raise WebConfigError(f"{where}: client_allowed_sans needs client certificates (client_auth_type)")
    minimum = _version(section, "min_version", ssl.TLSVersion.TLSv1_2, where)
    maximum = _version(section, "max_version", ssl.TLSVersion.MAXIMUM_SUPPORTED, where)
    if maximum is not ssl.TLSVersion.MAXIMUM_SUPPORTED and maximum < minimum:
        raise WebConfigError(f"{where}: max_version is below min_version")
    return TlsServerConfig(
        cert_file=_file(source, cert, "cert_file", where),
        key_file=_file(source, key, "key_file", where),
        client_auth=auth,
        client_ca_file=_file(source, ca, "client_ca_file", where) if ca else None,
        client_allowed_sans=tuple(sans),
        min_version=minimum,
        max_version=maximum,
    )


def _version(section: Mapping[str, Any], key: str, default: ssl.TLSVersion, where: str) -> ssl.TLSVersion:
    name = _text(section, key, where)
    if not name:
        return default
    if name not in _VERSIONS:
        raise WebConfigError(f"{where}: {key} {name!r} is not one of {', '.join(_VERSIONS)}")
    return _VERSIONS[name]


def _file(source: Path, name: str, key: str, where: str) -> Path:
    path = source.parent / name  # an absolute name stays as it is
    if not path.is_file():
        raise WebConfigError(f"{where}: {key} {path} is not a readable file")
    return path


def _users(section: dict[str, Any], source: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        where = f"{source}: basic_auth_users: {user!r}"
        if ":" in user or not user:
            raise WebConfigError(f"{where}: a user name may not be empty or contain ':'")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise WebConfigError(f"{where}: the password must be a bcrypt hash ($2b$..., 60 characters)")
        users[user] = hashed.encode()
    return users
