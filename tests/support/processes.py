"""Processes the tests start: the project's own (aggregator, agents) and the servers
(etcd, Prometheus); stopping them and reading their logs.

A test stops only what it started, by the PID it got from ``Popen``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parent.parent.parent
"""The repository root: the working directory of the project processes a test starts."""


def stop_process(
    process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace: float = 10.0
) -> None:
    """Send ``sig`` to our process and wait; SIGKILL if it outlives ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a server's log, or "" when there is none yet."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``calico-accountant ARGS`` run to its end, as a user runs it (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


class ManagedServer:
    """A server a test starts and always stops: ``with Server(...) as server`` starts it
    (stopping what did start when starting fails) and closes it at the end."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    health_port: int = 0
    """An aggregator's /healthz and /readyz port."""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        stop_process(self.popen, sig, timeout)
        return int(self.popen.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Processes:
    """Processes a test started; all stopped (by PID) at the end."""

    directory: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
        """``python ARGV`` from the repository root, its output in ``<directory>/<name>.log``;
        ``env`` is added to this process's environment."""
        log = self.directory / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - the child keeps writing after we return
        popen = subprocess.Popen(
            [sys.executable, *argv],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        handle.close()
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def aggregator(
        self,
        grpc_port: int,
        metrics_port: int,
        *extra: str,
        name: str = "aggregator",
        health_port: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """An aggregator on loopback; its health port is ``health_port`` or a free one."""
        health_port = health_port or free_port()
        process = self.start(
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
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(health_port),
                *extra,
            ],
            env,
        )
        process.health_port = health_port
        return process

    def agent(
        self,
        node: str,
        aggregator_port: int,
        commands: Sequence[str],
        *extra: str,
        name: str = "",
        env: Mapping[str, str] | None = None,
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
        return self.start(name or f"agent-{node}", argv, env), port

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
