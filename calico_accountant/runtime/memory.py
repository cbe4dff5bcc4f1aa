"""Resident memory held for nothing: glibc's allocator and the pages of loaded libraries.

A small daemon's resident set (RSS) is mostly not its own state.  Measured on the node
agent of a 110-pod node (``bench/agent_resources_bench.py``, ``docs/performance.md``): 62 MiB
resident, of which 27 MiB were pages of shared libraries mapped from files (grpcio's
17 MB ``cygrpc`` alone 14.4 MiB) and 10 MiB were free memory glibc's heap kept.  Three
remedies, each a glibc or Linux call through :mod:`ctypes` (a no-op returning False
elsewhere):

* :func:`tune_allocator` fixes glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``).
  By default glibc raises the threshold to the size of every mapped block freed, so after
  the first read's large buffers (a table's text, its lines, a snapshot's encoding) the
  next ones come from the heap, where one long-lived object allocated above them keeps
  the whole span resident.  A fixed threshold maps every block over it and unmaps it on
  free.  Call it once at start, before the work begins (a setting, not an environment
  variable: it holds however the process is started).
* :func:`trim` hands the heap's free pages back (``malloc_trim(0)``: whole free pages
  anywhere in the heap, not only at its top).  Milliseconds on a heap of tens of MiB.
* :func:`drop_file_pages` unmaps the pages of shared libraries (and the interpreter's
  executable) that this process maps read-only and never wrote
  (``madvise(MADV_DONTNEED)``).  The kernel maps a library's pages around every page
  touched (fault-around, and since Linux 6.x whole large folios of the page cache), so
  the code that ran once at import leaves most of a library resident.  Dropped pages stay
  in the page cache; the ones the process still runs are mapped again at their next use
  (a minor fault, no disk read while cached).  Only clean mappings are touched: a
  mapping with any copy-on-write page (relocated data, ``RELRO``) or any write permission
  is left alone, and so is everything that is not a library or the executable (data
  files, ``memfd``, devices), so nothing a program wrote or shares can be lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "Mapping",
    "drop_file_pages",
    "droppable",
    "parse_smaps",
    "trim",
    "tune_allocator",
]

DEFAULT_MMAP_THRESHOLD = 128 * 1024
"""glibc's own initial threshold, kept fixed: blocks from 128 KiB up are mapped apart."""

_M_MMAP_THRESHOLD = -3  # <malloc.h>
_MADV_DONTNEED = 4  # <sys/mman.h>, Linux

_libc: Any = None


def _glibc() -> Any:
    """glibc through :mod:`ctypes`, or None where there is none (musl, macOS)."""
    global _libc
    if _libc is None:
        _libc = False
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.gnu_get_libc_version.restype = ctypes.c_char_p
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _libc = libc
    return _libc or None


def tune_allocator(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes (see the module's doc).
    False where there is no glibc or it refused the value."""
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1)


def trim() -> bool:
    """``malloc_trim(0)``: the heap's free pages back to the system.  False without glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``/proc/PID/maps`` with the ``Anonymous`` figure of its ``smaps`` entry."""

    start: int
    end: int
    permissions: str
    path: str
    anonymous_kib: int


def parse_smaps(text: str) -> list[Mapping]:
    """The mappings of a ``/proc/PID/smaps`` text (pure)."""
    mappings: list[Mapping] = []
    header: list[str] | None = None
    anonymous = 0
    for line in text.splitlines():
        fields = line.split(None, 5)
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            if header is not None:
                mappings.append(_mapping(header, anonymous))
            header, anonymous = fields, 0
        elif fields and fields[0] == "Anonymous:":
            anonymous = int(fields[1])
    if header is not None:
        mappings.append(_mapping(header, anonymous))
    return mappings


def _mapping(header: list[str], anonymous_kib: int) -> Mapping:
    start, end = (int(value, 16) for value in header[0].split("-"))
    path = header[5].strip() if len(header) > 5 else ""
    return Mapping(start, end, header[1], path, anonymous_kib)


def droppable(mapping: Mapping, executable: str) -> bool:
    """True for a private, read-only mapping of a shared library (or of ``executable``)
    that no write ever touched: its pages are exactly the file's, so dropping them loses
    nothing (pure)."""
    perms = mapping.permissions
    if "w" in perms or not perms.startswith("r") or not perms.endswith("p") or mapping.anonymous_kib:
        return False
    path = mapping.path
    if not path.startswith("/") or path.endswith(" (deleted)") or "/gconv/" in path:
        return False  # not a file, a file replaced since, or iconv's modules (unloaded again)
    return path == executable or ".so" in os.path.basename(path)


def drop_file_pages() -> int:
    """Unmap the resident pages of clean library mappings (see the module's doc); returns
    the bytes of the mappings advised (0 where there is no glibc or no ``/proc``)."""
    libc = _glibc()
    if libc is None:
        return 0
    executable = os.path.realpath(sys.executable)
    advised = 0
    try:
        mappings = parse_smaps(Path("/proc/self/smaps").read_text())
    except OSError:
        return 0
    for mapping in mappings:
        if (
            droppable(mapping, executable)
            and libc.madvise(mapping.start, mapping.end - mapping.start, _MADV_DONTNEED) == 0
        ):
            advised += mapping.end - mapping.start
    return advised
