"""What a node agent process costs: peak resident memory and CPU per read, for the DaemonSet's
requests and limits (``deploy/base/agent.yaml``).

A real aggregator (no datastore) and a real agent process on loopback; the agent's
``--iptables-save`` is ``cat`` of a rendered dump (the sample cluster's node, and sized
nodes as in ``bench/parser_bench.py``), read every ``--interval`` seconds.  After the warm-up
(first full snapshot acknowledged) it samples ``/proc/PID/status`` (VmRSS, VmHWM) and
``/proc/PID/stat`` (user + system CPU) over a number of reads, and splits the resident
memory at the end with ``/proc/PID/smaps_rollup``: anonymous (the heap, Python's objects,
thread stacks) and file-backed (the pages of the interpreter and the shared libraries
mapped, shared with every process mapping the same files; RSS counts them in full, PSS
divides them among those processes).

The agent runs as the DaemonSet runs it (``calico-accountant agent``): what it does to
keep its memory down (``calico_accountant/runtime/memory.py``) is set up by the agent
itself, no environment needed.

Not included: the ``iptables-save`` children a real node runs (their memory and CPU count in
the container's cgroup too; ``bench/parser_bench.py`` times them).  Figures in ``bench/README.md``.

    .venv/bin/python -m bench.agent_resources_bench [--reads 6] [--interval 2]
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.process_figures import cpu_seconds
from tests.support.felix_render import render_restore, sized_model
from tests.support.ports import free_port
from tests.support.processes import REPO, processes
from tests.support.scrape import http_get
from tests.support.waits import wait_until


@dataclass(frozen=True)
class Figures:
    name: str
    dump_mb: float
    rss_mib: float
    anon_mib: float
    file_mib: float
    pss_mib: float
    peak_mib: float
    cpu_per_read_s: float


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _rollup_kib(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {name: int(value.split()[0]) for name, value in (line.split(":", 1) for line in lines)}


def measure(name: str, text: str, reads: int, interval: float, directory: Path) -> Figures:
    dump = directory / f"{name}.save"
    dump.write_text(text)
    grpc, metrics = free_port(), free_port()
    with processes(directory) as group:
        group.aggregator(grpc, metrics)
        agent, port = group.agent(
            name, grpc, [f"cat {shlex.quote(str(dump))}"], "--interval", str(interval), "--no-ipv6"
        )
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200, timeout=120)
        pid = agent.popen.pid
        start = cpu_seconds(pid)
        time.sleep(reads * interval)
        cpu = cpu_seconds(pid) - start
        rollup = _rollup_kib(pid)
        return Figures(
            name,
            len(text.encode()) / 1e6,
            _status_kib(pid, "VmRSS") / 1024,
            rollup["Anonymous"] / 1024,
            (rollup["Rss"] - rollup["Anonymous"]) / 1024,
            rollup["Pss"] / 1024,
            _status_kib(pid, "VmHWM") / 1024,
            cpu / reads,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=6, help="reads sampled per size (default 6)")
    parser.add_argument("--interval", type=float, default=2.0, help="the agent's --interval (default 2)")
    parser.add_argument(
        "--sizes",
        default="110x10,250x20,1000x40",
        help="rendered nodes as PODSxPOLICIES, comma-separated (default 110x10,250x20,1000x40;"
        " 110x10 is the scale issue's node: 110 pods, 10 policies)",
    )
    args = parser.parse_args(argv)
    sample = (REPO / "calico_accountant_cli" / "sample" / "node-a.v3.30.save").read_text()
    cases = [("sample-node-a", sample)] + [
        (f"{pods}x{policies}", render_restore(sized_model(pods, policies, seed=1)).text)
        for pods, policies in (map(int, size.split("x")) for size in args.sizes.split(",") if size)
    ]
    print(
        f"{'node':>14} {'dump MB':>8} {'RSS MiB':>8} {'anon':>6} {'file':>6} {'PSS':>6} {'peak MiB':>9}"
        f" {'CPU s/read':>11}"
        f" {'core at interval':>17}"
    )
    with tempfile.TemporaryDirectory() as directory:
        for name, text in cases:
            f = measure(name, text, args.reads, args.interval, Path(directory))
            print(
                f"{f.name:>14} {f.dump_mb:8.2f} {f.rss_mib:8.1f} {f.anon_mib:6.1f} {f.file_mib:6.1f}"
                f" {f.pss_mib:6.1f} {f.peak_mib:9.1f} {f.cpu_per_read_s:11.3f}"
                f" {f.cpu_per_read_s / args.interval:16.2%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
