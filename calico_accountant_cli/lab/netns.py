"""Network namespaces that always go away: the lab's one owner of everything it creates.

A lab run creates namespaces named ``calab-<pid>-<random>-<role>``.  The creator's PID in
the name lets :func:`sweep_orphans` delete namespaces left behind by a run that was
SIGKILLed (nothing else can clean up after SIGKILL), while the random part keeps two runs
in the same process, or parallel runs, from colliding.

:class:`LabNetwork` is the context manager that owns a run: it creates namespaces and
starts processes inside them, and on leaving -- normally, on an exception, or on SIGTERM /
SIGHUP / SIGINT, which it turns into exceptions while it is active -- it stops those
processes by PID and deletes the namespaces.  Processes must go first: a namespace whose
name is deleted lives on as long as a process is inside it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType

__all__ = [
    "NAME_PREFIX",
    "LabCommandError",
    "LabNetwork",
    "LabProcess",
    "delete_namespace",
    "list_namespaces",
    "missing_tools",
    "netns_exec_argv",
    "run_command",
    "set_sysctls",
    "sweep_orphans",
]

#: Every namespace a lab creates starts with this.
NAME_PREFIX = "calab-"

_NAME_RE = re.compile(r"^calab-(?P<pid>\d+)-[0-9a-f]+-")

#: Signals turned into an exception while a lab is active, so ``__exit__`` still runs.
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class LabCommandError(RuntimeError):
    """A command the lab ran failed; carries the command and what it printed on stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)!s} exited {returncode}: {stderr.strip()[:2000]}")


def run_command(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv`` (no shell) and return its stdout; raise :class:`LabCommandError` on failure."""
    completed = subprocess.run(
        list(argv),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if check and completed.returncode != 0:
        raise LabCommandError(argv, completed.returncode, completed.stderr)
    return completed.stdout


def netns_exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``namespace`` (``ip netns exec`` execs it: the PID is the command's)."""
    return ["ip", "netns", "exec", namespace, *argv]


def missing_tools(tools: Sequence[str] = ("ip",)) -> list[str]:
    """The executables from ``tools`` that are not on PATH (for a clean test skip)."""
    return [tool for tool in tools if shutil.which(tool) is None]


def list_namespaces(prefix: str = NAME_PREFIX) -> list[str]:
    """Names of existing network namespaces that start with ``prefix``."""
    output = run_command(["ip", "netns", "list"])
    names = [line.split()[0] for line in output.splitlines() if line.strip()]
    return sorted(name for name in names if name.startswith(prefix))


def delete_namespace(name: str) -> None:
    """Delete a namespace by name; a namespace that is already gone is not an error."""
    try:
        run_command(["ip", "netns", "del", name])
    except LabCommandError:
        if name in list_namespaces(name):
            raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> list[str]:
    """Delete lab namespaces whose creating process no longer exists; returns their names.

    Only namespaces named by this module (``calab-<pid>-...``) whose PID is dead are
    touched, so a concurrent live run is never disturbed.
    """
    removed = []
    for name in list_namespaces():
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group("pid"))):
            delete_namespace(name)
            removed.append(name)
    return removed


