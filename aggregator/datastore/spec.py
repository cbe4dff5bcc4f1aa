"""The ``--datastore`` flag: ``file:PATH``, ``etcd://HOST:PORT[,HOST:PORT...]`` or ``kubernetes``.

Parsing is pure and strict (a typo is a startup error with a message saying what is
accepted); :func:`aggregator.datastore.sources.open_datastore` turns a parsed spec into a
running source.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

__all__ = [
    "DatastoreSpec",
    "EtcdEndpoint",
    "EtcdSpec",
    "FileSpec",
    "KubernetesSpec",
    "TlsFiles",
    "parse_datastore_spec",
]

_USAGE = (
    "expected file:PATH, kubernetes, or etcd://HOST:PORT[,HOST:PORT...] "
    "(TLS: etcd://...?ca=CA.pem&cert=CERT.pem&key=KEY.pem, or the --etcd-ca/--etcd-cert/--etcd-key flags)"
)


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file of Calico objects, re-read when it changes."""

    path: Path
    poll_interval: float = 1.0
    interface_prefix: str = "cali"
    """Names the veths of pods read from a ``kubectl get -o json`` listing (``FELIX_INTERFACEPREFIX``)."""

    def describe(self) -> str:
        return f"file:{self.path}"


@dataclass(frozen=True, slots=True)
class KubernetesSpec:
    """The Kubernetes API datastore (KDD): Calico's state read from the API server.

    ``kubeconfig``: a kubeconfig file (``--kubeconfig``, else the first of ``$KUBECONFIG``);
    None: the pod's ServiceAccount when running in a cluster, else ``~/.kube/config``.
    """

    kubeconfig: Path | None = None
    interface_prefix: str = "cali"
    """felix's ``FELIX_INTERFACEPREFIX`` (its first entry names the pods' veths)."""

    def describe(self) -> str:
        return f"kubernetes ({self.kubeconfig})" if self.kubeconfig else "kubernetes"


@dataclass(frozen=True, slots=True)
class EtcdEndpoint:
    host: str
    port: int

    @property
    def target(self) -> str:
        """The gRPC target (``host:port``, IPv6 literals bracketed)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a TLS connection to etcd; ``cert``/``key`` only for client-cert auth."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class EtcdSpec:
    """etcd v3 endpoints (tried in turn when one fails) and optional TLS."""

    endpoints: tuple[EtcdEndpoint, ...]
    tls: TlsFiles | None = None

    def describe(self) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(e.target for e in self.endpoints)


DatastoreSpec = FileSpec | EtcdSpec | KubernetesSpec


def parse_datastore_spec(
    spec: str,
    *,
    ca: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    poll_interval: float = 1.0,
    kubeconfig: str | Path | None = None,
    interface_prefix: str = "cali",
) -> DatastoreSpec:
    """Parse the ``--datastore`` flag value; raises ``ValueError`` with usage on bad input.

    ``etcds://`` is accepted as ``etcd://`` with TLS using the system CA roots.  TLS
    files may be given as keyword arguments (the CLI flags) or as ``?ca=&cert=&key=``.
    ``kubernetes`` (also ``kdd``) takes ``kubeconfig`` (a path, or a ``$KUBECONFIG``-style
    list whose first entry is used) and ``interface_prefix``, which files use too.
    """
    spec = spec.strip()
    if not interface_prefix.split(",", 1)[0].strip():
        raise ValueError("--interface-prefix: empty; felix's default is cali")
    if spec in ("kubernetes", "kdd"):
        first = str(kubeconfig or "").split(os.pathsep, 1)[0].strip()
        return KubernetesSpec(Path(first).expanduser() if first else None, interface_prefix)
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"datastore {spec!r}: missing path; {_USAGE}")
        return FileSpec(Path(path), poll_interval, interface_prefix)
    for scheme in ("etcd://", "etcds://"):
        if spec.startswith(scheme):
            break
    else:
        raise ValueError(f"datastore {spec!r}: unknown scheme; {_USAGE}")
    rest = spec[len(scheme) :]
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    if not hosts:
        raise ValueError(f"datastore {spec!r}: no endpoints; {_USAGE}")
    endpoints = tuple(_parse_endpoint(part, spec) for part in hosts.split(","))
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
    unknown = set(options) - {"ca", "cert", "key"}
    if unknown:
        raise ValueError(f"datastore {spec!r}: unknown options {sorted(unknown)}; {_USAGE}")
    ca = ca or options.get("ca")
    cert = cert or options.get("cert")
    key = key or options.get("key")
    if bool(cert) != bool(key):
        raise ValueError(f"datastore {spec!r}: a client certificate needs both cert and key")
    tls = None
    if scheme == "etcds://" or ca or cert:
        tls = TlsFiles(
            ca=Path(ca) if ca else None, cert=Path(cert) if cert else None, key=Path(key) if key else None
        )
    return EtcdSpec(endpoints, tls)


def _parse_endpoint(text: str, spec: str) -> EtcdEndpoint:
    text = text.strip()
    if text.startswith("["):
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as error:
            raise ValueError(f"datastore {spec!r}: bad IPv6 address {host!r}") from error
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, ""
    if not host:
        raise ValueError(f"datastore {spec!r}: empty host in {text!r}; {_USAGE}")
    if not port_text:
        port = 2379
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"datastore {spec!r}: bad port {port_text!r}; {_USAGE}") from None
    if not 0 < port < 65536:
        raise ValueError(f"datastore {spec!r}: port {port} out of range")
    return EtcdEndpoint(host, port)
