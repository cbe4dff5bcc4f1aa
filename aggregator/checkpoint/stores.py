"""Where checkpoints are kept: the interface every backend implements, and ``--checkpoint``.

A store keeps one checkpoint: :meth:`CheckpointStore.save` replaces it as a whole (a
reader sees the old one or the new one, never a mix) and :meth:`CheckpointStore.load`
returns it, or None when there is none yet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["CheckpointBackend", "CheckpointSpec", "CheckpointStore", "FencedOut", "parse_checkpoint_spec"]

_USAGE = (
    "expected file:PATH, etcd (the datastore's etcd, under /calico-accountant/v1/) or kubernetes "
    "(ConfigMaps in the aggregator's namespace)"
)


class FencedOut(Exception):
    """The fence did not hold (this replica no longer leads): the checkpoint was not saved."""


class CheckpointStore(Protocol):
    async def load(self) -> bytes | None:
        """The kept checkpoint's bytes, or None when none was saved yet."""

    async def save(self, data: bytes) -> None:
        """Replace the kept checkpoint with ``data``, atomically."""

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """Where, for logs."""


class CheckpointBackend(enum.Enum):
    FILE = "file"
    """A file of this replica's own (``file:PATH``)."""
    ETCD = "etcd"
    """The datastore's etcd, under ``/calico-accountant/v1/checkpoint/``."""
    KUBERNETES = "kubernetes"
    """ConfigMaps in the aggregator's namespace (with ``--datastore kubernetes``)."""


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """A parsed ``--checkpoint``: its backend, and the file's path for ``file:``."""

    backend: CheckpointBackend
    path: Path | None = None

    @property
    def shared(self) -> bool:
        """Whether every replica reads the same checkpoint (a file is each replica's own)."""
        return self.backend is not CheckpointBackend.FILE


def parse_checkpoint_spec(text: str) -> CheckpointSpec:
    """``file:PATH``, ``etcd`` or ``kubernetes``; ValueError with the accepted forms otherwise."""
    text = text.strip()
    if text in ("etcd", "kubernetes"):
        return CheckpointSpec(CheckpointBackend(text))
    if text.startswith("file:") and text[len("file:") :].strip():
        return CheckpointSpec(CheckpointBackend.FILE, Path(text[len("file:") :].strip()))
    raise ValueError(f"checkpoint {text!r}: {_USAGE}")