@dataclass
class LabProcess:
    """A process the lab started inside a namespace; stopped by its PID only."""

    namespace: str
    popen: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        for stream in (self.popen.stdout, self.popen.stderr, self.popen.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.popen.returncode


class _Interrupted(SystemExit):
    """Raised in the main thread when a cleanup signal arrives while a lab is active."""


class LabNetwork:
    """Owns the namespaces and processes of one lab run; deletes them all on exit.

    Use as a context manager.  ``namespace("node")`` creates ``calab-<pid>-<rand>-node``
    with loopback up.  Names are unique per instance, so parallel runs never collide.
    """

    def __init__(self) -> None:
        self.prefix = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-"
        self._namespaces: list[str] = []
        self._processes: list[LabProcess] = []
        self._previous_handlers: dict[int, object] = {}
        self._closed = False

    # -- lifetime -----------------------------------------------------------------------
    def __enter__(self) -> LabNetwork:
        if threading.current_thread() is threading.main_thread():
            for signum in _CLEANUP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        atexit.register(self.close)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(128 + signum)

    def close(self) -> None:
        """Stop every process, delete every namespace this lab made (idempotent).

        Signals that arrive meanwhile are held back until the cleanup is done, then
        delivered, so a second Ctrl-C or SIGTERM cannot leave half the namespaces behind.
        """
        if self._closed:
            return
        self._closed = True
        deferred: list[int] = []
        held: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for held_signal in (*_CLEANUP_SIGNALS, signal.SIGINT):
                held[held_signal] = signal.signal(held_signal, lambda number, frame: deferred.append(number))
        errors: list[BaseException] = []
        try:
            for process in reversed(self._processes):
                try:
                    process.stop()
                except Exception as error:  # keep going: the namespaces must still go
                    errors.append(error)
            for name in reversed(self._namespaces):
                try:
                    delete_namespace(name)
                except Exception as error:
                    errors.append(error)
        finally:
            atexit.unregister(self.close)
            for number, handler in held.items():
                signal.signal(number, self._previous_handlers.get(number, handler))  # type: ignore[arg-type]
            self._previous_handlers.clear()
            for number in deferred:
                signal.raise_signal(number)
        if errors:
            raise RuntimeError(f"lab cleanup had {len(errors)} error(s): {errors[0]}") from errors[0]

    # -- what the lab owns --------------------------------------------------------------
    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self._namespaces)

    def namespace(self, role: str, sysctls: Mapping[str, str] | None = None) -> str:
        """Create a namespace named ``<prefix><role>`` with ``lo`` up and the given sysctls.

        IPv6 duplicate address detection is switched off first so that addresses are usable
        at once (the lab's addresses are unique by construction).
        """
        if self._closed:
            raise RuntimeError("this lab network is closed")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", role):
            raise ValueError(f"bad namespace role {role!r}")
        name = self.prefix + role
        run_command(["ip", "netns", "add", name])
        self._namespaces.append(name)
        settings = {
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
            **(sysctls or {}),
        }
        set_sysctls(name, settings)
        run_command(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def start(
        self,
        namespace: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        capture_output: bool = True,
    ) -> LabProcess:
        """Start ``argv`` inside ``namespace``; the lab stops it (by PID) on exit.

        With ``capture_output`` stdout and stderr are pipes (read them, or keep the output
        small: a full pipe blocks the process); without, they go to ``/dev/null``.
        """
        if namespace not in self._namespaces:
            raise ValueError(f"{namespace} is not a namespace of this lab")
        output = subprocess.PIPE if capture_output else subprocess.DEVNULL
        popen = subprocess.Popen(
            netns_exec_argv(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            text=True,
            env=dict(env) if env is not None else None,
        )
        process = LabProcess(namespace, popen)
        self._processes.append(process)
        return process

    def forget(self, process: LabProcess) -> None:
        """Stop tracking a process that was stopped already."""
        with contextlib.suppress(ValueError):
            self._processes.remove(process)


def set_sysctls(namespace: str, settings: Mapping[str, str]) -> None:
    """Write ``net.*`` sysctls inside ``namespace`` (they are per network namespace).

    Written through ``/proc/sys`` by a shell inside the namespace, so the ``sysctl``
    binary (procps) is not needed.
    """
    if not settings:
        return
    writes = []
    for key, value in settings.items():
        if not re.fullmatch(r"net(\.[A-Za-z0-9_-]+)+", key) or not re.fullmatch(r"[0-9A-Za-z ]+", value):
            raise ValueError(f"refusing sysctl {key}={value!r}")
        writes.append(f"echo {value} > /proc/sys/{key.replace('.', '/')}")
    run_command(netns_exec_argv(namespace, ["sh", "-ec", "; ".join(writes)]))
