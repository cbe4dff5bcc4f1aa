"""Dumps whose counters advance, for the streaming and reader tests and the streaming bench.

Counters advance by *scaling*: the k-th version of a rendered dump has every
``[packets:bytes]`` multiplied by k.  Every counter then grows monotonically and the
flow-conservation arithmetic (entered - accepted - next) scales with it, so the records
the parser must produce for version k are exactly k times those of version 1.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from calico_accountant.records import CounterRecord

_PREFIX = re.compile(r"^\[(\d+):(\d+)\]", re.MULTILINE)


def scale_dump(text: str, factor: int) -> str:
    """``text`` with every counter prefix multiplied by ``factor``."""
    return _PREFIX.sub(lambda m: f"[{int(m.group(1)) * factor}:{int(m.group(2)) * factor}]", text)


def with_counters(text: str) -> str:
    """A dump whose counters are all zero (the bundled samples) with made-up ones: rule i
    counts (i % 7 + 1) packets of 80 bytes."""
    lines = text.splitlines(keepends=True)
    out = []
    for index, line in enumerate(lines):
        if line.startswith("[0:0] -A"):
            packets = index % 7 + 1
            line = f"[{packets}:{packets * 80}]" + line[len("[0:0]") :]
        out.append(line)
    return "".join(out)


def scale_records(records: Sequence[CounterRecord], factor: int) -> list[CounterRecord]:
    return [r._replace(packets=r.packets * factor, bytes=r.bytes * factor) for r in records]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a concurrent ``cat`` never sees half a file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
