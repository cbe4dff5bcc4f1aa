"""Memory handed back to the system: glibc's mmap threshold, trimming, library pages dropped.

The effects are measured in fresh Python processes (``/proc/self/smaps_rollup``), so the test
process's own allocator and mappings stay as they are.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from calico_accountant.runtime.memory import Mapping, droppable, parse_smaps, trim
from node_agent.memory_upkeep import MemoryUpkeep
from tests.support.ports import free_port
from tests.support.processes import REPO, processes
from tests.support.scrape import http_get
from tests.support.waits import wait_until

glibc = pytest.mark.skipif(not trim(), reason="needs glibc")

_SMAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 fe:00 11 /usr/bin/python3.11
Size:                  4 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 000c4000 fe:00 12 /venv/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so
Size:               1024 kB
Rss:                 900 kB
Anonymous:             0 kB
7f0000100000-7f0000110000 r--p 00fe1000 fe:00 12 /venv/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so
Anonymous:            64 kB
7f0000110000-7f0000120000 rw-p 01031000 fe:00 12 /venv/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so
Anonymous:            64 kB
7f0000200000-7f0000300000 r--p 00000000 fe:00 13 /usr/lib/locale/locale-archive
Anonymous:             0 kB
7f0000300000-7f0000301000 r-xp 00000000 fe:00 14 /usr/lib/x86_64-linux-gnu/gconv/UTF-16.so
Anonymous:             0 kB
7f0000400000-7f0000401000 r-xp 00000000 fe:00 15 /usr/lib/libgone.so.1 (deleted)
Anonymous:             0 kB
7f0000500000-7f0000501000 r--s 00000000 fe:00 16 /usr/lib/libshared.so
Anonymous:             0 kB
7f0000600000-7f0000700000 rw-p 00000000 00:00 0 [heap]
Anonymous:          1024 kB
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7f0000800000-7f0000810000 rw-p 00000000 00:00 0
Anonymous:            64 kB
"""


def test_smaps_are_read_mapping_by_mapping() -> None:
    mappings = parse_smaps(_SMAPS)
    assert len(mappings) == 11
    text = mappings[1]
    assert (text.start, text.end, text.permissions, text.anonymous_kib) == (
        0x7F0000000000,
        0x7F0000100000,
        "r-xp",
        0,
    )
    assert text.path.endswith("cygrpc.cpython-311-x86_64-linux-gnu.so")
    assert mappings[2].anonymous_kib == 64
    assert mappings[-1].path == "" and mappings[-1].anonymous_kib == 64


def test_only_clean_library_and_executable_pages_are_droppable() -> None:
    chosen = [m.path or m.permissions for m in parse_smaps(_SMAPS) if droppable(m, "/usr/bin/python3.11")]
    assert chosen == [
        "/usr/bin/python3.11",
        "/venv/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so",
    ]
    # the relocated read-only data (copy-on-write pages) of the same library is not
    assert not droppable(Mapping(0, 1, "r--p", "/lib/libc.so.6", 8), "/usr/bin/python3.11")
    assert droppable(Mapping(0, 1, "r--p", "/lib/libc.so.6", 0), "/usr/bin/python3.11")


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_ROLLUP = """
def rollup():
    values = {}
    for line in open("/proc/self/smaps_rollup").read().splitlines()[1:]:
        name, value = line.split(":")
        values[name] = int(value.split()[0])
    return values["Anonymous"], values["Rss"] - values["Anonymous"]
"""


@glibc
def test_a_fixed_mmap_threshold_hands_large_buffers_back() -> None:
    """Reads that each use and free 8 MiB of large buffers while small objects live on:
    with the threshold fixed, the heap does not keep them (glibc's adaptive threshold
    kept ~8 MiB here)."""
    out = _run(
        _ROLLUP
        + """
from calico_accountant.runtime.memory import tune_allocator
assert tune_allocator()
before = rollup()[0]
kept = []
for read in range(64):
    buffers = [b"x" * (1024 * 1024 + i) for i in range(8)]
    kept.append(b"k" * (600 + read))  # over 512 bytes: malloc's, not Python's small-object pool
    del buffers
print(rollup()[0] - before)
"""
    )
    assert int(out) < 2 * 1024, f"{int(out)} KiB kept"


@glibc
def test_dropped_library_pages_leave_the_process_working() -> None:
    """grpcio's library, mostly resident after its import, is dropped; a real gRPC call on
    loopback afterwards maps back what it runs, and works."""
    out = _run(
        _ROLLUP
        + """
import grpc
from concurrent import futures
from calico_accountant.runtime.memory import drop_file_pages
before = rollup()[1]
advised = drop_file_pages()
after = rollup()[1]
handler = grpc.method_handlers_generic_handler(
    "t.T", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request[::-1])}
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), handlers=[handler])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    answer = channel.unary_unary("/t.T/Echo")(b"abc", timeout=10)
server.stop(None)
print(advised, before, after, answer.decode())
"""
    )
    advised, before, after, answer = out.split()
    assert answer == "cba"
    assert int(advised) > 10 * 2**20  # grpcio's code and read-only data
    assert int(after) < int(before) - 4 * 1024, (before, after)  # KiB of file pages no longer mapped


def test_library_pages_dropped_at_start_after_the_first_read_and_the_first_ack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drops: list[int] = []

    def drop() -> int:
        drops.append(1)
        return 0

    monkeypatch.setattr("node_agent.memory_upkeep.drop_file_pages", drop)
    monkeypatch.setattr("node_agent.memory_upkeep.tune_allocator", lambda: True)
    upkeep = MemoryUpkeep()
    upkeep.started()
    assert len(drops) == 1
    upkeep.after_read(acked=False)
    upkeep.after_read(acked=False)
    assert len(drops) == 2  # at start and after the first read only
    upkeep.after_read(acked=True)
    upkeep.after_read(acked=True)
    assert len(drops) == 3 and upkeep.dropped_after_ack


@glibc
def test_the_agent_process_drops_library_pages_after_its_first_ack(tmp_path: Path) -> None:
    """``calico-accountant agent`` as the DaemonSet runs it: the drops happen in the real process."""
    dump = tmp_path / "node-a.save"
    dump.write_text((REPO / "calico_accountant_cli" / "sample" / "node-a.v3.30.save").read_text())
    grpc_port, metrics_port = free_port(), free_port()
    with processes(tmp_path) as group:
        group.aggregator(grpc_port, metrics_port)
        agent, port = group.agent(
            "node-a", grpc_port, [f"cat {dump}"], "--no-ipv6", "--interval", "0.5", "--log-level", "debug"
        )
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200, timeout=60)
        pattern = re.compile(
            r"after the first acknowledged snapshot: ([\d.]+) MiB of library mappings dropped"
        )
        wait_until(lambda: pattern.search(agent.output()) is not None, timeout=30)
        found = pattern.search(agent.output())
        assert found is not None and float(found.group(1)) > 10, agent.output()[-2000:]
        assert "after the start-up:" in agent.output()
