"""A checkpoint in a file, replaced atomically: written to a temporary file beside it,
flushed to disk, then renamed over it (and the directory synced), so a crash at any point
leaves either the previous checkpoint or the new one, whole."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

__all__ = ["FileCheckpointStore"]


class FileCheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"file:{self.path}"

    async def load(self) -> bytes | None:
        return await asyncio.to_thread(self._read)

    async def save(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    async def close(self) -> None:
        return None

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
