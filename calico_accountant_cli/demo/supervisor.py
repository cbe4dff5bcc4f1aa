"""The demo's processes: the aggregator and one node agent per node, as real subprocesses.

Every process is started by this module, remembered by PID, and stopped by that PID
only (SIGTERM, then SIGKILL after a grace period), in reverse start order -- on a normal
exit, on an exception, and on SIGTERM/SIGHUP, which :class:`Supervisor` turns into an
exception while it is active (Ctrl-C already is one).  Output goes to one log file per
process, so the summary screen stays readable and a failure can show the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import calico_accountant

__all__ = [
    "ManagedProcess",
    "ProcessFailed",
    "Supervisor",
    "calico_accountant_argv",
    "free_port",
    "python_env",
    "wait_for_http",
]

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ProcessFailed(RuntimeError):
    """A supervised process exited (or never became ready); carries its log's tail."""


class _Stop(SystemExit):
    """Raised in the main thread when SIGTERM/SIGHUP arrives while supervising."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with this copy of the package importable by child interpreters."""
    root = str(Path(calico_accountant.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def wait_for_http(url: str, timeout: float, process: ManagedProcess | None = None) -> None:
    """Poll ``url`` until it answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.exited():
            raise ProcessFailed(
                f"{process.name} exited with status {process.returncode()}:\n{process.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.05)
    tail = process.log_tail() if process is not None else ""
    raise ProcessFailed(f"{url} did not answer within {timeout:.0f}s ({last})\n{tail}")


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM to this PID, then SIGKILL after ``timeout``; returns the exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


class Supervisor:
    """Starts processes, and stops every one of them (by PID) when the block ends."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._owned: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._owned = tempfile.TemporaryDirectory(prefix="calico-accountant-logs-")
            log_dir = Path(self._owned.name)
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self._previous: dict[int, object] = {}
        self._closed = False

    def __enter__(self) -> Supervisor:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(128 + signum)

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Start ``argv`` with its output in ``<log_dir>/<name>.log``."""
        if self._closed:
            raise RuntimeError("this supervisor is closed")
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env or python_env()),
            )
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def stop(self, process: ManagedProcess) -> int | None:
        """Stop one process now (by its PID) and forget it."""
        code = process.stop()
        with contextlib.suppress(ValueError):
            self.processes.remove(process)
        return code

    def check(self) -> None:
        """Raise :class:`ProcessFailed` if a supervised process has exited."""
        for process in self.processes:
            if process.exited():
                raise ProcessFailed(
                    f"{process.name} (pid {process.pid}) exited with status {process.returncode()}:\n"
                    f"{process.log_tail()}"
                )

    def close(self) -> None:
        """Stop every process in reverse start order (idempotent); restore signal handlers."""
        if self._closed:
            return
        self._closed = True
        try:
            for process in reversed(self.processes):
                with contextlib.suppress(Exception):
                    process.stop()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._previous.clear()
            if self._owned is not None:
                self._owned.cleanup()


def calico_accountant_argv(*args: str) -> list[str]:
    """``python -m calico_accountant_cli <args>`` with this interpreter."""
    return [sys.executable, "-m", "calico_accountant_cli", *args]
