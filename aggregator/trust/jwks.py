"""Where the public keys that sign ServiceAccount tokens come from: a JWKS file or URL.

The cluster's token issuer publishes its keys as a JSON Web Key Set
(``/openid/v1/jwks`` of the API server, or a managed cluster's public issuer URL).

* :class:`JwksFile`: a file (a ConfigMap, refreshed by whoever rotates the keys), read
  again when it changes (:class:`~calico_accountant.runtime.reloading.FileBacked`).
* :class:`JwksUrl`: an ``https://`` URL, fetched with PyJWT's
  :class:`~jwt.PyJWKClient` (no redirects, http(s) only) in a thread of its own and
  cached here.  Tokens are verified on the event loop's thread (the ``identify`` of a
  call is synchronous), so a lookup must never wait for the network: it reads the
  cached set.  A token naming a key the set lacks (the issuer rotated its keys) wakes
  the thread for an early fetch, at most once per ``min_refetch`` seconds so a flood of
  forged key ids cannot turn into a flood of fetches; that token is refused, and the
  agent's reconnect a moment later finds the new key.

Either way :meth:`key_for` returns the key a token's ``kid`` header names, or raises
:class:`UnknownKey`.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWTError

from calico_accountant.runtime.reloading import FileBacked

__all__ = ["JwksFile", "JwksUrl", "KeySource", "UnknownKey", "key_source"]

log = logging.getLogger(__name__)


class UnknownKey(LookupError):
    """No key in the issuer's set matches the token (or the set is not loaded yet)."""


class KeySource(Protocol):
    def key_for(self, kid: str | None) -> PyJWK: ...

    def close(self) -> None: ...


def key_source(jwks: str, *, ca_file: str | None = None, token_file: str | None = None) -> KeySource:
    """:class:`JwksUrl` for an ``https://`` address (``http://`` only on loopback: keys
    fetched in the clear could be swapped on the way), else :class:`JwksFile`."""
    if jwks.startswith("http://"):
        host = urlsplit(jwks).hostname or ""
        if host != "localhost" and not (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
            raise ValueError(f"token key set {jwks}: use https:// (plain http only on loopback)")
    if jwks.startswith(("https://", "http://")):
        return JwksUrl(jwks, ca_file=ca_file, token_file=token_file)
    if ca_file or token_file:
        raise ValueError("a CA or token for fetching the key set needs an https:// key set URL")
    return JwksFile(Path(jwks))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _signing_key(keys: PyJWKSet, kid: str | None) -> PyJWK:
    signing = [key for key in keys.keys if key.public_key_use in (None, "sig")]
    if kid is None:
        if len(signing) == 1:
            return signing[0]
        raise UnknownKey(f"the token names no key (kid) and the issuer's set has {len(signing)}")
    for key in signing:
        if key.key_id == kid:
            return key
    raise UnknownKey(f"key {kid!r} is not in the issuer's key set")


def _read_set(path: Path) -> PyJWKSet:
    try:
        return PyJWKSet.from_json(path.read_text())
    except OSError as error:
        raise ValueError(f"token key set {path}: cannot read: {error.strerror or error}") from None
    except (PyJWTError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"token key set {path}: {error}") from None


class JwksFile:
    """A JWKS file; its keys are re-read when the file changes."""

    def __init__(self, path: Path, *, check_interval: float = 1.0) -> None:
        self.path = path
        self._keys = FileBacked(
            [path], lambda: _read_set(path), what=f"token key set {path}", check_interval=check_interval
        )

    def key_for(self, kid: str | None) -> PyJWK:
        return _signing_key(self._keys.get(), kid)

    def close(self) -> None:
        pass


class JwksUrl:
    """A JWKS URL, fetched in a background thread every ``refresh`` seconds (sooner when a
    token names an unknown key); ``token_file`` is sent as a bearer token with every
    fetch (the API server's ``/openid/v1/jwks`` wants an authenticated caller), and
    ``ca_file`` is the CA that signed the server's certificate (the cluster's CA)."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        token_file: str | None = None,
        refresh: float = 300.0,
        min_refetch: float = 10.0,
        retry: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.url = url
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout, ssl_context=context)
        self._token_file = Path(token_file) if token_file else None
        self._refresh, self._min_refetch, self._retry = refresh, min_refetch, retry
        self._keys: PyJWKSet | None = None
        self.fetches = 0
        """Successful fetches so far."""
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jwks-fetch", daemon=True)
        self._thread.start()

    def key_for(self, kid: str | None) -> PyJWK:
        keys = self._keys
        if keys is None:
            self._wake.set()
            raise UnknownKey(f"the issuer's key set is not fetched yet from {self.url} ({self.last_error})")
        try:
            return _signing_key(keys, kid)
        except UnknownKey:
            self._wake.set()  # the issuer may have rotated its keys: fetch again soon
            raise

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _fetch(self) -> bool:
        try:
            if self._token_file is not None:
                self._client.headers = {"Authorization": f"Bearer {self._token_file.read_text().strip()}"}
            keys = self._client.get_jwk_set(refresh=True)
        except Exception as error:  # PyJWTError, OSError, a bad document: keep the old keys, retry
            self.last_error = str(error)
            log.warning("token key set %s: cannot fetch: %s", self.url, error)
            return False
        if self._keys is None or {k.key_id for k in keys.keys} != {k.key_id for k in self._keys.keys}:
            log.info("token key set %s: keys %s", self.url, sorted(str(k.key_id) for k in keys.keys))
        self._keys, self.last_error = keys, ""
        self.fetches += 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self._fetch()
            if self._stop.wait(self._min_refetch):
                return
            self._wake.wait(max(0.0, (self._refresh if ok else self._retry) - self._min_refetch))
            self._wake.clear()
