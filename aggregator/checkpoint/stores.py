"""Where checkpoints are kept: the interface every backend implements, and ``--checkpoint``.

A store keeps one checkpoint: :meth:`CheckpointStore.save` replaces it as a whole (a
reader sees the old one or the new one, never a mix) and :meth:`CheckpointStore.load`
returns it, or None when there is none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["CheckpointSpec", "CheckpointStore", "parse_checkpoint_spec"]

_USAGE = "expected file:PATH or etcd (the datastore's etcd, under /calico-accountant/v1/)"


class CheckpointStore(Protocol):
    async def load(self) -> bytes | None:
        """The kept checkpoint's bytes, or None when none was saved yet."""

    async def save(self, data: bytes) -> None:
        """Replace the kept checkpoint with ``data``, atomically."""

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """Where, for logs."""


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """A parsed ``--checkpoint``: a file path, or the datastore's etcd (``path`` None)."""

    path: Path | None

    @property
    def etcd(self) -> bool:
        return self.path is None


def parse_checkpoint_spec(text: str) -> CheckpointSpec:
    """``file:PATH`` or ``etcd``; ValueError with the accepted forms otherwise."""
    text = text.strip()
    if text == "etcd":
        return CheckpointSpec(None)
    if text.startswith("file:") and text[len("file:") :].strip():
        return CheckpointSpec(Path(text[len("file:") :].strip()))
    raise ValueError(f"checkpoint {text!r}: {_USAGE}")
