"""A real etcd server for tests: free ports, a throwaway data dir, stopped by its PID.

Usage::

    from tests.support.etcd_server import EtcdServer, etcd_available

    with EtcdServer() as etcd:          # started and healthy
        etcd.endpoint                   # "127.0.0.1:<port>" for etcd://
        etcd.stop(); etcd.start()       # SIGTERM, then the same ports and data again

or the pytest fixture ``etcd`` (function scope; ``tests/conftest.py`` registers this module).
Tests that need it should skip with :data:`SKIP_REASON` when :func:`etcd_available` is
False.  Only the process this module started is ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import pytest

from tests.support.pki import TlsMaterial
from tests.support.ports import free_port
from tests.support.processes import ManagedServer, log_tail, stop_process

__all__ = [
    "ETCD_BINARY",
    "SKIP_REASON",
    "EtcdServer",
    "etcd",
    "etcd_available",
]

ETCD_BINARY = os.environ.get("ETCD_BINARY", "/usr/bin/etcd")
SKIP_REASON = f"etcd not installed at {ETCD_BINARY} (Debian package etcd-server)"


def etcd_available() -> bool:
    return os.access(ETCD_BINARY, os.X_OK)


class EtcdServer(ManagedServer):
    """One single-member etcd on loopback.  ``start()`` waits until it is healthy.

    With ``tls``, clients must use TLS and present a certificate signed by ``tls.ca``.
    As a member of a cluster (:mod:`tests.support.etcd_cluster`): ``name``, the
    ``initial_cluster`` (``name=peer-url,...``) and ports set before :meth:`launch`.
    """

    def __init__(
        self,
        data_root: Path | None = None,
        *,
        start_timeout: float = 20.0,
        tls: TlsMaterial | None = None,
        name: str = "t",
        initial_cluster: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.tls = tls
        self.name = name
        self.initial_cluster = initial_cluster
        self.extra_args = tuple(extra_args)
        if data_root is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self._owned_root: Path | None = Path(tempfile.mkdtemp(prefix="etcd-test-", dir=base))
            data_root = self._owned_root
        else:
            self._owned_root = None
        self.data_dir = data_root / "data"
        self.log_path = data_root / "etcd.log"
        self.start_timeout = start_timeout
        self.client_port = 0
        self.peer_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- addresses

    @property
    def endpoint(self) -> str:
        """``host:port`` for ``etcd://``."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("etcd is not running")
        return self.process.pid

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start (or restart on the same ports and data dir) and wait for health."""
        if self.process is not None and self.process.poll() is None:
            return self
        last_error = ""
        for _attempt in range(3):
            if not self.client_port:
                self.client_port, self.peer_port = free_port(), free_port()
            self._spawn()
            try:
                self._wait_healthy()
                return self
            except RuntimeError as error:
                last_error = str(error)
                self._terminate()
                if self._port_conflict():
                    self.client_port = self.peer_port = 0  # someone took the port: pick new ones
                    continue
                break
        raise RuntimeError(f"etcd did not start: {last_error}\n{self._log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop our etcd by PID (SIGTERM by default) and wait for it to exit."""
        self._terminate(sig)

    def close(self) -> None:
        """Stop and delete the data dir (if this object created it)."""
        self._terminate()
        if self._owned_root is not None:
            shutil.rmtree(self._owned_root, ignore_errors=True)

    # ---------------------------------------------------------------- internals

    def launch(self) -> None:
        """Start the process without waiting for health (a cluster member is healthy only
        once a quorum of members runs); :meth:`wait_healthy` waits."""
        self._spawn()

    def wait_healthy(self) -> None:
        try:
            self._wait_healthy()
        except RuntimeError as error:
            raise RuntimeError(f"etcd {self.name}: {error}\n{self._log_tail()}") from None

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        peer = self.peer_url
        args = [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self.extra_args,
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log.close()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with status {self.process and self.process.returncode}")
            context = None
            if self.tls is not None:
                context = ssl.create_default_context(cafile=str(self.tls.ca))
                context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
            try:
                with urllib.request.urlopen(
                    f"{self.client_url}/health", timeout=1, context=context
                ) as response:
                    if b'"health":"true"' in response.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("etcd not healthy in time")

    def _terminate(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        stop_process(process, sig)

    def _log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def _port_conflict(self) -> bool:
        return "address already in use" in self._log_tail(40)


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    """A fresh, healthy etcd for one test (skips when etcd is not installed)."""
    if not etcd_available():
        pytest.skip(SKIP_REASON)
    with EtcdServer() as server:
        yield server
