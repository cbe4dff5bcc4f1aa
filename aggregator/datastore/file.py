"""A file of Calico objects as a datastore, re-read when it changes.

Accepted contents (detected, not configured):

* ``calicoctl get ... -o yaml|json`` output: one object, a ``kind: <X>List`` with
  ``items``, a plain list, or several YAML documents;
* etcd key/value pairs: a JSON/YAML list of ``{"key": ..., "value": ...}`` where the value
  is the stored JSON string (or the object itself), or ``etcdctl get --prefix -w json``;
* a Kubernetes API datastore (KDD) cluster as ``kubectl get pods,namespaces,serviceaccounts,
  networkpolicies.networking.k8s.io,networkpolicies.crd.projectcalico.org,... -A -o json|yaml``
  prints it (a ``kind: List``): translated as the ``kubernetes`` datastore does
  (:mod:`.kdd_objects`), pods named with ``interface_prefix``.

The file is polled (mtime, size, inode) rather than watched with inotify, so it works
on every filesystem and for files replaced by rename (ConfigMap mounts).  A file that
cannot be read or parsed as a whole keeps the previous objects (the error is recorded
in the cache's status); single bad entries are counted per reason and skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from aggregator.datastore.background import BackgroundSource
from aggregator.datastore.cache import DatastoreCache
from aggregator.datastore.kdd_objects import DEFAULT_INTERFACE_PREFIX, KubeTranslator
from aggregator.datastore.objects import DecodeResult, decode_documents

__all__ = ["DatastoreFileError", "FileDatastore", "decode_text", "read_datastore_file"]

log = logging.getLogger(__name__)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DatastoreFileError(Exception):
    """The file as a whole could not be read or parsed."""


def decode_text(text: str, interface_prefix: str = DEFAULT_INTERFACE_PREFIX) -> DecodeResult:
    """Decode a datastore file's text (pure); raises :class:`DatastoreFileError` if unparseable."""
    stripped = text.lstrip()
    documents: list[Any]
    try:
        if stripped.startswith(("[", "{")):
            try:
                documents = [json.loads(text)]
            except ValueError:
                documents = _load_yaml(text)
        else:
            documents = _load_yaml(text)
    except RecursionError:
        raise DatastoreFileError("nested too deep to be a file of Calico objects") from None
    return decode_documents(documents, KubeTranslator(interface_prefix).document)


def _load_yaml(text: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))  # CSafeLoader/SafeLoader only
    except yaml.YAMLError as error:
        raise DatastoreFileError(f"not valid YAML or JSON: {error}") from error


def read_datastore_file(path: Path, interface_prefix: str = DEFAULT_INTERFACE_PREFIX) -> DecodeResult:
    """Read and decode one datastore file (blocking: run it in a thread inside a loop)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatastoreFileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        raise DatastoreFileError(f"{path} is not UTF-8 ({error})") from error
    return decode_text(text, interface_prefix)


class FileDatastore(BackgroundSource):
    """Feeds a :class:`DatastoreCache` from a file, polling for changes."""

    def __init__(
        self,
        path: Path | str,
        cache: DatastoreCache,
        *,
        poll_interval: float = 1.0,
        interface_prefix: str = DEFAULT_INTERFACE_PREFIX,
    ) -> None:
        self.path = Path(path)
        self.cache = cache
        self.poll_interval = poll_interval
        self.interface_prefix = interface_prefix
        self._signature: tuple[int, int, int] | None = None
        self.loads = 0
        """Successful reads applied (for tests and status)."""

    def describe(self) -> str:
        return f"file:{self.path}"

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _apply(self, result: DecodeResult) -> None:
        for reason, count in result.bad.items():
            self.cache.note_bad(reason, count)
        for message in result.errors:
            log.warning("%s: skipped: %s", self.path, message)
        self.cache.replace_all(result.objects)
        self.loads += 1

    def load_once(self) -> bool:
        """Read the file now (blocking) and apply it; False if it could not be used."""
        signature = self._stat()
        try:
            result = read_datastore_file(self.path, self.interface_prefix)
        except DatastoreFileError as error:
            return self._failed(signature, error)
        self._signature = signature
        self._apply(result)
        return True

    async def _load(self) -> bool:
        signature = self._stat()
        try:
            result = await asyncio.to_thread(read_datastore_file, self.path, self.interface_prefix)
        except DatastoreFileError as error:
            return self._failed(signature, error)
        self._signature = signature
        self._apply(result)
        return True

    def _failed(self, signature: tuple[int, int, int] | None, error: DatastoreFileError) -> bool:
        # Remember the signature: the same broken file is not re-read every poll.
        self._signature = signature
        self.cache.note_error(str(error), reconnect=False)
        log.warning("datastore file: %s (keeping the previous objects)", error)
        return False

    async def run(self) -> None:
        """Load the file, then re-load whenever its mtime, size or inode changes."""
        await self._load()
        while True:
            await asyncio.sleep(self.poll_interval)
            signature = self._stat()
            if signature != self._signature:
                await self._load()
