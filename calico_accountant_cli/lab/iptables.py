"""Load and read iptables tables inside a lab namespace, with either backend.

Debian's ``iptables`` package ships both backends side by side: ``iptables-legacy-*``
(the x_tables kernel interface) and ``iptables-nft-*`` (nf_tables with the xt
compatibility layer).  Felix uses one or the other; the agent must read the same one, so
the lab can load a table with either.

One trap, observed with iptables 1.8.9: ``ip6tables-nft-restore -c`` silently drops every
rule counter (IPv4 nft and both legacy tools round-trip counters exactly).  :func:`restore`
therefore loads an IPv6 table *with counters* through the legacy backend and says so in
its result; callers then read it back with the backend :func:`restore` returned.
"""

from __future__ import annotations

import enum
import shlex
import shutil
from dataclasses import dataclass

from calico_accountant_cli.lab.netns import netns_exec_argv, run_command

__all__ = [
    "Backend",
    "LoadedTable",
    "append_rules",
    "backend_for_restore",
    "missing_backend_tools",
    "restore",
    "save",
    "save_command",
    "tool",
]


class Backend(enum.StrEnum):
    """Which iptables implementation a command goes through."""

    LEGACY = "legacy"
    NFT = "nft"


def tool(family: int, backend: Backend, verb: str) -> str:
    """The executable name, e.g. ``ip6tables-legacy-restore`` for (6, LEGACY, "restore")."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family}")
    if verb not in ("save", "restore", ""):
        raise ValueError(f"unknown verb {verb!r}")
    base = "iptables" if family == 4 else "ip6tables"
    return f"{base}-{backend.value}" + (f"-{verb}" if verb else "")


def missing_backend_tools(backends: tuple[Backend, ...] = (Backend.LEGACY, Backend.NFT)) -> list[str]:
    """Executables the lab needs for ``backends`` (both families) that are not installed."""
    needed = [
        tool(family, backend, verb)
        for backend in backends
        for family in (4, 6)
        for verb in ("save", "restore", "")
    ]
    return [name for name in needed if shutil.which(name) is None]


def backend_for_restore(family: int, backend: Backend, counters: bool) -> Backend:
    """The backend that can restore this table faithfully (see the module docstring)."""
    if family == 6 and counters and backend is Backend.NFT:
        return Backend.LEGACY
    return backend


@dataclass(frozen=True, slots=True)
class LoadedTable:
    """Where a restored table lives: read it back with ``save(namespace, family, backend)``."""

    namespace: str
    family: int
    backend: Backend


def restore(
    namespace: str,
    text: str,
    *,
    family: int = 4,
    backend: Backend = Backend.LEGACY,
    counters: bool = True,
    flush: bool = True,
) -> LoadedTable:
    """``iptables-restore [-c] [--noflush]`` ``text`` into ``namespace``.

    With ``counters`` the ``[p:b]`` prefixes in ``text`` become the rules' counters.  The
    returned :class:`LoadedTable` names the backend actually used.
    """
    used = backend_for_restore(family, backend, counters)
    argv = [tool(family, used, "restore")]
    if counters:
        argv.append("-c")
    if not flush:
        argv.append("--noflush")
    run_command(netns_exec_argv(namespace, argv), input_text=text)
    return LoadedTable(namespace, family, used)


def save(
    namespace: str,
    *,
    family: int = 4,
    backend: Backend = Backend.LEGACY,
    table: str = "filter",
    counters: bool = True,
) -> str:
    """``iptables-save [-c] -t table`` inside ``namespace``: the agent's input, byte for byte."""
    argv = [tool(family, backend, "save"), "-t", table]
    if counters:
        argv.insert(1, "-c")
    return run_command(netns_exec_argv(namespace, argv))


def save_command(namespace: str, *, family: int = 4, backend: Backend = Backend.LEGACY) -> str:
    """The save command as one string, for an agent configured with explicit read commands
    (``ip netns exec NS iptables-legacy-save -c -t filter``)."""
    return shlex.join(netns_exec_argv(namespace, [tool(family, backend, "save"), "-c", "-t", "filter"]))


def append_rules(namespace: str, rules: list[list[str]], *, family: int = 4, backend: Backend) -> None:
    """Run ``iptables -A ...`` for each rule (argument lists after the command name)."""
    command = tool(family, backend, "")
    for rule in rules:
        run_command(netns_exec_argv(namespace, [command, *rule]))
