"""Helpers for the streaming tests: dumps whose counters advance, real processes, polling.

Counters advance by *scaling*: the k-th version of a rendered dump has every
``[packets:bytes]`` multiplied by k.  Every counter then grows monotonically and the
flow-conservation arithmetic (entered - accepted - next) scales with it, so the records
the parser must produce for version k are exactly k times those of version 1.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from calico_accountant.records import CounterRecord

_T = TypeVar("_T")
_PREFIX = re.compile(r"^\[(\d+):(\d+)\]", re.MULTILINE)
REPO = Path(__file__).resolve().parent.parent


def scale_dump(text: str, factor: int) -> str:
    """``text`` with every counter prefix multiplied by ``factor``."""
    return _PREFIX.sub(lambda m: f"[{int(m.group(1)) * factor}:{int(m.group(2)) * factor}]", text)


def scale_records(records: Sequence[CounterRecord], factor: int) -> list[CounterRecord]:
    return [r._replace(packets=r.packets * factor, bytes=r.bytes * factor) for r in records]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a concurrent ``cat`` never sees half a file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], _T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> _T:
    """Poll until ``predicate`` returns something truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last: _T | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            error = None
        except Exception as exc:  # a server not up yet
            error = exc
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last={last!r} error={error!r}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric name from an exposition: {sorted label pairs: value}."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(text):
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or "")))
        out[labels] = float(match.group(2))
    return out


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return int(self.popen.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Processes:
    """Processes a test started; all stopped (by PID) at the end."""

    directory: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str]) -> Process:
        log = self.directory / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - the child keeps writing after we return
        popen = subprocess.Popen(
            [sys.executable, *argv], stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        handle.close()
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def aggregator(self, grpc_port: int, metrics_port: int, *extra: str, name: str = "aggregator") -> Process:
        return self.start(
            name,
            [
                "-m",
                "calico_accountant_cli",
                "aggregator",
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(grpc_port),
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(metrics_port),
                *extra,
            ],
        )

    def agent(
        self, node: str, aggregator_port: int, commands: Sequence[str], *extra: str
    ) -> tuple[Process, int]:
        port = free_port()
        argv = [
            "-m",
            "calico_accountant_cli",
            "agent",
            "--node",
            node,
            "--aggregator",
            f"127.0.0.1:{aggregator_port}",
            "--listen",
            f"127.0.0.1:{port}",
            "--backoff-max",
            "1",
            *extra,
        ]
        for command in commands:
            argv += ["--iptables-save", command]
        return self.start(f"agent-{node}", argv), port

    def stop_all(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.started)


@contextlib.contextmanager
def processes(directory: Path) -> Iterator[Processes]:
    group = Processes(directory)
    try:
        yield group
    except BaseException:
        print(group.logs())
        raise
    finally:
        group.stop_all()
