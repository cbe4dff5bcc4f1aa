"""Stopping the servers the tests start (etcd, Prometheus) and reading their logs.

A test stops only what it started, by the PID it got from ``Popen``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


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
